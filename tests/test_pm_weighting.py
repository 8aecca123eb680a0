"""analysis.pm_weighting: the lambda and mix-by-size claims on synthetic PM runs whose
accuracies follow a known rule, checked against hand computations; each claim must fail when
the rule is reversed."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import pm_weighting
from analysis.runs import Run

PARAMS = {"1k": 906, "400k": 397058}


def _run(size, seed, lam, frac, helpful, harmless, sweep="pm_lambda") -> Run:
  config = {"kind": "pm", "model_size": size, "seed": seed,
            "data": {"dataset": "hh_synth/mix", "harmless_weight": lam, "helpful_fraction": frac}}
  summary = {"kind": "pm", "model_size": size, "params/non_embedding": PARAMS[size],
             "data/num_train": 8000, "eval/accuracy": (helpful + harmless) / 2,
             "eval/accuracy_helpful": helpful,
             "eval/accuracy_harmless": harmless}
  name = f"{sweep}/{size}-{lam}-{frac}-{seed}"
  return Run(dir=f"/x/{name}", name=name,
             config=config, summary=summary)


def _lambda_runs(small_slope, large_slope, seeds=(0, 1, 2)):
  rng = np.random.default_rng(0)
  out = []
  for size, b in (("1k", small_slope), ("400k", large_slope)):
    for seed in seeds:
      for lam in (1.0, 2.0, 3.0, 4.0, 10.0):
        out.append(_run(size, seed, lam, 0.75, 0.7 + b * lam + 0.001 * rng.normal(), 0.6))
  return out


def test_slope_matches_polyfit():
  x, y = [1.0, 2.0, 3.0, 4.0, 10.0], [0.7, 0.68, 0.69, 0.65, 0.6]
  assert pm_weighting.slope(x, y) == pytest.approx(np.polyfit(x, y, 1)[0])


def test_lambda_claim_holds_when_small_pm_falls_faster_and_fails_reversed():
  held = pm_weighting.lambda_claim(pm_weighting.records_of(_lambda_runs(-0.008, -0.001)))
  assert held["held"] and held["ours"] == pytest.approx(-0.007, abs=5e-4)
  assert held["ci"][1] < 0
  reversed_ = pm_weighting.lambda_claim(pm_weighting.records_of(_lambda_runs(-0.001, -0.008)))
  assert not reversed_["held"] and reversed_["ours"] > 0


def test_lambda_claim_with_one_seed_has_no_interval():
  c = pm_weighting.lambda_claim(pm_weighting.records_of(_lambda_runs(-0.008, -0.001, seeds=(0,))))
  assert c["ci"] is None and not c["held"]


def _mix_runs(small_peak, large_peak, seeds=(0, 1, 2)):
  """Mean accuracy m(f) = 0.7 - peak (f - 0.5)^2 at the interior fractions (plus noise)."""
  rng = np.random.default_rng(1)
  out = []
  for size, peak in (("1k", small_peak), ("400k", large_peak)):
    for seed in seeds:
      for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        m = 0.7 - peak * (frac - 0.5) ** 2 + 0.0005 * rng.normal()
        out.append(_run(size, seed, 1.0, frac, m + 0.05, m - 0.05, sweep="pm_mix"))
  return out


def test_mix_spread_by_hand():
  rs = [{"helpful": h, "harmless": g} for h, g in ((0.4, 0.8), (0.7, 0.7), (0.8, 0.6), (0.7, 0.5), (0.9, 0.2))]
  # interior fractions 0.25, 0.5, 0.75: m = 0.70, 0.70, 0.60
  assert pm_weighting.mix_spread([0.0, 0.25, 0.5, 0.75, 1.0], rs) == pytest.approx(0.1)


def test_mix_claim_holds_when_small_pm_peaks_and_fails_reversed():
  c = pm_weighting.mix_claim(pm_weighting.records_of(_mix_runs(0.8, 0.1)))
  # spread = peak * 0.25^2: 0.05 vs 0.00625
  assert c["held"] and c["ours"] == pytest.approx(0.04375, abs=2e-3)
  r = pm_weighting.mix_claim(pm_weighting.records_of(_mix_runs(0.1, 0.8)))
  assert not r["held"] and r["ours"] < 0


def test_analyze_weighting_tables_and_figures():
  runs = _lambda_runs(-0.008, -0.001) + _mix_runs(0.8, 0.1)
  result, figures, notes = pm_weighting.analyze_weighting(runs)
  assert set(figures) == {"pm_lambda_tradeoff", "pm_mix_sensitivity"} and not notes
  row = next(r for r in result["lambda"] if r["model_size"] == "1k" and r["lambda"] == 10.0)
  assert row["n_seeds"] == 3 and row["helpful"] == pytest.approx(0.62, abs=2e-3)
  # the lambda sweep's lambda = 1 runs at 75% helpful stay out of the mix table
  assert all(r["n_seeds"] == 3 for r in result["mix"]) and len(result["mix"]) == 10
  assert result["claims"][1]["held"]
  assert [c["id"] for c in result["claims"]] == ["lambda_tradeoff_by_size", "larger_pm_less_mix_sensitive"]


def test_statistics_from_pm_analysis_tables_match_the_claims():
  from analysis import pm as pm_lib
  lam_runs, mix_runs = _lambda_runs(-0.008, -0.001), _mix_runs(0.8, 0.1)
  inputs = {"pm_lambda": {"table": {"records": [pm_lib.pm_record(r) for r in lam_runs]}},
            "pm_mix": {"table": {"records": [pm_lib.pm_record(r) for r in mix_runs]}}}
  lam = pm_weighting.lambda_slope_statistic(inputs)
  assert lam["values"]["value"] == pytest.approx(
      pm_weighting.lambda_claim(pm_weighting.records_of(lam_runs))["ours"])
  assert lam["counts"] == {"seeds": 3, "sizes": 2} and lam["values"]["ci_high"] < 0
  mix = pm_weighting.mix_sensitivity_statistic(inputs)
  assert mix["values"]["value"] == pytest.approx(
      pm_weighting.mix_claim(pm_weighting.records_of(mix_runs))["ours"])
  assert "not_tested" in pm_weighting.lambda_slope_statistic({})


def test_run_weighting_writes_json_and_figures(tmp_path):
  # the analysis entry point over run directories on disk (summary.json + config.json only)
  import json
  for run in _lambda_runs(-0.008, -0.001, seeds=(0, 1)):
    d = tmp_path / run.name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(run.summary))
    (d / "config.json").write_text(json.dumps(run.config))
  out = pm_weighting.run_weighting([str(tmp_path / "pm_lambda"), str(tmp_path / "absent")],
                                   str(tmp_path / "figs"))
  assert (tmp_path / "figs" / "weighting_analysis.json").exists()
  assert (tmp_path / "figs" / "pm_lambda_tradeoff.png").exists()
  assert out["result"]["claims"][0]["ours"] < 0
