"""Multi-process runs on JAX's own multi-controller runtime (`jax.distributed`).

Every process runs the same program over the global mesh (all devices of all processes):

    hh-jax train FILE --run R --coordinator HOST:PORT --num_processes N --process_id I

Under SLURM (more than one task) or on a multi-host TPU slice (TPU_WORKER_HOSTNAMES) the flags
may be left out, and `--auto_distributed` forces the same: `jax.distributed.initialize()` finds
the coordinator, the count and the id itself. Each
process feeds only its own rows of the global batch (`hh_jax.sharding.shard_batch`), orbax
checkpoints are saved and restored by all processes together, and only process 0 writes the
run files (config, metrics, summaries, events).
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np
from jax.experimental import multihost_utils


def add_args(parser: argparse.ArgumentParser) -> None:
  """--coordinator, --num_processes, --process_id (train and sweep)."""
  group = parser.add_argument_group("multi-process (jax.distributed)")
  group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="process 0's address; with --num_processes and --process_id")
  group.add_argument("--num_processes", type=int, default=None)
  group.add_argument("--process_id", type=int, default=None)
  group.add_argument("--auto_distributed", action="store_true",
                     help="call jax.distributed.initialize() with no arguments: it finds the "
                          "processes itself (TPU pod slices, SLURM, Open MPI)")


def flags_of(args) -> list[str]:
  """The multi-process flags of parsed `args` again (for the commands a launcher writes)."""
  out = []
  for name in ("coordinator", "num_processes", "process_id"):
    value = getattr(args, name, None)
    out += [f"--{name}", str(value)] if value is not None else []
  return out + (["--auto_distributed"] if getattr(args, "auto_distributed", False) else [])


def cluster_detected(environ=None) -> bool:
  """True in a multi-task SLURM job step or on a multi-host TPU slice, where
  `jax.distributed.initialize()` needs no arguments."""
  env = os.environ if environ is None else environ
  slurm_tasks = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1)
  tpu_hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  return slurm_tasks > 1 or len(tpu_hosts) > 1


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
  """Join a multi-process run when the flags say so (or `auto`) or a cluster is detected;
  True if joined. Must run before anything touches a device. A single process (no flags, no
  cluster) is left alone.
  """
  if coordinator is None and num_processes is None and not auto and not cluster_detected():
    return False
  if jax.distributed.is_initialized():
    return True
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)
  return True


def initialize_from_args(args) -> bool:
  return initialize(args.coordinator, args.num_processes, args.process_id, args.auto_distributed)


def is_primary() -> bool:
  """True on the process that writes run files (process 0; the only one when single-process)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Wait until every process gets here (nothing to wait for with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def fetch(tree):
  """Device arrays -> numpy on every process: sharded arrays that span other processes'
  devices are all-gathered first; everything else is a plain device_get."""

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.device_get(x)

  return jax.tree.map(get, tree)
