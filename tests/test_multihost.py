"""Two processes on 127.0.0.1 (jax.distributed, CPU collectives over gloo), 4 fake CPU devices
each, train one PM run data parallel over the 8 devices: each process feeds its half of every
global batch, only process 0 writes run files, both save and restore the orbax checkpoints.

The reference is an independent single-process run over 8 fake devices with the same global
batches. Both processes are killed (SIGKILL) between two checkpoints and restarted; the
resumed run must end where the single-process run ends.

    python -m tests.test_multihost RUN_DIR [--coordinator H:P --num_processes N --process_id I]
                                   [--die_at_checkpoint S]    (the worker the test starts)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
       "JAX_PLATFORMS": "cpu"}
TIMEOUT_S = 240


def config():
  from hh_jax.config import DataConfig, OptimConfig, RunConfig
  # 10 steps of 16 pairs; logs at 2, 4, ..., 10; checkpoints at 3, 6, 9
  return RunConfig(kind="pm", model_size="1k", batch_size=16, log_every=2, checkpoint_every=3,
                   data=DataConfig(max_len=16), optim=OptimConfig(learning_rate=3e-3))


def worker(argv: list[str]) -> None:
  """One process of the run (the reference: one process with 8 devices)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("run_dir")
  parser.add_argument("--die_at_checkpoint", type=int, default=None)
  from hh_jax import distributed, paths
  distributed.add_args(parser)
  args = parser.parse_args(argv)
  distributed.initialize_from_args(args)
  import jax
  from hh_jax.checkpoint import Checkpointer
  from hh_jax.data.pipeline import PMData
  from hh_jax.train import tasks
  from tests.conftest import ToyTokenizer, toy_pairs
  assert jax.device_count() == 8, jax.devices()

  original_write, original_save = paths.atomic_write, Checkpointer.save

  def write(path, data):                 # any run file written by a process other than 0
    if jax.process_index() != 0:
      print(f"PROCESS {jax.process_index()} WROTE {path}", flush=True)
    original_write(path, data)

  def save(self, step, state, meta):     # a kill between two checkpoints, as a preemption
    if step == args.die_at_checkpoint:
      os.kill(os.getpid(), signal.SIGKILL)
    original_save(self, step, state, meta)

  paths.atomic_write, Checkpointer.save = write, save
  data = PMData(ToyTokenizer(), toy_pairs(160, 0), toy_pairs(32, 1), {})
  summary = tasks.run_config(config(), args.run_dir, inputs=data, progress=False,
                             track="tensorboard")
  print("SUMMARY_ACCURACY", summary["eval/accuracy"], flush=True)
  # fetch: an array split over both processes' devices comes back whole on each process
  from hh_jax import sharding as shd
  from hh_jax.config import MeshConfig
  mesh = shd.make_mesh(MeshConfig(-1, 1))
  rows = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  [split] = jax.tree.leaves(shd.shard_batch(mesh, {"x": rows}))
  assert np.array_equal(distributed.fetch(split), rows)
  print("FETCH_OK", flush=True)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(run_dir: str, *flags: str, devices: int = 4) -> subprocess.Popen:
  env = {**ENV, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return subprocess.Popen([sys.executable, "-m", "tests.test_multihost", run_dir, *flags],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def two_processes(run_dir: str, *flags: str, kill_both: bool = False) -> list[tuple[int, str]]:
  """Run both processes of the run; (return code, output) of each. kill_both: as soon as one
  has died (SIGKILL at a checkpoint), kill the other too, as a preemption of the whole job."""
  port = free_port()
  procs = [start(run_dir, "--coordinator", f"127.0.0.1:{port}", "--num_processes", "2",
                 "--process_id", str(i), *flags) for i in range(2)]
  try:
    deadline = time.time() + TIMEOUT_S
    while kill_both and all(p.poll() is None for p in procs) and time.time() < deadline:
      time.sleep(0.2)
    for p in procs if kill_both else ():
      p.kill()
    return [(p.wait(max(1, deadline - time.time())), p.stdout.read()) for p in procs]
  finally:
    for p in procs:
      p.kill()


def test_two_processes_train_like_one_process_with_8_devices_and_resume_after_a_kill(tmp_path):
  from hh_jax.train import lifecycle
  from hh_jax.metrics import read_jsonl
  from tests.test_tracking import assert_events_equal_metrics

  reference = start(str(tmp_path / "one"), devices=8)
  run_dir = str(tmp_path / "two")
  killed = two_processes(run_dir, "--die_at_checkpoint", "9", kill_both=True)
  assert [rc for rc, _ in killed] == [-signal.SIGKILL] * 2, killed[0][1][-3000:]
  assert not os.path.exists(os.path.join(run_dir, "summary.json"))
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints")))[-1] == "6"
  resumed = two_processes(run_dir)
  out_one = reference.communicate(timeout=TIMEOUT_S)[0]
  assert reference.returncode == 0, out_one[-3000:]
  for rc, out in resumed:
    assert rc == 0 and "FETCH_OK" in out, out[-3000:]
    assert "WROTE" not in out, out                       # only process 0 writes run files
  assert all("WROTE" not in out for _, out in killed)

  one, two = lifecycle.load_model(str(tmp_path / "one")), lifecycle.load_model(run_dir)
  for a, b in zip(*(jax_leaves(m.params) for m in (one, two))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)   # all-reduce order; Adam on ~0 grads
  ref_records, records = (read_jsonl(os.path.join(d, "metrics.jsonl"))
                          for d in (tmp_path / "one", run_dir))
  assert [r["step"] for r in records] == [r["step"] for r in ref_records] == [2, 4, 6, 8, 10]
  np.testing.assert_allclose([r["pm/loss"] for r in records], [r["pm/loss"] for r in ref_records],
                             rtol=1e-5)
  summaries = [lifecycle.read_json(d, "summary.json") for d in (str(tmp_path / "one"), run_dir)]
  assert summaries[0]["eval/accuracy"] == summaries[1]["eval/accuracy"]
  assert_events_equal_metrics(run_dir)
  files = [f for f in os.listdir(run_dir) if f.endswith((".json", ".jsonl"))]
  assert sorted(files) == ["config.json", "metrics.jsonl", "model.json", "summary.json"]


def jax_leaves(tree) -> list[np.ndarray]:
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


if __name__ == "__main__":
  worker(sys.argv[1:])
