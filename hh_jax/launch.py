"""Cluster launchers for `hh-jax sweep`, on existing engines: SLURM through submitit, and
SkyPilot task files for TPU pods and clouds. The local launcher (one subprocess per run,
`hh_jax.train.sweep`) stays the default.

    hh-jax sweep experiments/pm_scaling.py --root /shared/runs --launcher slurm \\
        --slurm slurm_partition=gpu --slurm gpus_per_node=8 --slurm timeout_min=240 [--nodes 2]
    hh-jax sweep experiments/pm_scaling.py --root gs://bucket/runs --launcher skypilot \\
        --accelerators tpu-v5e-16 > sweep.sky.yaml && sky launch -c hh sweep.sky.yaml

SLURM: one job per run, submitted together as one job array (`executor.batch()`). Each job is
a `RunJob`: it joins a multi-node run when SLURM started several tasks (`--nodes N`, one task
per node; `jax.distributed.initialize()` reads SLURM's environment), and runs the run through
the lifecycle, which resumes from the run's own checkpoint. On preemption or timeout SLURM
signals the job first, and submitit requeues it (`Checkpointable`), so the requeued job
continues from the last checkpoint. The submitit folder is <root>/<experiment>/submitit/.

SkyPilot: one task that runs the sweep on every node (`num_nodes`) or on every host of a TPU
pod slice; GPU nodes join through the coordinator flags made from SkyPilot's environment, TPU
hosts through JAX's own TPU detection (`--auto_distributed`).
"""

from __future__ import annotations

import ast
import shlex

import submitit

from hh_jax import distributed, paths
from hh_jax.train import tasks

LAUNCHERS = ("local", "slurm", "skypilot")
COORDINATOR_PORT = 8476


class RunJob(submitit.helpers.Checkpointable):
  """One run as a submitit job; requeued with the same arguments when preempted."""

  def __call__(self, cfg, run_dir: str, track: str = "tensorboard", inputs=None) -> dict:
    distributed.initialize()                 # several SLURM tasks: one multi-process run
    return tasks.run_config(cfg, run_dir, inputs=inputs, progress=False, track=track)


def slurm_executor(folder, nodes: int = 1, parameters: dict | None = None,
                   cluster: str | None = None) -> submitit.AutoExecutor:
  """A submitit executor for one-run jobs: `nodes` nodes, one task (process) per node, and any
  AutoExecutor parameters (slurm_partition, gpus_per_node, timeout_min, slurm_array_parallelism,
  ...). cluster="local" runs the same jobs as local processes (tests)."""
  executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
  executor.update_parameters(**{"nodes": nodes, "tasks_per_node": 1, **(parameters or {})})
  return executor


def submit_runs(executor: submitit.Executor, runs, track: str = "tensorboard", inputs=None,
                job: RunJob | None = None) -> list[submitit.Job]:
  """Submit each (config, run_dir) pair as one job of `job` (default: a RunJob), all in one
  job array. inputs: in-memory data for every run (tests; None loads what each config names)."""
  job = RunJob() if job is None else job
  with executor.batch():
    jobs = [executor.submit(job, cfg, run_dir, track, inputs) for cfg, run_dir in runs]
  return jobs


def parse_parameters(items: list[str]) -> dict:
  """["gpus_per_node=8", "slurm_partition=gpu"] -> {"gpus_per_node": 8, ...} (literals parsed)."""
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--slurm {item!r}: expected KEY=VALUE")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def launch_slurm(args, runs) -> list[submitit.Job]:
  """`hh-jax sweep --launcher slurm`: the runs as one job array; prints the job ids."""
  folder = paths.join(args.root, runs[0].experiment, "submitit") if runs else None
  executor = slurm_executor(f"{folder}/%j", args.nodes, parse_parameters(args.slurm),
                            cluster="slurm")
  jobs = submit_runs(executor, [(r.config, r.dir) for r in runs], args.track)
  for run, job in zip(runs, jobs):
    print(f"{run.name}: job {job.job_id}", flush=True)
  print(f"{len(jobs)} jobs submitted; logs in {folder}", flush=True)
  return jobs


def skypilot_task(name: str, sweep_command: list[str], accelerators: str, num_nodes: int = 1,
                  setup: str | None = None) -> str:
  """A SkyPilot task file (YAML) that runs `sweep_command` on every node or TPU host.

  setup (default): install hh-jax with gs:// support and the accelerator's jax build.

  GPU nodes (num_nodes > 1) get --coordinator/--num_processes/--process_id from SkyPilot's
  environment; a TPU slice's hosts get --auto_distributed (JAX finds its hosts itself).
  """
  tpu = accelerators.lower().startswith("tpu")
  setup = setup or f"pip install -e '.[gcs]' '{'jax[tpu]' if tpu else 'jax[cuda12]'}'"
  command = shlex.join(sweep_command)
  if tpu:
    command += " --auto_distributed"
  elif num_nodes > 1:
    command += (f' --coordinator "$(echo "$SKYPILOT_NODE_IPS" | head -n1):{COORDINATOR_PORT}"'
                ' --num_processes "$SKYPILOT_NUM_NODES" --process_id "$SKYPILOT_NODE_RANK"')
  lines = [f"name: {name}", "resources:", f"  accelerators: {accelerators}",
           f"num_nodes: {num_nodes}", "workdir: .", "setup: |", f"  {setup}", "run: |",
           f"  {command}", ""]
  return "\n".join(lines)
