"""Tests for analysis.report: every claim from hand-made analysis outputs with hand-derived verdicts,
the train/test gain gap from a PPO run through `hh-jax analyze rl`, the claims table, the CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from analysis import cli, report
from analysis import rl as rl_lib

MAIN = "policy-25k-pm-100k"
MIX_HELD = [{"helpful_fraction": 0.0, "helpful": 0.45, "harmless": 0.8},
            {"helpful_fraction": 0.5, "helpful": 0.7, "harmless": 0.75},
            {"helpful_fraction": 1.0, "helpful": 0.75, "harmless": 0.3}]


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _run_entry(name, gaps, slope=1.0, r2=0.97):
  return {"name": f"ppo/{name}", "score_vs_sqrt_kl": {"train": {"slope": slope, "r2": r2, "slope_stderr": 0.1}},
          "robustness": {"tests": {}}, "gain_gaps": gaps}


def _analysis(root, mix_rows, gaps, runs=None, robustness_fit=None, best_of_n=(), elo=()):
  """Hand-made analysis outputs under root/figures: the only files the report may read."""
  figs = os.path.join(str(root), "figures")
  fit = {"fit": {"a": 0.7, "b": 0.01, "c": 0.02, "r2": 0.95}, "n_runs": 40,
         "ci95": {"b": [0.005, 0.015], "c": [0.01, 0.03], "r2": [0.9, 0.97]}}
  _write(os.path.join(figs, "pm_scaling", "pm_analysis.json"),
         {"scaling": {"metrics": {"accuracy": fit}}, "calibration": {"pooled": {"ece": 0.02}, "n_pairs": 10}})
  _write(os.path.join(figs, "pm_mix", "pm_analysis.json"), {"mix": mix_rows})
  _write(os.path.join(figs, "rl", "rl_analysis.json"),
         {"runs": runs or [_run_entry(MAIN, gaps)], "robustness_fit": robustness_fit,
          "best_of_n": list(best_of_n), "elo": list(elo)})


def _claims(numbers):
  return {c["id"]: c for c in numbers["claims"]}


def test_report_claims_from_hand_made_analysis(tmp_path):
  # The gain gaps of the 20-iteration run of test_gain_gaps_by_hand with gaps_end = 1: early 0.06, end 1.2.
  _analysis(tmp_path, MIX_HELD, {"t": {"early": 0.06, "end": 1.2}})
  numbers = report.write_report(str(tmp_path))
  claims = _claims(numbers)
  assert [c["id"] for c in numbers["claims"]] == list(report.CLAIM_IDS)
  for c in claims.values():
    assert set(c) == {"id", "claim", "paper", "ours", "ci", "held", "detail"}
  assert claims["pm_accuracy_vs_params"]["held"] and claims["pm_loglinear_fit"]["held"]
  assert claims["pm_calibration"]["held"]                   # ECE 0.02 < 0.05
  # Tension: helpful-only on harmless 0.3 < 0.5, harmless-only on helpful 0.45 < 0.5, the mix's worst 0.7.
  assert claims["helpful_harmless_tension"]["ours"] == {
      "helpful_only_on_harmless": 0.3, "harmless_only_on_helpful": 0.45, "mixed_worst": 0.7}
  assert claims["helpful_harmless_tension"]["held"]
  sqrt_kl = claims["rl_reward_linear_in_sqrt_kl"]
  assert sqrt_kl["held"] and sqrt_kl["ci"] == pytest.approx([1.0 - 0.196, 1.0 + 0.196])
  div = claims["train_test_pm_divergence"]
  assert div["ours"]["t"]["early"] == pytest.approx(0.06)
  assert div["ours"]["t"]["end"] == pytest.approx(1.2)
  assert div["held"]                                        # 1.2 > 0 and 0.06 < 0.6
  assert not claims["larger_pm_more_robust"]["held"]        # no test-PM sizes: no fit
  assert not claims["best_of_n"]["held"] and not claims["elo"]["held"]   # no data: not held
  text = (tmp_path / "report.md").read_text()
  assert "## Did not hold at this scale" in text and "**best_of_n**" in text
  assert "7 of 10 claims of Bai et al. 2022 held at this scale." in text
  assert (tmp_path / "report.html").exists()
  with open(tmp_path / "numbers.json") as f:
    saved = json.load(f, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
  assert set(saved) == {"preset", "claims", "pm_scaling", "pm_mix", "rl"} and saved["preset"] is None
  assert saved["claims"] == json.loads(json.dumps(numbers["claims"]))


def test_report_says_when_the_tension_does_not_hold(tmp_path):
  rows = [{"helpful_fraction": 0.0, "helpful": 0.55, "harmless": 0.8},
          {"helpful_fraction": 1.0, "helpful": 0.75, "harmless": 0.6}]
  _analysis(tmp_path, rows, {"t": {"early": 0.0, "end": 0.0}})   # gaps_end = 0: the test PM kept up
  claims = _claims(report.write_report(str(tmp_path)))
  assert not claims["helpful_harmless_tension"]["held"]
  assert not claims["train_test_pm_divergence"]["held"]


def test_divergence_needs_every_test_pm(tmp_path):
  # t1 diverges; t2's early gap 0.5 is not below half its end gap 0.8; a missing (NaN) gap is not held.
  _analysis(tmp_path, MIX_HELD, {"t1": {"early": 0.1, "end": 1.0}, "t2": {"early": 0.5, "end": 0.8}})
  assert not _claims(report.write_report(str(tmp_path)))["train_test_pm_divergence"]["held"]
  _analysis(tmp_path, MIX_HELD, {"t1": {"early": 0.1, "end": None}})
  assert not _claims(report.write_report(str(tmp_path)))["train_test_pm_divergence"]["held"]


def _ppo_run(root, gaps_end, iterations=20):
  """Train gains 0.1 per iteration; the test PM follows it for 5 iterations, then gains
  0.1 (1 - gaps_end) per iteration: gap_i = 0.1 gaps_end max(0, i - 5)."""
  run = os.path.join(str(root), "ppo", MAIN)
  _write(os.path.join(run, "config.json"), {"kind": "ppo", "batch_size": 4})
  _write(os.path.join(run, "summary.json"), {"ppo/iterations": iterations})
  with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    for i in range(iterations):
      test = 0.1 * min(i, 5) + 0.1 * max(0, i - 5) * (1 - gaps_end)
      f.write(json.dumps({"step": i + 1, "ppo/kl": (0.1 * i) ** 2, "ppo/score_train": 0.1 * i,
                          "ppo/score_test/t": test}) + "\n")


@pytest.mark.parametrize("gaps_end, early, end, held", [(1.0, 0.06, 1.2, True), (0.0, 0.0, 0.0, False)])
def test_gain_gaps_by_hand(tmp_path, gaps_end, early, end, held):
  # gap_i = 0.1 max(0, i - 5) (gaps_end = 1). "Early" is index max(5, 20 // 5) = 5, averaged over
  # indices 3..7: (0 + 0 + 0 + 0.1 + 0.2) / 5 = 0.06; "end" is index 20 - 1 - 2 = 17, averaged
  # over indices 15..19: (1.0 + 1.1 + 1.2 + 1.3 + 1.4) / 5 = 1.2.
  _ppo_run(tmp_path, gaps_end)
  assert cli.main(["rl", str(tmp_path), "--out", str(tmp_path / "figures" / "rl")]) == 0
  with open(tmp_path / "figures" / "rl" / "rl_analysis.json") as f:
    (entry,) = json.load(f)["runs"]
  assert entry["gain_gaps"]["t"] == pytest.approx({"early": early, "end": end})
  div = _claims(report.write_report(str(tmp_path), main_run=MAIN))["train_test_pm_divergence"]
  assert div["ours"]["t"] == pytest.approx({"early": early, "end": end}) and div["held"] is held


def test_gain_gap_window_clips_at_the_start():
  # window_mean(x, 1, 5) averages x[0..3]; gain_gap_series subtracts both first scores.
  assert rl_lib.window_mean([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1) == pytest.approx(2.5)
  curve = {"score_train": np.array([1.0, 2.0, 4.0]), "score_test": {"t": np.array([5.0, 5.5, 6.0])}}
  assert rl_lib.gain_gap_series(curve, "t") == pytest.approx([0.0, 0.5, 2.0])


@pytest.mark.parametrize("stderr, ci, held", [(0.05, [0.102, 0.298], True), (0.15, [-0.094, 0.494], False),
                                              (None, None, False)])
def test_robustness_claim_from_the_stored_fit(tmp_path, stderr, ci, held):
  # CI = slope +- 1.96 stderr; held iff its lower end is above 0. No stderr (2 points): not held.
  _analysis(tmp_path, MIX_HELD, {}, robustness_fit={"slope": 0.2, "slope_stderr": stderr, "n_points": 6})
  claim = _claims(report.write_report(str(tmp_path)))["larger_pm_more_robust"]
  assert claim["ours"] == {"slope_gain_per_ln_params": 0.2} and claim["held"] is held
  assert claim["ci"] == (None if ci is None else pytest.approx(ci))


def test_robustness_fit_with_two_points_has_no_stderr():
  runs = [{"robustness": {"tests": {"a": {"params": 100, "gain": 0.1}, "b": {"params": 10_000, "gain": 0.5}}}}]
  fit = rl_lib.robustness_fit(runs)
  assert fit["slope"] == pytest.approx(0.4 / math.log(100)) and math.isnan(fit["slope_stderr"])


def test_best_of_n_and_elo_claims_by_hand(tmp_path):
  bon = {"n": [1, 2, 4], "kl_bound": [0.0, 0.19, 0.64], "scores": {"score_train": [0.0, 0.3, 0.5],
                                                                      "gold_hh": [0.1, 0.15, 0.12]}}
  # Gold Elo minus 1.96 stderr: [0, 30 - 19.6, 50 - 19.6, 40 - 19.6] peaks at index 2 (30.4).
  elo = {"samples": [0, 10, 20, 30], "elo_gold": [0, 30, 50, 40], "elo_gold_stderr": [0, 10, 10, 10],
         "elo_pm_predicted": [0, 40, 80, 120]}
  _analysis(tmp_path, MIX_HELD, {}, best_of_n=[bon], elo=[elo])
  claims = _claims(report.write_report(str(tmp_path)))
  b = claims["best_of_n"]
  assert b["held"] and b["ours"] == pytest.approx({"n_max": 4, "kl_bound": 0.64, "train_gain": 0.5, "gold_gain": 0.02})
  e = claims["elo"]
  assert e["held"] and e["ours"]["gold_elo_peak"] == 50 and e["ours"]["peak_at_samples"] == 20
  assert e["ci"] == pytest.approx([50 - 19.6, 50 + 19.6])


def test_main_run_picks_the_named_ppo_run(tmp_path):
  runs = [_run_entry("policy-a", {}, r2=0.5), _run_entry("policy-b", {}, r2=0.99)]
  _analysis(tmp_path, MIX_HELD, {}, runs=runs)
  assert not _claims(report.write_report(str(tmp_path)))["rl_reward_linear_in_sqrt_kl"]["held"]   # first run
  claims = _claims(report.write_report(str(tmp_path), "quick", "policy-b"))
  assert claims["rl_reward_linear_in_sqrt_kl"]["held"] and "ppo/policy-b" in claims["rl_reward_linear_in_sqrt_kl"]["detail"]


def test_results_table_by_hand():
  numbers = {"claims": [
      {"id": "a", "claim": "x rises", "paper": "Fig 1", "ours": 0.123456, "ci": [0.1, 0.2], "held": True},
      {"id": "b", "claim": "y | z", "paper": "Fig 2", "ours": {"t": {"early": 0.5, "end": 2.0}, "n": 3},
       "ci": None, "held": False}]}
  assert report.results_table(numbers) == "\n".join([
      "| claim | paper | ours | 95% CI | held |",
      "|---|---|---|---|---|",
      "| **a**: x rises | Fig 1 | 0.12 | [0.10, 0.20] | yes |",      # width 0.1: 2 decimals
      "| **b**: y \\| z | Fig 2 | t (early=0.5, end=2), n=3 | n/a | **no** |"])


def test_report_cli(tmp_path, capsys):
  _analysis(tmp_path, MIX_HELD, {"t": {"early": 0.06, "end": 1.2}})
  assert cli.main(["report", str(tmp_path), "--preset", "quick", "--main-run", MAIN]) == 0
  assert "7 of 10 claims" in capsys.readouterr().out
  with open(tmp_path / "numbers.json") as f:
    assert json.load(f)["preset"] == "quick"
  assert (tmp_path / "report.md").read_text().startswith("# hh-jax reproduction report (quick)")


def test_estimates_are_rounded_to_the_precision_of_their_interval():
  # width 0.001852 -> second significant digit at 1e-4 -> 4 decimals
  assert report.format_estimate(0.003709, [0.002815, 0.004667]) == ("0.0037", "[0.0028, 0.0047]")
  # width 5.3 -> 1 decimal... its second significant digit is the first decimal
  assert report.format_estimate(87.89, [61.55, 66.85]) == ("87.9", "[61.5, 66.8]")
  assert report.format_estimate(0.5, None) == ("0.5", "n/a")           # no interval: as before
