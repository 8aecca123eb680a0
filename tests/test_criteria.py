"""The claims criteria (analysis/criteria.toml): every claim can hold, fail and be not tested, on
hand-made analysis outputs whose answers are derived here; freezing; the test-expression whitelist."""

from __future__ import annotations

import json
import math
import os

import pytest

from analysis import claims as claims_lib
from analysis import criteria as crit
from analysis import pm as pm_lib
from analysis import report

T2 = 4.303                                   # t(0.975, 2 d.o.f.): 3 seeds
SIZES = {"1k": 1_000, "5k": 5_000, "25k": 25_000, "100k": 100_000, "400k": 400_000}
DATA = (1_000, 4_000, 16_000)
MAIN = "policy-100k-pm-100k"


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _pm_record(size, params, d, seed, acc, fraction=None, by_source=None, baselines=(0.55, 0.56, 0.57)):
  return {"run": f"{size}-n{d}-s{seed}", "model_size": size, "seed": seed, "params": params,
          "num_train": d, "dataset": "hh_synth/mix", "helpful_fraction": fraction, "harmless_weight": 1.0,
          "accuracy": acc, "bayes_ceiling": 0.8, "by_source": by_source or {}, "bayes_by_source": {},
          "by_turn": {}, **dict(zip(pm_lib.BASELINES, baselines))}


def pm_scaling(b_by_seed, c_by_seed, bow=0.57, eces=(0.01, 0.02, 0.03)):
  """acc = 0.5 + b_s ln(P / 1000) + c_s ln(D / 1000) exactly, one grid per seed s."""
  recs = [_pm_record(size, p, d, s, 0.5 + b * math.log(p / 1000) + c * math.log(d / 1000),
                     baselines=(0.55, 0.56, bow))
          for s, (b, c) in enumerate(zip(b_by_seed, c_by_seed)) for size, p in SIZES.items() for d in DATA]
  return {"n_runs": len(recs), "table": {"records": recs, "cells": pm_lib.aggregate(recs)},
          "scaling": {"family": pm_lib.family_of(recs[0])},
          "calibration": {"by_run": [{"run": f"400k-s{s}", "seed": s, "ece": e} for s, e in enumerate(eces)]}}


def pm_mix(seeds, help_only_on_harm=0.3):
  """Fractions 0, 0.5, 1 of one size: harmless-only on helpful 0.4, the mix's worst 0.7."""
  recs = []
  for s in seeds:
    for f, helpful, harmless in ((0.0, 0.4, 0.8), (0.5, 0.7, 0.75), (1.0, 0.75, help_only_on_harm)):
      recs.append(_pm_record("5k", 5_000, 4_000, s, (helpful + harmless) / 2, f,
                             {"helpful": helpful + 0.01 * s, "harmless": harmless + 0.01 * s}))
  return {"n_runs": len(recs), "table": {"records": recs, "cells": []}}


def _ppo_entry(name, seed, r2, slope, end_gap, robust_slope, samples=25_600, beta=0.3):
  tests = {f"test-{n}": {"model_size": n, "params": p, "gain_std": robust_slope * math.log(p)}
           for n, p in (("6k", 6_000), ("25k", 25_000), ("100k", 100_000))}
  return {"name": f"ppo/{name}-s{seed}", "config": f"ppo/{name}", "seed": seed,
          "policy": {"model_size": "100k"},
          "train_pm": {"model_size": name.rsplit("-", 1)[1],
                       "params": {"25k": 25_000, "100k": 100_000}[name.rsplit("-", 1)[1]]},
          "gold_gao_rl": {"hh": {"alpha": 0.5, "beta": beta}},
          "final_samples": samples, "score_vs_sqrt_kl": {"train": {"r2": r2, "slope": slope}},
          "robustness": {"tests": tests}, "gain_gaps_std": {"test-100k": {"early": 0.1, "end": end_gap}}}


