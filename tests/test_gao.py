"""Gao et al. coefficients vs train-PM size (analysis.gao): rl_analysis-shaped inputs whose gold
curves are exactly d (alpha - beta ln d) with known per-seed alpha and beta; the table and the
statistic recover them, with the t interval worked by hand."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from analysis import claims, fits, gao, plots, rl

SIZES = (("6k", 6626), ("25k", 25538), ("100k", 100_000))
# (alpha, beta) per train-PM size and PPO seed: beta falls with size, alpha rises.
TRUE = {"6k": {0: (0.30, 0.40), 1: (0.25, 0.35), 2: (0.35, 0.50)},
        "25k": {0: (0.32, 0.30), 1: (0.28, 0.25), 2: (0.36, 0.30)},
        "100k": {0: (0.40, 0.20), 1: (0.30, 0.20), 2: (0.50, 0.30)}}
D = np.linspace(0.0, 3.0, 30)                                      # sqrt(KL) over training


def run_entry(pm: str, params: int, seed: int, alpha: float, beta: float, policy: str = "100k",
              config: str | None = None) -> dict:
  """One rl_analysis.json run entry, its gold fitted by analysis.rl as `run_fits` does."""
  gold = -1.0 + fits.gao_rl_curve(D, alpha, beta)                  # gold(0) = -1
  config = config or f"ppo/policy-{policy}-pm-{pm}"
  return {"name": f"{config}-s{seed}", "config": config, "seed": seed,
          "policy": {"model_size": policy, "params": 100_000},
          "train_pm": {"model_size": pm, "name": f"train-{pm}", "params": params},
          "gold_gao_rl": {"hh": rl.gold_gao_fit(D, gold), "helpful": rl.gold_gao_fit(D, 0.5 * gold)},
          "final_samples": 25_600.0}


def rl_inputs(true=TRUE, extra=()) -> dict:
  runs = [run_entry(pm, params, seed, *true[pm][seed]) for pm, params in SIZES if pm in true
          for seed in true[pm]]
  runs = list(extra) + runs            # decoys first: "paper-faithful/..." sorts before "ppo/..."
  return {"n_runs": len(runs), "runs": runs, "best_of_n": [], "elo": []}


# Runs that are not the robustness family: another policy size, PPO from the distilled model, an
# ensemble reward, the paper-faithful variant's directory. None may enter the table.
DECOYS = [run_entry("6k", 6626, 0, 9.0, 9.0, policy="25k"),
          run_entry("100k", 100_000, 0, 9.0, 9.0, config="ppo_distilled/policy-100k-cd-pm-100k"),
          run_entry("100k", 100_000, 0, 9.0, 9.0, config="ppo_ensemble/policy-100k-ens3-min"),
          run_entry("6k", 6626, 0, 9.0, 9.0, config="paper-faithful/ppo/policy-100k-pm-6k"),
          run_entry("100k", 100_000, 0, 9.0, 9.0, config="paper-faithful/ppo/policy-100k-pm-100k")]


def test_the_table_recovers_each_seeds_alpha_and_beta_per_pm_size():
  table = gao.coefficient_table(rl_inputs(extra=DECOYS), "policy-100k-pm-100k-s0")
  assert [(r["model_size"], r["params"], r["seeds"]) for r in table] == [
      (pm, params, [0, 1, 2]) for pm, params in SIZES]
  for row in table:
    for seed, (alpha, beta) in TRUE[row["model_size"]].items():
      got = row["rl"]["per_seed"][str(seed)]
      assert got["alpha"] == pytest.approx(alpha, abs=1e-9) and got["beta"] == pytest.approx(beta, abs=1e-9)
    betas = [b for _, b in TRUE[row["model_size"]].values()]
    assert row["rl"]["beta"]["mean"] == pytest.approx(np.mean(betas))
    assert row["rl"]["beta"]["sd"] == pytest.approx(np.std(betas, ddof=1))
    assert row["bon"] is None                       # no best-of-n runs given


def test_the_statistic_is_the_paired_difference_with_its_t_interval():
  result = gao.gao_beta_vs_pm_size_statistic({"rl": rl_inputs(extra=DECOYS)}, "policy-100k-pm-100k-s1")
  # beta(100k) - beta(6k) per seed: -0.2, -0.15, -0.2; alpha: +0.1, +0.05, +0.15.
  diffs = np.array([-0.20, -0.15, -0.20])
  mean, sd = diffs.mean(), diffs.std(ddof=1)
  half = 4.303 * sd / np.sqrt(3)                   # t_{0.975, 2} = 4.303
  v = result["values"]
  assert v["value"] == pytest.approx(mean) and v["value"] == pytest.approx(-0.55 / 3)
  assert v["ci_low"] == pytest.approx(mean - half) and v["ci_high"] == pytest.approx(mean + half)
  alpha = np.array([0.10, 0.05, 0.15])
  alpha_half = 4.303 * alpha.std(ddof=1) / np.sqrt(3)
  assert v["alpha_diff"] == pytest.approx(0.10)
  assert v["alpha_diff_ci_low"] == pytest.approx(0.10 - alpha_half)
  assert v["alpha_diff_ci_high"] == pytest.approx(0.10 + alpha_half)
  assert v["beta_slope"] < 0 and v["beta_small"] == pytest.approx(1.25 / 3)
  assert result["counts"] == {"seeds": 3, "sizes": 3, "rl_samples": 25_600.0}
  assert result["per_seed"] == {str(s): pytest.approx(d) for s, d in enumerate(diffs)}
  assert claims.STATISTICS["gao_beta_difference"] is gao.gao_beta_vs_pm_size_statistic


def test_without_the_main_run_the_family_is_the_policy_with_most_pm_sizes():
  a = gao.gao_beta_vs_pm_size_statistic({"rl": rl_inputs(extra=DECOYS)})
  b = gao.gao_beta_vs_pm_size_statistic({"rl": rl_inputs(extra=DECOYS)}, "policy-100k-pm-100k-s0")
  assert a == b


def test_one_pm_size_or_one_seed_is_not_tested():
  one_size = gao.gao_beta_vs_pm_size_statistic({"rl": rl_inputs({"100k": TRUE["100k"]})})
  assert "1 train-PM size" in one_size["not_tested"]
  one_seed = gao.gao_beta_vs_pm_size_statistic(
      {"rl": rl_inputs({"6k": {0: TRUE["6k"][0]}, "100k": {0: TRUE["100k"][0], 1: TRUE["100k"][1]}})})
  assert "1 PPO seed(s)" in one_seed["not_tested"]
  assert "not_tested" in gao.gao_beta_vs_pm_size_statistic({"rl": None})
  assert "not_tested" in gao.gao_beta_vs_pm_size_statistic({"rl": {"runs": []}})


def test_best_of_n_form_appears_for_the_pm_size_that_has_it(tmp_path):
  bon = [{"path": f"/r/best_of_n/policy-100k-pm-100k-s{s}/bon.json",
          "gao_bon": {"gold_hh": fits.gao_bon_fit(D, fits.gao_bon_curve(D, 0.5 + 0.1 * s, 0.1))}}
         for s in range(3)]
  bon.insert(0, {"path": "/r/paper-faithful/best_of_n/policy-100k-pm-100k-s0/bon.json",
                 "gao_bon": {"gold_hh": {"alpha": 9.0, "beta": 9.0}}})     # not this root's
  inputs = {**rl_inputs(), "best_of_n": bon}
  table = gao.coefficient_table(inputs)
  assert [r["bon"] is not None for r in table] == [False, False, True]
  assert table[-1]["bon"]["alpha"]["mean"] == pytest.approx(0.6)
  assert table[-1]["bon"]["beta"]["mean"] == pytest.approx(0.1)
  fig = gao.fig_gao_coefficients(table)
  assert plots.layout_problems(fig) == [] and plots.has_legend(fig)
  assert "Gao et al. 2022" in plots.figure_title(fig)


def test_run_gao_writes_the_table_and_a_readable_figure(tmp_path):
  path = tmp_path / "rl_analysis.json"
  path.write_text(json.dumps(rl_inputs(extra=DECOYS)))
  out = gao.run_gao(str(path), str(tmp_path / "gao"), "policy-100k-pm-100k-s0")
  names = sorted(os.path.basename(f) for f in out["files"])
  assert names == ["gao_analysis.json", "gao_coefficients_vs_pm_size.pdf",
                   "gao_coefficients_vs_pm_size.png"]
  with open(tmp_path / "gao" / "gao_analysis.json") as f:
    written = json.load(f)
  assert sorted(written["tables"]) == ["helpful", "hh"]
  assert written["statistic"]["values"]["value"] == pytest.approx(-0.55 / 3)
  _, figures, _ = gao.analyze_gao(rl_inputs())
  assert plots.layout_problems(figures["gao_coefficients_vs_pm_size"]) == []
  missing = gao.run_gao(str(tmp_path / "none.json"), str(tmp_path / "gao2"))
  assert "not found" in missing["notes"][0] and "not_tested" in missing["result"]["statistic"]
