"""The main job end to end (tiny `smoke` preset): a kill mid-stage, a rerun that redoes no
finished run, and the report's claims; plus the report logic on hand-made analysis output."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hh_jax import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = "data,base_lm,pm_scaling"


def _reproduce(out, stages=STAGES):
  return [sys.executable, "-m", "hh_jax.cli", "reproduce", "--preset", "smoke", "--out", str(out),
          "--stages", stages, "--no-progress"]


def test_killed_reproduce_resumes_without_redoing_finished_runs(tmp_path):
  out = tmp_path / "smoke"
  proc = subprocess.Popen(_reproduce(out), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 240
  while time.time() < deadline and len(glob.glob(str(out / "pm_scaling" / "*" / "summary.json"))) < 2:
    time.sleep(0.5)
  os.killpg(proc.pid, signal.SIGKILL)          # a kill in the middle of the PM sweep
  proc.wait()
  finished = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / "**" / "summary.json"),
                                                             recursive=True)}
  assert len(finished) >= 4                    # 2 base LMs and >= 2 PMs were done
  subprocess.run(_reproduce(out), cwd=ROOT, check=True, capture_output=True, timeout=400)
  for path, mtime in finished.items():         # nothing finished was redone
    assert os.stat(path).st_mtime_ns == mtime, path
  runs = glob.glob(str(out / "pm_scaling" / "*" / "summary.json"))
  assert len(runs) == 2 * 2 * 2                # sizes x data sizes x seeds, all finished
  log = (out / "reproduce.log").read_text()
  assert "pm_scaling: 8 runs, " in log and "already finished" in log


def _analysis(tmp_path, mix_rows, gaps_end):
  figs = tmp_path / "figures"
  for sub in ("pm_scaling", "pm_mix", "rl"):
    (figs / sub).mkdir(parents=True)
  fit = {"fit": {"a": 0.7, "b": 0.01, "c": 0.02, "r2": 0.95}, "n_runs": 40,
         "ci95": {"b": [0.005, 0.015], "c": [0.01, 0.03], "r2": [0.9, 0.97]}}
  (figs / "pm_scaling" / "pm_analysis.json").write_text(json.dumps(
      {"scaling": {"metrics": {"accuracy": fit}}, "calibration": {"pooled": {"ece": 0.02}, "n_pairs": 10}}))
  (figs / "pm_mix" / "pm_analysis.json").write_text(json.dumps({"mix": mix_rows}))
  run = {"name": "ppo/policy-25k-pm-100k",
         "score_vs_sqrt_kl": {"train": {"slope": 1.0, "r2": 0.97, "slope_stderr": 0.1}},
         "robustness": {"tests": {}}}
  (figs / "rl" / "rl_analysis.json").write_text(json.dumps({"runs": [run], "best_of_n": [], "elo": []}))
  ppo_dir = tmp_path / "ppo" / "policy-25k-pm-100k"
  ppo_dir.mkdir(parents=True)
  with open(ppo_dir / "metrics.jsonl", "w") as f:
    for i in range(20):   # train gains 0.1/iter; the test PM follows it for 5 iterations, then stalls
      test = 0.1 * min(i, 5) + (0.1 * max(0, i - 5) * (1 - gaps_end))
      f.write(json.dumps({"step": i + 1, "ppo/score_train": 0.1 * i, "ppo/score_test/t": test}) + "\n")


def test_report_claims_from_hand_made_analysis(tmp_path):
  rows = [{"helpful_fraction": 0.0, "helpful": 0.45, "harmless": 0.8},
          {"helpful_fraction": 0.5, "helpful": 0.7, "harmless": 0.75},
          {"helpful_fraction": 1.0, "helpful": 0.75, "harmless": 0.3}]
  _analysis(tmp_path, rows, gaps_end=1.0)
  numbers = report.write_report(str(tmp_path))
  claims = {c["id"]: c for c in numbers["claims"]}
  assert set(report.CLAIM_IDS) == set(claims)
  for c in claims.values():
    assert set(c) >= {"id", "claim", "paper", "ours", "ci", "held"}
  assert claims["pm_accuracy_vs_params"]["held"] and claims["pm_loglinear_fit"]["held"]
  assert claims["helpful_harmless_tension"]["held"]
  assert claims["rl_reward_linear_in_sqrt_kl"]["held"]
  # Divergence: gap_i = 0.1 max(0, i - 5). "Early" is index max(5, 20 // 5) = 5, averaged over
  # indices 3..7: (0 + 0 + 0 + 0.1 + 0.2) / 5 = 0.06; "end" averages indices 15..19: 1.2.
  div = claims["train_test_pm_divergence"]
  assert div["ours"]["t"]["early"] == pytest.approx(0.06)
  assert div["ours"]["t"]["end"] == pytest.approx(1.2)
  assert div["held"]
  assert not claims["best_of_n"]["held"] and not claims["elo"]["held"]   # no data: not held
  text = (tmp_path / "report.md").read_text()
  assert "## Did not hold at this scale" in text and "**best_of_n**" in text
  assert (tmp_path / "report.html").exists()


def test_report_says_when_the_tension_does_not_hold(tmp_path):
  rows = [{"helpful_fraction": 0.0, "helpful": 0.55, "harmless": 0.8},
          {"helpful_fraction": 1.0, "helpful": 0.75, "harmless": 0.6}]
  _analysis(tmp_path, rows, gaps_end=0.0)
  claims = {c["id"]: c for c in report.write_report(str(tmp_path))["claims"]}
  assert not claims["helpful_harmless_tension"]["held"]
  assert not claims["train_test_pm_divergence"]["held"]      # the test PM kept up


@pytest.mark.parametrize("name", ["quick", "laptop", "hh-rlhf", "smoke"])
def test_every_preset_builds_its_runs(name, tmp_path):
  """Every stage's configs build (valid sizes, fields, paths) without touching any data."""
  from hh_jax import reproduce
  from hh_jax.models import LADDER
  preset = reproduce.PRESETS[name]
  repro = reproduce.Reproduction(preset, str(tmp_path / name), progress=True)
  sizes = repro.all_sizes()
  assert set(preset.pm_sizes) <= set(sizes) <= set(LADDER)
  cfg = reproduce._pm_config(preset, repro.data_dir, repro.root, preset.pm_sizes[-1],
                             **{"data.num_train_pairs": preset.num_pairs[-1]})
  assert cfg.init_from.endswith(f"base_lm/{preset.pm_sizes[-1]}") and cfg.dtype == preset.dtype
  items = repro.ppo_items()
  names = [n for n, _ in items]
  assert len(set(names)) == len(names)
  main = os.path.basename(repro.main_ppo_run())
  assert main in names
  snapshots = {n: c.snapshot_every for n, c in items}
  assert (snapshots[main] > 0) == preset.has_gold     # Elo needs the gold labeller
  for _, c in items:
    assert c.prompt_len + c.max_new_tokens < preset.max_len