def rl(seeds, r2s, slopes, end_gaps, robust_slopes, bon_gains, elo_peaks, samples=25_600,
       beta_gaps=(-0.2, -0.19, -0.18)):
  """... beta_gaps: per seed, Gao beta of the largest train PM (100k) minus the smaller's (25k)."""
  runs = [_ppo_entry(name, s, r2s[s], slopes[s], end_gaps[s], robust_slopes[s], samples,
                     beta=0.4 + (beta_gaps[s] if name == MAIN else 0.0))
          for name in (MAIN, "policy-100k-pm-25k") for s in seeds]
  bon = [{"path": f"/r/best_of_n/{MAIN}-s{s}/bon.json", "n": [1, 2, 4, 8, 16],
          "scores": {"gold_hh": [0.1, 0.12, 0.15, 0.1 + bon_gains[s] / 2, 0.1 + bon_gains[s]]}} for s in seeds]
  elo = [{"path": f"/r/elo/{MAIN}-s{s}/elo.json", "samples": [0, 10, 20, 30],
          "elo_gold": [0.0, elo_peaks[s], elo_peaks[s] - 20, elo_peaks[s] - 40],
          "elo_pm_predicted": [0.0, 100.0, 150.0, 200.0]} for s in seeds]
  return {"runs": runs, "best_of_n": bon, "elo": elo}


def pm_mix_by_size(seeds, small_dip, large_dip=0.01):
  """A second, larger size beside pm_mix's 5k: interior fractions 0.25, 0.5, 0.75 whose mean
  accuracy dips by `dip` at 0.25 and 0.75, so each size's spread is its dip."""
  recs = []
  for size, params, dip in (("5k", 5_000, small_dip), ("400k", 400_000, large_dip)):
    for s in seeds:
      for f in (0.25, 0.5, 0.75):
        acc = 0.7 - (dip if f != 0.5 else 0.0)
        recs.append(_pm_record(size, params, 4_000, s, acc, f, {"helpful": acc, "harmless": acc}))
  return recs


def pm_lambda(seeds, small_slope, large_slope):
  """Helpful accuracy 0.7 + slope lambda (exactly), lambda in {1, 3, 10}, at two sizes."""
  recs = []
  for size, params, b in (("5k", 5_000, small_slope), ("400k", 400_000, large_slope)):
    for s in seeds:
      for lam in (1.0, 3.0, 10.0):
        rec = _pm_record(size, params, 8_000, s, 0.7, 0.75,
                         {"helpful": 0.7 + b * lam, "harmless": 0.7})
        recs.append({**rec, "harmless_weight": lam})
  return {"n_runs": len(recs), "table": {"records": recs, "cells": []}}


def ood(seeds, gaps, gains):
  """One 2-block base LM's ood results per seed, with these middle gaps and k = 10 gains."""
  from analysis import ood as ood_analysis
  records = [{"run": f"ood/400k-s{s}", "seed": s, "model_size": "400k", "num_layers": 2,
              "params": 397058, "layers": [0, 1, 2], "auroc_srmd": [0.5, 0.9, 0.9 - g],
              "auroc_srmd_ci": [[0, 1]] * 3, "auroc_md": [0.5, 0.9, 0.9], "auroc_md_ci": [[0, 1]] * 3,
              "middle_gap": g, "middle_gap_ci": [0, 1], "ks": [10], "auroc_exposure": [0.9 + x],
              "auroc_exposure_ci": [[0, 1]], "exposure_gain": [x], "exposure_gain_ci": [[0, 1]],
              "exposure_layer": 1, "auroc_exposure_draws": [[0.9 + x]]}
             for s, g, x in zip(seeds, gaps, gains)]
  return {"sizes": ood_analysis.size_table(records)}


def policy_eval(seeds, tax_small, tax_large, cd_final, cd_init):
  """Held-out evaluations of base-LM PPO runs at two policy sizes and of PPO from the distilled
  model at the larger, per seed: these capability taxes and gold gains over the base-LM twin."""
  from analysis import policy_evals
  side = lambda c, g: {"capability": c, "gold_hh": g, "gold_helpful": g, "gold_harmless": 0.0}  # noqa: E731
  recs = []
  for i, s in enumerate(seeds):
    for params, tax in ((6_000, tax_small[i]), (100_000, tax_large[i])):
      recs.append({"params": params, "seed": s, "init_kind": "lm", "initial": side(0.4, 0.0),
                   "final": side(0.4 + tax, 0.5)})
    recs.append({"params": 100_000, "seed": s, "init_kind": "distill",
                 "initial": side(0.4, cd_init[i]), "final": side(0.4, 0.5 + cd_final[i])})
  return json.loads(json.dumps({"tax": policy_evals.tax_table(recs),
                                "context_distillation": policy_evals.cd_table(recs)}))


def online(seeds, elo_diffs, rounds=3):
  """online_eval records (analysis.online's `runs`) with these per-seed Elo differences."""
  runs = [{"run": f"online_eval/eval-25k-s{s}", "config": "online_eval/eval-25k", "seed": s,
           "elo_diff": e, "win_rate": 1 / (1 + 10 ** (-e / 400)), "gold_diff": e / 400,
           "rounds": [{}] * rounds, "static_pool": 4000} for s, e in zip(seeds, elo_diffs)]
  return {"runs": runs}


