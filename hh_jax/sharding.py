"""Shardings as data: a named mesh (`data`, `fsdp`) and rules that place state and batches.

Rules:
- batches: leading (batch) axis split over ("data", "fsdp"): every device sees B / n rows;
- params and optimizer state: replicated over `data`; with fsdp > 1, each array whose size
  is at least `min_fsdp_size` has its largest axis divisible by the fsdp degree split over
  `fsdp` (ZeRO-3 style), and XLA inserts the all-gathers;
- scalars (step, hyperparameters): replicated.
The default config (data=-1, fsdp=1) is data parallel over every device (of every process in
a multi-process run), and the same jitted step runs on 1 CPU, 8 fake CPU devices, a GPU host
or a TPU pod slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hh_jax.config import MeshConfig

BATCH_AXES = ("data", "fsdp")


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
  """A (data, fsdp) mesh over `devices` (default: all devices). -1 takes the rest."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  data, fsdp = cfg.data, cfg.fsdp
  if data == -1 and fsdp == -1:
    raise ValueError("mesh: at most one of mesh.data / mesh.fsdp may be -1")
  if data == -1:
    data = n // fsdp
  if fsdp == -1:
    fsdp = n // data
  if data * fsdp != n:
    raise ValueError(f"mesh: data={cfg.data} x fsdp={cfg.fsdp} does not cover {n} devices")
  return Mesh(np.array(devices).reshape(data, fsdp), ("data", "fsdp"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _param_spec(shape: tuple[int, ...], fsdp: int, min_fsdp_size: int) -> P:
  if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
    return P()
  for axis in np.argsort(shape)[::-1]:       # largest axis first
    if shape[axis] % fsdp == 0:
      spec = [None] * len(shape)
      spec[axis] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(mesh: Mesh, state, min_fsdp_size: int = 2**14):
  """A pytree of NamedShardings for `state` (arrays or ShapeDtypeStructs)."""
  fsdp = mesh.shape["fsdp"]
  return jax.tree.map(
      lambda x: NamedSharding(mesh, _param_spec(tuple(x.shape), fsdp, min_fsdp_size)), state)


def process_rows(sharding: NamedSharding, shape: tuple[int, ...]) -> slice:
  """The rows of a global batch of `shape` that this process's devices hold under `sharding`
  (all of them with one process)."""
  index = sharding.addressable_devices_indices_map(shape).values()
  starts = [rows[0].start or 0 for rows in index]
  stops = [shape[0] if rows[0].stop is None else rows[0].stop for rows in index]
  return slice(min(starts), max(stops))


def shard_batch(mesh: Mesh, batch):
  """Put a global host batch (pytree of numpy arrays, leading axis B) onto the mesh.

  Each process puts only its own rows (`process_rows`) on its own devices
  (`jax.make_array_from_process_local_data`), so with N processes every host feeds B / N rows
  of the same global batch; scalars are replicated.
  """
  n = mesh.shape["data"] * mesh.shape["fsdp"]
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0:
      return jax.make_array_from_process_local_data(replicated(mesh), x, x.shape)
    if x.shape[0] % n:
      raise ValueError(f"batch size {x.shape[0]} is not divisible by the {n} devices of the mesh")
    return jax.make_array_from_process_local_data(sharding, x[process_rows(sharding, x.shape)],
                                                  x.shape)

  return jax.tree.map(put, batch)
