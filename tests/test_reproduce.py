"""The main job end to end (tiny `smoke` preset, every stage): a kill mid-stage, a rerun that
redoes no finished run and trains exactly the planned runs; and, for every preset and stage,
the reproduction's runs are exactly those `hh-jax sweep --preset` prints for that file."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from analysis.criteria import load_criteria
from experiments.presets import PRESETS
from hh_jax.models import LADDER
from hh_jax.reproduce import Reproduction
from hh_jax.train import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reproduce(out):
  return [sys.executable, "-m", "hh_jax.cli", "reproduce", "--preset", "smoke", "--out", str(out),
          "--no-progress"]


def _as_json(cfg) -> dict:
  return json.loads(json.dumps(dataclasses.asdict(cfg)))


def test_killed_reproduce_resumes_without_redoing_finished_runs(tmp_path):
  out = tmp_path / "smoke"
  proc = subprocess.Popen(_reproduce(out), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 300
  while time.time() < deadline and len(glob.glob(str(out / "pm_scaling" / "*" / "summary.json"))) < 2:
    time.sleep(0.5)
  os.killpg(proc.pid, signal.SIGKILL)          # a kill in the middle of the PM sweep
  proc.wait()
  finished = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / "**" / "summary.json"),
                                                             recursive=True)}
  assert len(finished) >= 4                    # 2 base LMs and >= 2 PMs were done
  done = subprocess.run(_reproduce(out), cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  for path, mtime in finished.items():         # nothing finished was redone
    assert os.stat(path).st_mtime_ns == mtime, path
  log = (out / "reproduce.log").read_text()
  assert "pm_scaling: 8 runs, " in log and "already finished" in log
  # Every run the plan names was trained with exactly the planned config, and nothing else.
  repro = Reproduction(PRESETS["smoke"], str(out), data_dir=str(out / "tfds"))
  for stage in PRESETS["smoke"].stages:
    runs = repro.plan(stage)
    assert sorted(os.listdir(out / stage)) == sorted(r.name for r in runs), stage
    for run in runs:
      with open(os.path.join(run.dir, "config.json")) as f:
        assert json.load(f) == _as_json(run.config), run.dir
  numbers = json.loads((out / "numbers.json").read_text())
  assert len(numbers["claims"]) == len(load_criteria()["claims"]) and (out / "report.md").exists()
  assert os.path.exists(out / "elo" / "policy-6k-pm-6k-s0" / "elo.json")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_reproduction_trains_exactly_the_runs_its_experiment_files_print(preset, tmp_path, capsys):
  """Names, directories and resolved configs of every stage equal `hh-jax sweep --print --json`."""
  repro = Reproduction(PRESETS[preset], str(tmp_path / preset))
  for stage in PRESETS[preset].stages:
    planned = [{"name": r.name, "dir": r.dir, "config": _as_json(r.config)}
               for r in repro.plan(stage)]
    argv = [os.path.join(ROOT, "experiments", f"{stage}.py"), "--root", repro.root,
            "--preset", preset, "--data_dir", repro.data_dir, "--print", "--json"]
    assert sweep.main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == planned, stage
    assert all(r["dir"].startswith(os.path.join(repro.root, stage)) for r in printed)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_uses_ladder_sizes_and_consistent_models(preset, tmp_path):
  """Sizes are rungs; each PPO/best-of-n run reads prompt + reply + EOC within max_len; the
  main PPO run stores snapshots exactly when the world has a gold labeller (Elo needs it), and
  every PPO run as often (the held-out gold); the ensemble stage runs exactly where there is
  gold, with the ppo stage's sampling and PPO settings."""
  p = PRESETS[preset]
  repro = Reproduction(p, str(tmp_path / preset))
  lm_runs = {r.dir: r.config for r in repro.plan("base_lm")}
  assert all(cfg.model_size in LADDER for cfg in lm_runs.values())
  for run in repro.plan("ppo") + repro.plan("best_of_n"):
    cfg = run.config
    policy = lm_runs[cfg.policy_init if run.experiment == "ppo" else cfg.policy]
    assert cfg.prompt_len + cfg.max_new_tokens + 1 <= policy.data.max_len
  main = [r for r in repro.plan("ppo") if r.name == repro.main_ppo_run()]
  assert len(main) == 1 and (main[0].config.snapshot_every > 0) == p.has_gold
  assert ("elo" in p.stages) == p.has_gold
  main_cfg = main[0].config
  assert {r.config.snapshot_every for r in repro.plan("ppo")} == {main_cfg.snapshot_every}
  assert ("ppo_ensemble" in p.stages) == p.has_gold
  shared = ("prompt_dataset", "prompt_len", "max_new_tokens", "num_iterations", "batch_size",
            "minibatch_size", "optim", "ppo_epochs", "num_eval_prompts", "snapshot_every")
  for run in (repro.plan("ppo_ensemble") if "ppo_ensemble" in p.stages else []):
    assert run.config.reward_norm and run.config.policy_init == main_cfg.policy_init
    assert {k: getattr(run.config, k) for k in shared} == {k: getattr(main_cfg, k) for k in shared}