def _snapshot(step, train_hh, helpful, harmless, hh=0.0, reply_len=8.0):
  return {"step": step, "samples": 64 * step, "train_gold_hh": train_hh, "helpful": helpful,
          "harmless": harmless, "hh": hh, "reply_len": reply_len, "n_helpful": 118,
          "n_red_team": 10, "has_task": True, "has_gold": True}


def _gold_run(stage_config, seed, snapshots):
  return {"run": f"{stage_config}-s{seed}", "config": stage_config, "seed": seed, "gold": True,
          "snapshots": snapshots}


def rl_gold(seeds, helpful_gains, harmless_gains, mean_diffs, min_diffs):
  """analysis.rl_gold's records. ppo: two configs, per seed snapshots at steps 0, 10, 20 whose
  training-rollout gold peaks at step 10, where the held-out gains over step 0 are these (the
  25k-PM config's 0.05 higher: the main config is the worst); step 20 is worse on every held-out
  number, so choosing by the held-out prompts or the last snapshot would give other values.
  ppo_ensemble: final gold hh of ens1 0.2 + 0.01 s, of each kind that plus its per-seed diff."""
  ppo = []
  for config, extra in ((MAIN, 0.0), ("policy-100k-pm-25k", 0.05)):
    for i, s in enumerate(seeds):
      ppo.append(_gold_run(config, s, [
          _snapshot(0, None, 0.1, -0.2, reply_len=8.0),
          _snapshot(10, 0.5, 0.1 + helpful_gains[i] + extra, -0.2 + harmless_gains[i] + extra,
                    reply_len=6.0),
          _snapshot(20, 0.3, -0.9, -1.2, reply_len=3.0)]))
  ens = []
  for i, s in enumerate(seeds):
    for name, diff in (("ens1", 0.0), ("ens3-mean", mean_diffs[i]), ("ens3-min", min_diffs[i])):
      final = 0.2 + 0.01 * s + diff
      ens.append(_gold_run(f"policy-100k-{name}", s, [_snapshot(0, None, 0, 0, hh=0.0),
                                                      _snapshot(20, 0.4, 0, 0, hh=final)]))
  return {"ppo": {"runs": ppo}, "ppo_ensemble": {"runs": ens}}


def good_inputs(seeds=(0, 1, 2)):
  k = len(seeds)
  mix = pm_mix(seeds)
  mix["table"]["records"] += pm_mix_by_size(seeds, small_dip=0.05)
  return {"pm_scaling": pm_scaling([0.009, 0.010, 0.011][:k], [0.02] * k, eces=(0.01, 0.02, 0.03)[:k]),
          "pm_mix": mix,
          "rl": rl(seeds, [0.96, 0.97, 0.98], [0.3, 0.35, 0.4], [1.0, 1.1, 1.2], [0.1, 0.11, 0.12],
                   [0.2, 0.21, 0.22], [50.0, 51.0, 52.0]),
          "pm_lambda": pm_lambda(seeds, small_slope=-0.008, large_slope=-0.001),
          "ood": ood(seeds, [0.05, 0.07, 0.06][:k], [0.02, 0.04, 0.03][:k]),
          "policy_eval": policy_eval(seeds, [-0.1, -0.12, -0.08], [0.0, 0.01, 0.02],
                                     [0.1, 0.15, 0.2], [0.05, 0.06, 0.07]),
          "online": online(seeds, [20.0, 25.0, 30.0]),
          "rl_gold": rl_gold(seeds, [0.2, 0.3, 0.4], [0.1, 0.15, 0.2], [0.05, 0.06, 0.07],
                             [0.02, 0.1, 0.03])}


