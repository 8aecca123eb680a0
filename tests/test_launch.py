"""Sweeps through submitit (its local executor stands in for SLURM: the same jobs, pickled and
run as processes): a 2-run sweep finishes, and a job cancelled midway and submitted again ends
with the files of an uninterrupted run. SkyPilot task files for TPU pods and GPU nodes."""

from __future__ import annotations

import os
import pathlib
import time

import psutil

from hh_jax import launch
from hh_jax.checkpoint import Checkpointer
from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.data.pipeline import PMData
from hh_jax.train import lifecycle
from tests.conftest import ToyTokenizer, toy_pairs
from tests.run_files import assert_same_run_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 20 steps; checkpoints at 5, 10, 15
CFG = RunConfig(kind="pm", model_size="1k", batch_size=16, log_every=5, checkpoint_every=5,
                data=DataConfig(max_len=16), optim=OptimConfig(learning_rate=3e-3))
DATA = PMData(ToyTokenizer(), toy_pairs(320, 0), toy_pairs(32, 1), {})
HALT_STEP = 10


class HaltAfterCheckpoint(launch.RunJob):
  """A RunJob that, in the run `halt_dir`, stops after saving checkpoint HALT_STEP: it writes
  `marker` and sleeps until it is cancelled (the midway point of the test)."""

  def __init__(self, halt_dir: str, marker: str):
    self.halt_dir, self.marker = halt_dir, marker

  def __call__(self, cfg, run_dir, track="tensorboard", inputs=None):
    original = Checkpointer.save

    def save(ckpt, step, state, meta):
      original(ckpt, step, state, meta)
      if run_dir == self.halt_dir and step == HALT_STEP:
        pathlib.Path(self.marker).write_text("halted")
        time.sleep(600)

    Checkpointer.save = save
    return super().__call__(cfg, run_dir, track, inputs)


def cancel(job, timeout_s: float = 60) -> None:
  """Cancel a local submitit job (SIGINT, as scancel's first signal); if its processes are still
  alive after timeout_s, kill them (SIGKILL, scancel's last), so no process outlives the test."""
  job.cancel()
  deadline = time.time() + timeout_s
  while not job.done() and time.time() < deadline:
    time.sleep(0.2)
  process = getattr(job, "_process", None)
  if process is not None and process.poll() is None:
    for p in psutil.Process(process.pid).children(recursive=True) + [psutil.Process(process.pid)]:
      p.kill()
    process.wait(timeout=30)
  assert process is None or process.poll() is not None


def wait_for(path: pathlib.Path, timeout_s: float = 240) -> None:
  deadline = time.time() + timeout_s
  while not path.exists():
    assert time.time() < deadline, f"{path} did not appear"
    time.sleep(0.2)


def test_a_two_run_sweep_finishes_and_a_cancelled_job_resubmitted_ends_like_an_uninterrupted_one(
    tmp_path, monkeypatch):
  monkeypatch.setenv("PYTHONPATH", ROOT)
  executor = launch.slurm_executor(tmp_path / "submitit" / "%j", cluster="local",
                                   parameters={"timeout_min": 10})
  full, cut = str(tmp_path / "runs" / "full"), str(tmp_path / "runs" / "cut")
  marker = tmp_path / "halted"
  jobs = launch.submit_runs(executor, [(CFG, full), (CFG, cut)], track="none", inputs=DATA,
                            job=HaltAfterCheckpoint(cut, str(marker)))
  wait_for(marker)
  cancel(jobs[1])
  summary = jobs[0].result()
  assert summary["train/steps"] == 20 and lifecycle.is_finished(full)
  assert not lifecycle.is_finished(cut)
  ckpt = Checkpointer(cut)
  assert ckpt.latest_step() == HALT_STEP
  ckpt.close()
  [again] = launch.submit_runs(executor, [(CFG, cut)], track="none", inputs=DATA)
  resumed = again.result()
  timing = ("time/", "perf/")
  assert ({k: v for k, v in resumed.items() if not k.startswith(timing)} ==
          {k: v for k, v in summary.items() if not k.startswith(timing)})
  assert_same_run_files(full, cut)


def test_skypilot_task_files_for_a_tpu_slice_and_gpu_nodes():
  sweep = ["hh-jax", "sweep", "experiments/pm_scaling.py", "--root", "gs://b/runs"]
  tpu = launch.skypilot_task("hh", sweep, "tpu-v5e-16")
  assert "accelerators: tpu-v5e-16" in tpu and "--root gs://b/runs --auto_distributed" in tpu
  gpu = launch.skypilot_task("hh", sweep, "H100:8", num_nodes=2)
  assert "num_nodes: 2" in gpu and '--process_id "$SKYPILOT_NODE_RANK"' in gpu
  assert launch.parse_parameters(["gpus_per_node=8", "slurm_partition=gpu"]) == {
      "gpus_per_node": 8, "slurm_partition": "gpu"}