def bad_inputs():
  mix = pm_mix((0, 1, 2), help_only_on_harm=0.55)
  mix["table"]["records"] += pm_mix_by_size((0, 1, 2), small_dip=0.0, large_dip=0.05)
  return {"pm_scaling": pm_scaling([0.004, -0.004, 0.0], [0.02, -0.02, 0.0], bow=0.62, eces=(0.01, 0.02, 0.06)),
          "pm_mix": mix,
          "rl": rl((0, 1, 2), [0.8, 0.9, 0.85], [0.3, -0.3, 0.0], [0.5, -0.5, 0.0], [0.1, -0.1, 0.0],
                   [0.1, -0.1, 0.0], [10.0, -10.0, 0.0], beta_gaps=(0.1, -0.1, 0.0)),
          "pm_lambda": pm_lambda((0, 1, 2), small_slope=-0.001, large_slope=-0.008),
          "ood": ood((0, 1, 2), [0.05, -0.05, 0.0], [0.02, -0.02, 0.0]),
          "policy_eval": policy_eval((0, 1, 2), [-0.1, 0.1, 0.0], [0.0, 0.0, 0.0],
                                     [0.1, -0.1, 0.0], [0.05, -0.05, 0.0]),
          "online": online((0, 1, 2), [20.0, -20.0, 0.0]),
          "rl_gold": rl_gold((0, 1, 2), [0.2, 0.3, 0.4], [0.1, -0.1, 0.0], [0.05, -0.05, 0.0],
                             [0.04, -0.06, 0.0])}


def _verdicts(inputs, main=MAIN):
  return {c["id"]: c for c in report.judge_claims(crit.load_criteria(), inputs, main)}


def test_the_criteria_file_names_every_claim_with_every_field():
  c = crit.load_criteria()
  ids = [s["id"] for s in c["claims"]]
  for old in ("pm_accuracy_vs_params", "pm_accuracy_vs_data", "pm_loglinear_fit", "pm_calibration",
              "helpful_harmless_tension", "rl_reward_linear_in_sqrt_kl", "train_test_pm_divergence",
              "larger_pm_more_robust", "best_of_n", "elo"):     # the ids of docs/laptop/numbers.json
    assert old in ids
  assert "pm_accuracy_vs_params_upper_half" in ids and "pm_beats_baselines" in ids
  for spec in c["claims"]:
    assert spec["statistic"] in claims_lib.STATISTICS and spec["requires"]["seeds"] >= 3


def test_every_claim_holds_on_data_built_to_hold():
  claims = _verdicts(good_inputs())
  assert {i: c["verdict"] for i, c in claims.items()} == {i: "held" for i in claims}
  # b per seed 0.009, 0.010, 0.011: mean 0.010, sd 0.001, half-width 4.303 * 0.001 / sqrt(3).
  b = claims["pm_accuracy_vs_params"]
  assert b["ours"] == pytest.approx(0.010) and b["ci"] == pytest.approx([0.010 - T2 * 0.001 / math.sqrt(3),
                                                                          0.010 + T2 * 0.001 / math.sqrt(3)])
  # Above 25k the law is the same straight line in ln P: the upper-half slope is b itself.
  assert claims["pm_accuracy_vs_params_upper_half"]["ours"] == pytest.approx(0.010)
  # Largest PM: 0.5 + b_s ln 400 + 0.02 ln 16, best baseline 0.57 (bag of words).
  margin = 0.5 + 0.010 * math.log(400) + 0.02 * math.log(16) - 0.57
  assert claims["pm_beats_baselines"]["ours"] == pytest.approx(margin)
  assert claims["pm_beats_baselines"]["values"]["best_baseline"] == pytest.approx(0.57)
  assert claims["pm_calibration"]["values"]["ci_high"] == pytest.approx(0.02 + T2 * 0.01 / math.sqrt(3))
  assert claims["helpful_harmless_tension"]["ours"] == pytest.approx(0.31)      # 0.3 + 0.01 s, s = 0..2
  assert claims["rl_reward_linear_in_sqrt_kl"]["ours"] == pytest.approx(0.97)
  assert claims["train_test_pm_divergence"]["ours"] == pytest.approx(1.1)
  assert claims["larger_pm_more_robust"]["ours"] == pytest.approx(0.11)        # gain_std = k_s ln P
  assert claims["best_of_n"]["ours"] == pytest.approx(0.21)
  assert claims["elo"]["ours"] == pytest.approx(51.0)                           # the peak is snapshot 1
  assert claims["elo"]["values"]["peak_at_samples"] == 10
  # Held-out gold at the step-10 snapshot (highest training-rollout gold), minus step 0; the
  # main config is the worst: helpful 0.2, 0.3, 0.4 (mean 0.3, sd 0.1), harmless 0.1, 0.15, 0.2.
  gold = claims["rl_gold_improves"]
  assert gold["ours"] == pytest.approx(0.3)
  assert gold["ci"] == pytest.approx([0.3 - T2 * 0.1 / math.sqrt(3), 0.3 + T2 * 0.1 / math.sqrt(3)])
  assert gold["values"]["harmless"] == pytest.approx(0.15)
  assert gold["values"]["harmless_ci_low"] == pytest.approx(0.15 - T2 * 0.05 / math.sqrt(3))
  assert gold["values"][f"{MAIN}:reply_len_best"] == pytest.approx(6.0)
  assert gold["values"]["policy-100k-pm-25k:helpful"] == pytest.approx(0.35)
  # Ensembles: mean diffs 0.05, 0.06, 0.07 (mean 0.06) beat min's 0.02, 0.1, 0.03 (mean 0.05).
  ens = claims["ensemble_reduces_overoptimisation"]
  assert ens["ours"] == pytest.approx(0.06) and ens["values"]["min"] == pytest.approx(0.05)
  assert ens["ci"] == pytest.approx([0.06 - T2 * 0.01 / math.sqrt(3), 0.06 + T2 * 0.01 / math.sqrt(3)])


def test_every_claim_can_fail():
  claims = _verdicts(bad_inputs())
  assert {i: c["verdict"] for i, c in claims.items()} == {i: "not held" for i in claims}
  assert claims["pm_beats_baselines"]["values"]["best_baseline"] == pytest.approx(0.62)


def test_every_claim_is_not_tested_with_one_seed_or_without_its_stage():
  claims = _verdicts(good_inputs(seeds=(0,)))
  assert {i: c["verdict"] for i, c in claims.items()} == {i: "not tested" for i in claims}
  assert "independent seeds: 1 (the criterion needs >= 3)" in claims["pm_calibration"]["reason"]
  none = _verdicts({"pm_scaling": None, "pm_mix": None, "rl": None})
  assert {c["verdict"] for c in none.values()} == {"not tested"}
  assert none["best_of_n"]["reason"] == "the best_of_n stage did not run"


def test_a_short_ppo_budget_is_not_tested_rather_than_failed():
  inputs = good_inputs()
  inputs["rl"] = rl((0, 1, 2), [0.5] * 3, [0.3] * 3, [1.0] * 3, [0.1] * 3, [0.2] * 3, [50.0] * 3, samples=2_560)
  claims = _verdicts(inputs)
  assert claims["rl_reward_linear_in_sqrt_kl"]["verdict"] == "not tested"      # R^2 0.5, but 2,560 samples
  assert "RL samples per run: 2560 (the criterion needs >= 20000)" in claims["rl_reward_linear_in_sqrt_kl"]["reason"]


def test_the_upper_half_fails_when_accuracy_is_flat_above_25k():
  inputs = good_inputs()
  for r in inputs["pm_scaling"]["table"]["records"]:
    if r["params"] > 25_000:     # the 100k and 400k PMs are no better than the 25k one
      r["accuracy"] = 0.5 + 0.01 * math.log(25) + 0.02 * math.log(r["num_train"] / 1000)
  claims = _verdicts(inputs)
  assert claims["pm_accuracy_vs_params"]["verdict"] == "held"
  assert claims["pm_accuracy_vs_params_upper_half"]["verdict"] == "not held"


def test_a_pm_above_the_bayes_ceiling_does_not_hold():
  inputs = good_inputs()
  for r in inputs["pm_scaling"]["table"]["records"]:
    r["bayes_ceiling"] = 0.6                 # the largest PM's 0.615 would be above the ceiling
  assert _verdicts(inputs)["pm_beats_baselines"]["verdict"] == "not held"


def test_main_run_selects_the_config_with_or_without_its_seed():
  inputs = good_inputs()
  for r in inputs["rl"]["runs"]:
    if r["config"] == "ppo/policy-100k-pm-25k":
      r["score_vs_sqrt_kl"]["train"]["r2"] = 0.5
  assert _verdicts(inputs, MAIN)["rl_reward_linear_in_sqrt_kl"]["verdict"] == "held"
  assert _verdicts(inputs, MAIN + "-s1")["rl_reward_linear_in_sqrt_kl"]["verdict"] == "held"
  assert _verdicts(inputs, "policy-100k-pm-25k")["rl_reward_linear_in_sqrt_kl"]["verdict"] == "not held"


def test_held_out_gold_needs_every_config_and_the_prompts_task():
  inputs = good_inputs()
  for run in inputs["rl_gold"]["ppo"]["runs"]:
    if run["config"] == "policy-100k-pm-25k" and run["seed"] == 1:
      run["snapshots"][1]["helpful"] = run["snapshots"][0]["helpful"] - 0.5  # one seed's loss
  claims = _verdicts(inputs)
  assert claims["rl_gold_improves"]["verdict"] == "not held"        # that config's interval spans 0
  assert claims["rl_gold_improves"]["values"]["harmless_ci_low"] > 0
  inputs = good_inputs()
  inputs["rl_gold"]["ppo"]["runs"][4]["snapshots"][0]["has_task"] = False   # a pre-task snapshot
  inputs["rl_gold"]["ppo_ensemble"]["runs"][1]["snapshots"] = []             # no snapshots
  claims = _verdicts(inputs)
  assert claims["rl_gold_improves"]["verdict"] == "not tested"
  assert claims["rl_gold_improves"]["reason"].startswith(
      "1 of 6 ppo runs have snapshots without the eval prompts' task")
  assert claims["ensemble_reduces_overoptimisation"]["reason"].startswith(
      "1 of 9 ppo_ensemble runs have no held-out snapshots")
  inputs = good_inputs()
  for run in inputs["rl_gold"]["ppo"]["runs"]:
    for snap in run["snapshots"]:
      snap["n_red_team"] = 3
  reason = _verdicts(inputs)["rl_gold_improves"]["reason"]
  assert reason == "red-team (harmful_request) eval prompts: 3 (the criterion needs >= 5)"


def test_a_missing_value_with_requirements_met_is_not_held():
  spec = {"id": "x", "test": "ci_low > 0", "requires": {"seeds": 3}}
  assert crit.judge(spec, {"values": {"value": 1.0, "ci_low": None}, "counts": {"seeds": 3}}) == \
      ("not held", "could not compute ci_low")
  assert crit.judge(spec, {"values": {"ci_low": 0.1}, "counts": {"seeds": 3}}) == ("held", "")
  assert crit.judge(spec, {"not_tested": "the ppo stage has no finished runs"})[0] == "not tested"


@pytest.mark.parametrize("test, values, expected", [
    ("ci_low > 0", {"ci_low": 0.1}, True), ("value >= 0.9 and b > 0", {"value": 0.9, "b": 0.0}, False),
    ("early < 0.5 * value", {"early": 0.4, "value": 1.0}, True), ("not x > 1 or y == 2", {"x": 3, "y": 2}, True),
    ("-x < 0 < y", {"x": 1, "y": 1}, True)])
def test_test_expressions(test, values, expected):
  assert crit.evaluate_test(test, values) is expected


@pytest.mark.parametrize("test", ["__import__('os').system('x')", "x.real > 0", "[x][0] > 0", "x > 'a'",
                                  "x ** 2 > 1", "x >"])
def test_test_expressions_outside_the_whitelist_are_refused(test):
  with pytest.raises(crit.CriteriaError):
    crit.names_in(test)


def test_freeze_copies_once_and_refuses_other_criteria(tmp_path):
  root, src = tmp_path / "results", tmp_path / "criteria.toml"
  src.write_text(open(crit.CRITERIA_PATH).read())
  frozen = crit.freeze_criteria(str(root), str(src))
  assert open(frozen).read() == src.read_text()
  assert (root / crit.SHA_NAME).read_text().split()[0] == crit.sha256_of(str(src))
  assert crit.freeze_criteria(str(root), str(src)) == frozen            # same file: fine
  assert crit.load_criteria(str(root))["frozen"]
  src.write_text(src.read_text().replace('test = "ci_high < 0.05"', 'test = "ci_high < 0.5"'))
  with pytest.raises(crit.CriteriaChangedError, match="differ from those frozen"):
    crit.freeze_criteria(str(root), str(src))
  (root / crit.FROZEN_NAME).write_text(src.read_text())                  # editing the frozen copy
  with pytest.raises(crit.CriteriaChangedError, match="edited after it was frozen"):
    crit.load_criteria(str(root))


def test_the_report_judges_by_the_frozen_copy(tmp_path):
  for key, rel in report.ANALYSIS_FILES.items():
    _write(str(tmp_path / "figures" / rel), good_inputs()[key])
  crit.freeze_criteria(str(tmp_path))
  numbers = report.write_report(str(tmp_path), "t", MAIN)
  assert numbers["criteria"]["frozen"] and numbers["criteria"]["sha256"] == crit.sha256_of(crit.CRITERIA_PATH)
  n = len(crit.load_criteria()["claims"])
  assert report.held_sentence(numbers) == f"{n} of {n} tested claims of Bai et al. 2022 held at this scale; 0 not tested."
