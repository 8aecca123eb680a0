"""Tests for analysis/ (runs, pm, rl, plots, cli) on fake run directories built from known laws.

The fake PM grid follows acc = a + b ln(P/P0) + c ln(D/D0) + N(0, sigma^2); the fake PPO runs
follow score = s0 + k sqrt(KL) (+ noise) and gold = g0 + d (alpha - beta ln d). Tolerances are
4 standard errors computed here from the noise level and the design, (X^T X)^-1 sigma^2,
independently of the code under test.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from analysis import cli, plots
from analysis import pm as pm_lib
from analysis import rl as rl_lib
from analysis.runs import RunFileError, discover, find_files, find_runs

# ----------------------------------------------------------------------------- the known laws

TRUE = {"a": 0.75, "b": 0.008, "c": 0.012}
P0, D0 = 1e11, 8e4
SIZES = {"1k": 1_000, "5k": 5_000, "25k": 25_000, "100k": 100_000, "500k": 500_000}
DATA = [500, 1000, 2000, 4000]
SEEDS = [0, 1]
SIGMA = 0.002
HELPFUL_SHIFT = 0.02  # helpful accuracy = acc + 0.02, harmless = acc - 0.02 (both exact shifts)
BAYES = 0.7
N_CALIB = 4000

T_ITERS, BATCH = 40, 64
D_STEP = 0.1                               # sqrt(KL) at iteration t (0-based) is 0.1 t
S0, K_SLOPE, SCORE_NOISE = -0.3, 0.8, 0.01
TEST_PMS = [("t1k", 1_000, 0.6, 0.20), ("t10k", 10_000, 0.7, 0.10), ("t100k", 100_000, 0.75, 0.03)]  # name, P, k, q
GOLD_ALPHA, GOLD_BETA, GOLD0, GOLD_NOISE = 0.5, 0.3, 0.1, 0.005
BON_N = [1, 2, 4, 8, 16, 32, 64]
BON_ALPHA, BON_BETA, BON_BASE = 0.4, 0.1, 0.2


def true_acc(params, data):
  return TRUE["a"] + TRUE["b"] * np.log(params / P0) + TRUE["c"] * np.log(data / D0)


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _write_jsonl(path, rows):
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")


def calibrated_scores(rng, n):
  """Pairs from a perfectly calibrated PM: A is labelled chosen with probability sigmoid(PM(A) - PM(B))."""
  s = rng.normal(0.0, 1.5, size=n)                     # PM(A) - PM(B)
  a_chosen = rng.random(n) < 1 / (1 + np.exp(-s))
  gap = np.where(a_chosen, s, -s)                      # chosen - rejected
  chosen = rng.normal(size=n)
  return chosen, chosen - gap, 1 / (1 + np.exp(-gap))  # p_chosen: the (calibrated) labeler's P(chosen)


def make_pm_run(root, name, size, params, num_train, seed, acc, helpful_fraction=None, acc_helpful=None,
                acc_harmless=None, rng=None):
  run = os.path.join(root, name)
  _write(os.path.join(run, "config.json"), {
      "kind": "pm", "model_size": size, "seed": seed,
      "data": {"dataset": "hh_synth/mix", "num_train_pairs": num_train, "helpful_fraction": helpful_fraction,
               "harmless_weight": 1.0}})
  summary = {"kind": "pm", "model_size": size, "seed": seed, "params/non_embedding": params,
             "data/num_train": num_train, "eval/accuracy": acc,
             "eval/accuracy_helpful": acc + HELPFUL_SHIFT if acc_helpful is None else acc_helpful,
             "eval/accuracy_harmless": acc - HELPFUL_SHIFT if acc_harmless is None else acc_harmless,
             "eval/accuracy_turn_1": acc + 0.03, "eval/accuracy_turn_2": acc, "eval/accuracy_turn_3": acc - 0.01,
             "eval/bayes_ceiling": BAYES, "eval/bayes_ceiling_helpful": BAYES + 0.01,
             "eval/bayes_ceiling_harmless": BAYES - 0.01, "eval/shorter_baseline_accuracy": 0.5,
             "eval/num_pairs": N_CALIB}
  _write_jsonl(os.path.join(run, "metrics.jsonl"),
               [{"step": s, "pm/loss": 0.69 - 0.01 * s, "pm/accuracy": 0.5 + 0.01 * s,
                 "data/examples_seen": 32 * s} for s in range(1, 6)])
  if rng is not None:
    chosen, rejected, p_chosen = calibrated_scores(rng, N_CALIB)
    np.savez(os.path.join(run, "eval_scores.npz"), chosen=chosen, rejected=rejected,
             source=rng.integers(0, 2, N_CALIB), num_turns=rng.integers(1, 4, N_CALIB),
             source_names=np.array(["helpful", "harmless"]), p_chosen=p_chosen)
  _write(os.path.join(run, "summary.json"), summary)


def mix_accuracy(fraction):
  """The fake tension: a PM trained on one distribution only is below chance on the other."""
  return 0.3 + 0.4 * fraction, 0.7 - 0.4 * fraction


def make_ppo_run(root, name, policy, train_pm, rng, kl_noise=True):
  run = os.path.join(root, name)
  _write(os.path.join(run, "config.json"), {"kind": "ppo", "policy_init": policy[0], "reward_pm": train_pm[0],
                                            "test_pms": [t[0] for t in TEST_PMS], "seed": 0,
                                            "batch_size": BATCH, "kl_coef": 0.001})
  _write(os.path.join(run, "pms.json"), {
      "policy": {"name": policy[0], "model_size": policy[0], "params": policy[1]},
      "train": {"name": train_pm[0], "model_size": train_pm[0], "params": train_pm[1]},
      "test": [{"name": n, "model_size": n, "params": p} for n, p, _, _ in TEST_PMS]})
  rows, sample_rows = [], []
  for t in range(T_ITERS):
    d = D_STEP * t
    row = {"step": t + 1, "ppo/samples": BATCH * (t + 1), "ppo/kl": d * d, "ppo/sqrt_kl": d,
           "ppo/score_train": S0 + K_SLOPE * d + SCORE_NOISE * rng.normal(),
           "gold/hh": GOLD0 + d * (GOLD_ALPHA - GOLD_BETA * np.log(d if d > 0 else 1.0)) + GOLD_NOISE * rng.normal(),
           "gold/helpful": 0.0, "gold/harmless": 0.0, "ppo/entropy": 1.0, "ppo/clipfrac": 0.1}
    for n, _, k, q in TEST_PMS:
      row[f"ppo/score_test/{n}"] = 0.1 + k * d - q * d * d          # noise-free: robustness checked exactly
    rows.append(row)
    sample_rows.append({"step": t + 1, "kl": [d * d] * 4, "score_train": [row["ppo/score_train"]] * 4})
  _write_jsonl(os.path.join(run, "metrics.jsonl"), rows)
  _write_jsonl(os.path.join(run, "samples.jsonl"), sample_rows)
  _write(os.path.join(run, "summary.json"), {"ppo/iterations": T_ITERS})


def build_results(root):
  rng = np.random.default_rng(1234)
  scaling = os.path.join(root, "quick", "pm_scaling")
  for size, params in SIZES.items():
    for data in DATA:
      for seed in SEEDS:
        acc = float(true_acc(params, data) + SIGMA * rng.normal())
        calib_rng = rng if (size == "500k" and data == DATA[-1]) else None
        make_pm_run(scaling, f"{size}_d{data}_s{seed}", size, params, data, seed, acc, rng=calib_rng)
  mix = os.path.join(root, "quick", "pm_mix")
  for size, params in (("5k", 5_000), ("100k", 100_000)):
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
      helpful, harmless = mix_accuracy(fraction)
      make_pm_run(mix, f"{size}_f{fraction}", size, params, 2000, 0, (helpful + harmless) / 2,
                  helpful_fraction=fraction, acc_helpful=helpful, acc_harmless=harmless)
  # An unfinished run: config and metrics, no summary.
  unfinished = os.path.join(scaling, "killed_run")
  _write(os.path.join(unfinished, "config.json"), {"kind": "pm", "model_size": "1k"})
  _write_jsonl(os.path.join(unfinished, "metrics.jsonl"), [{"step": 1, "pm/loss": 0.7}])
  ppo = os.path.join(root, "quick", "ppo")
  for policy in (("p1k", 1_000), ("p25k", 25_000)):
    make_ppo_run(ppo, f"{policy[0]}_pm100k", policy, ("pm100k", 100_000), rng)
  kl = np.log(BON_N) - (np.array(BON_N) - 1) / np.array(BON_N)
  d = np.sqrt(kl)
  bon_run = os.path.join(root, "quick", "best_of_n", "bon-p25k_pm100k")   # a run directory of its own
  _write(os.path.join(bon_run, "config.json"), {"kind": "best_of_n", "policy": "p25k", "train_pm": "pm100k"})
  _write(os.path.join(bon_run, "summary.json"), {"kind": "best_of_n", "n_max": BON_N[-1]})
  _write(os.path.join(bon_run, "bon.json"), {
      "n": BON_N, "kl_bound": kl.tolist(), "score_train": (1.0 * d).tolist(),
      "score_test/t100k": (0.8 * d - 0.05 * d * d).tolist(),
      "gold_hh": (BON_BASE + d * (BON_ALPHA - BON_BETA * d)).tolist(), "gold_hh_base": BON_BASE})
  elo = {"samples": [0, 640, 1280, 2560], "elo_pm_predicted": [0, 40, 80, 120], "elo_gold": [0, 30, 50, 60],
         "elo_gold_stderr": [0, 8, 9, 10]}
  elo_run = os.path.join(root, "quick", "elo", "elo-p25k_pm100k")          # the run-directory layout
  _write(os.path.join(elo_run, "config.json"), {"kind": "elo", "ppo_run": "p25k_pm100k"})
  _write(os.path.join(elo_run, "summary.json"), {"kind": "elo"})
  _write(os.path.join(elo_run, "elo.json"), elo)
  _write(os.path.join(ppo, "p25k_pm100k", "elo.json"), elo)                # the older layout: inside the PPO run
  return root


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  return build_results(str(tmp_path_factory.mktemp("results")))


@pytest.fixture(scope="module")
def analyzed(results, tmp_path_factory):
  """`hh-jax analyze all` once, through the CLI entry point (the expensive part: ~10 figures)."""
  out = str(tmp_path_factory.mktemp("analysis"))
  pm_out = cli.run_pm(results, out, n_boot=200, seed=0)
  rl_out = cli.run_rl(results, out)
  return {"out": out, "pm": pm_out, "rl": rl_out}


def se_from_design(design, sigma):
  """Standard errors of OLS coefficients: sqrt(diag(sigma^2 (X^T X)^-1))."""
  return np.sqrt(np.diag(sigma**2 * np.linalg.inv(design.T @ design)))


# ----------------------------------------------------------------------------- runs


def test_discovery_skips_unfinished_and_nests(results):
  found = discover(results)
  n_pm = len(SIZES) * len(DATA) * len(SEEDS) + 10
  assert len([r for r in found.runs if r.kind == "pm"]) == n_pm
  assert len(find_runs(results, kind="ppo")) == 2
  assert [os.path.basename(d) for d in found.skipped] == ["killed_run"]
  (bon,) = find_files(results, "bon.json")
  assert bon.endswith(os.path.join("best_of_n", "bon-p25k_pm100k", "bon.json"))
  elos = [os.path.relpath(p, os.path.join(results, "quick")) for p in find_files(results, "elo.json")]
  assert elos == [os.path.join("elo", "elo-p25k_pm100k", "elo.json"), os.path.join("ppo", "p25k_pm100k", "elo.json")]


def test_side_files_found_in_both_layouts(tmp_path):
  """bon.json / elo.json in run directories (best_of_n/<run>/, elo/<run>/) and in the older places
  (best_of_n/bon.json, ppo/<run>/elo.json); neither kind of run is taken for a PPO run."""
  root = str(tmp_path)
  for rel in ("best_of_n/bon.json", "best_of_n/policy-a/bon.json", "elo/policy-a/elo.json", "ppo/policy-a/elo.json"):
    _write(os.path.join(root, rel), {})
  for run, kind in (("best_of_n/policy-a", "best_of_n"), ("elo/policy-a", "elo"), ("ppo/policy-a", "ppo")):
    _write(os.path.join(root, run, "config.json"), {"kind": kind})
    _write(os.path.join(root, run, "summary.json"), {})
  assert [os.path.relpath(p, root) for p in find_files(root, "bon.json")] == [
      os.path.join("best_of_n", "bon.json"), os.path.join("best_of_n", "policy-a", "bon.json")]
  assert [os.path.relpath(p, root) for p in find_files(root, "elo.json")] == [
      os.path.join("elo", "policy-a", "elo.json"), os.path.join("ppo", "policy-a", "elo.json")]
  assert [r.name for r in find_runs(root, "ppo")] == [os.path.join("ppo", "policy-a")]


ANALYSIS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis")
ANALYSIS_MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ANALYSIS_DIR, "*.py")))


def test_analysis_never_imports_hh_jax():
  modules = ", ".join(f"analysis.{m}" for m in ANALYSIS_MODULES if m != "__init__")
  code = (f"import sys, {modules}; "
          "sys.exit(int(any(m == 'hh_jax' or m.startswith('hh_jax.') for m in sys.modules)))")
  assert "analysis.report" in code
  assert subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(ANALYSIS_DIR)).returncode == 0
  for m in ANALYSIS_MODULES:   # nor names it in an import, even one inside a function
    with open(os.path.join(ANALYSIS_DIR, m + ".py")) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not any(n == "hh_jax" or n.startswith("hh_jax.") for n in names), (m, node.lineno)


def test_analysis_modules_and_functions_are_short():
  for m in ANALYSIS_MODULES:
    with open(os.path.join(ANALYSIS_DIR, m + ".py")) as f:
      text = f.read()
    assert text.count("\n") <= 500, m
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        assert node.end_lineno - node.lineno + 1 <= 80, (m, node.name)


def test_lazy_files(results):
  run = next(r for r in find_runs(results, "pm") if r.name.endswith("500k_d4000_s0"))
  assert len(run.metrics) == 5 and run.metrics[0]["pm/loss"] == pytest.approx(0.68)
  assert set(run.scores) >= {"chosen", "rejected", "source", "num_turns", "p_chosen"}
  ppo = find_runs(results, "ppo")[0]
  assert len(ppo.samples) == T_ITERS and ppo.pms["train"]["params"] == 100_000


def test_malformed_summary_names_the_file(tmp_path, capsys):
  bad = tmp_path / "r1"
  bad.mkdir()
  (bad / "config.json").write_text("{}")
  (bad / "summary.json").write_text('{"kind": "pm", "eval/accuracy": ')
  with pytest.raises(RunFileError, match=r"r1/summary.json: malformed JSON at line 1"):
    find_runs(str(tmp_path))
  assert cli.main(["pm", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
  assert "r1/summary.json" in capsys.readouterr().err


def test_malformed_jsonl_names_the_line(tmp_path):
  run = tmp_path / "r"
  run.mkdir()
  (run / "summary.json").write_text('{"kind": "ppo"}')
  (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2,\n')
  (run_obj,) = find_runs(str(tmp_path))
  with pytest.raises(RunFileError, match=r"metrics.jsonl: malformed JSON on line 2"):
    _ = run_obj.metrics


def test_pm_summary_missing_field_names_the_file(tmp_path):
  run = tmp_path / "r"
  run.mkdir()
  (run / "summary.json").write_text('{"kind": "pm", "eval/accuracy": 0.6}')
  with pytest.raises(RunFileError, match=r"r/summary.json: PM summary is missing field\(s\) \['params/non_embedding'"):
    pm_lib.pm_scaling_table(find_runs(str(tmp_path)))


# ----------------------------------------------------------------------------- PM


def test_scaling_table_aggregates_seeds(results):
  table = pm_lib.pm_scaling_table(find_runs(results, "pm"))
  records = table["records"]
  cell = next(c for c in table["cells"] if c["model_size"] == "25k" and c["num_train"] == 1000
              and c["helpful_fraction"] is None)
  accs = [r["accuracy"] for r in records if r["model_size"] == "25k" and r["num_train"] == 1000
          and r["helpful_fraction"] is None]
  assert cell["n_seeds"] == 2 and cell["seeds"] == [0, 1]
  assert cell["accuracy_mean"] == pytest.approx(sum(accs) / 2)
  assert cell["accuracy_std"] == pytest.approx(abs(accs[0] - accs[1]) / np.sqrt(2))  # ddof=1 with 2 values
  assert cell["accuracy_helpful_mean"] == pytest.approx(sum(accs) / 2 + HELPFUL_SHIFT)
  assert cell["bayes_ceiling_mean"] == pytest.approx(BAYES)


def test_scaling_fit_recovers_known_law(results):
  fit_result = pm_lib.pm_scaling_fits(find_runs(results, "pm"), n_boot=200)
  assert fit_result["family"].startswith("hh_synth/mix helpful_fraction=None")
  params = np.array([p for p in SIZES.values() for _ in DATA for _ in SEEDS], float)
  data = np.array([d for _ in SIZES for d in DATA for _ in SEEDS], float)
  design = np.stack([np.ones_like(params), np.log(params / P0), np.log(data / D0)], 1)
  se = dict(zip("abc", se_from_design(design, SIGMA)))
  for metric, shift in (("accuracy", 0.0), ("accuracy_helpful", HELPFUL_SHIFT), ("accuracy_harmless", -HELPFUL_SHIFT)):
    m = fit_result["metrics"][metric]
    assert m["n_runs"] == 40 and m["n_cells"] == 20
    for k in "abc":
      truth = TRUE[k] + (shift if k == "a" else 0.0)
      assert abs(m["fit"][k] - truth) < 4 * se[k], (metric, k, m["fit"][k], truth, se[k])
      lo, hi = m["ci95"][k]
      assert lo <= m["fit"][k] <= hi and hi > lo
    # Noise variance is tiny next to the spread of the law over the grid, so R^2 ~ 1.
    assert m["fit"]["r2"] > 0.98
    # Each size's slope in ln D is c; each data size's slope in ln P is b.
    for s in m["per_slice"]["by_params"].values():
      assert s["slope"] == pytest.approx(TRUE["c"], abs=6 * SIGMA / np.sqrt(2 * np.var(np.log(DATA)) * 8))
  assert fit_result["paper_helpful"] == {"a": 0.72, "b": 0.007, "c": 0.015, "p0": 1e11, "d0": 8e4}


def test_calibration_of_a_calibrated_pm(analyzed):
  calib = analyzed["pm"]["result"]["calibration"]
  # Pooled over the two seeds of the 500k / 4000-pair cell.
  assert calib["n_pairs"] == 2 * N_CALIB and len(calib["runs"]) == 2
  # A calibrated PM lies on sigmoid(d): ECE is within sampling noise (stderr per bin ~ 0.02).
  assert calib["pooled"]["ece"] < 0.03
  assert calib["gold_labeler"]["ece"] < 0.03
  assert set(calib["by_source"]) == {"helpful", "harmless"}


def test_mix_table_matches_hand_values(analyzed):
  rows = analyzed["pm"]["result"]["mix"]
  assert len(rows) == 10
  for r in rows:
    helpful, harmless = mix_accuracy(r["helpful_fraction"])
    assert r["helpful"] == pytest.approx(helpful) and r["harmless"] == pytest.approx(harmless)
    assert r["mean"] == pytest.approx(0.5)
  assert {r["model_size"] for r in rows} == {"5k", "100k"}


def test_turn_table(analyzed):
  turns = analyzed["pm"]["result"]["turns"]
  assert len(turns) == len(SIZES)
  row = next(t for t in turns if t["model_size"] == "1k")
  assert row["num_train"] == DATA[-1]
  # by_turn = accuracy + (0.03, 0, -0.01): turn 1 minus turn 3 is 0.04 exactly.
  assert row["by_turn"]["1"] - row["by_turn"]["3"] == pytest.approx(0.04)


# ----------------------------------------------------------------------------- RL


def test_rl_curves_and_score_fit(results):
  curves = rl_lib.rl_curves(find_runs(results, "ppo"))
  assert [c["policy"]["model_size"] for c in curves] == ["p1k", "p25k"]
  c = curves[0]
  assert c["samples"][-1] == BATCH * T_ITERS and c["sqrt_kl"][5] == pytest.approx(0.5)
  fit = rl_lib.run_fits(c)["score_vs_sqrt_kl"]["train"]
  x = D_STEP * np.arange(T_ITERS // 2)
  se_slope = SCORE_NOISE / np.sqrt(np.sum((x - x.mean()) ** 2))
  assert fit["n"] == T_ITERS // 2 and fit["iterations"] == T_ITERS // 2
  assert abs(fit["slope"] - K_SLOPE) < 4 * se_slope
  assert abs(fit["intercept"] - S0) < 4 * SCORE_NOISE * np.sqrt(1 / len(x) + x.mean()**2 / np.sum((x - x.mean())**2))


def test_gold_gao_fit_recovers_alpha_beta(results):
  c = rl_lib.rl_curves(find_runs(results, "ppo"))[1]
  fit = rl_lib.run_fits(c)["gold_gao_rl"]["hh"]
  d = D_STEP * np.arange(T_ITERS)
  design = np.stack([d, -d * np.log(np.where(d > 0, d, 1.0))], 1)
  # gold(0) carries noise too, and is subtracted from every point: widen by its effect on the fit.
  se = se_from_design(design, GOLD_NOISE * np.sqrt(2))
  assert abs(fit["alpha"] - GOLD_ALPHA) < 4 * se[0]
  assert abs(fit["beta"] - GOLD_BETA) < 4 * se[1]
  assert fit["d_peak"] == pytest.approx(np.exp(fit["alpha"] / fit["beta"] - 1))


def test_robustness_at_budget_by_hand(results):
  c = rl_lib.rl_curves(find_runs(results, "ppo"))[0]
  rob = rl_lib.robustness(c, budget=BATCH * 20 + 5)   # last iteration within budget: t = 19, d = 1.9
  assert rob["iteration_index"] == 19 and rob["samples"] == BATCH * 20
  for name, params, k, q in TEST_PMS:
    t = rob["tests"][name]
    assert t["params"] == params
    assert t["gain"] == pytest.approx(k * 1.9 - q * 1.9**2)
    assert t["gap_start"] == pytest.approx(c["score_train"][0] - 0.1)
    train_gain = c["score_train"][19] - c["score_train"][0]
    assert t["gain_gap"] == pytest.approx(train_gain - (k * 1.9 - q * 1.9**2))
  # A larger (more robust) test PM gains more at the same budget, as in Fig 33.
  gains = [rob["tests"][n]["gain"] for n, *_ in TEST_PMS]
  assert gains == sorted(gains)
  assert rl_lib.budget_index(c["samples"], None) == T_ITERS - 1
  assert rl_lib.budget_index(c["samples"], 1) == 0


def test_robustness_fit_matches_linregress_on_hand_gains(analyzed):
  """At the last iteration (d = 3.9) every run's test-PM gain is k d - q d^2 exactly: the slope of
  gain on ln(params) over the 2 runs x 3 test PMs, from scipy as an independent OLS."""
  d = D_STEP * (T_ITERS - 1)
  x = [np.log(p) for _ in range(2) for _, p, _, _ in TEST_PMS]
  y = [k * d - q * d * d for _ in range(2) for _, _, k, q in TEST_PMS]
  ref = scipy.stats.linregress(x, y)
  fit = analyzed["rl"]["result"]["robustness_fit"]
  assert fit["n_points"] == 6
  assert fit["slope"] == pytest.approx(ref.slope) and fit["slope_stderr"] == pytest.approx(ref.stderr)
  assert rl_lib.robustness_fit(analyzed["rl"]["result"]["runs"][:0]) is None   # no points, no fit


def test_bon_fit_exact(analyzed):
  (bon,) = analyzed["rl"]["result"]["best_of_n"]
  gold = bon["gao_bon"]["gold_hh"]
  assert gold["alpha"] == pytest.approx(BON_ALPHA) and gold["beta"] == pytest.approx(BON_BETA)
  assert gold["base"] == BON_BASE
  train = bon["gao_bon"]["score_train"]  # score = 1.0 d exactly: alpha 1, beta 0
  assert train["alpha"] == pytest.approx(1.0) and train["beta"] == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- figures, JSON, CLI

PM_FIGS = ["pm_accuracy_vs_data", "pm_accuracy_vs_params", "pm_calibration", "pm_mix_tension", "pm_accuracy_by_turn"]
RL_FIGS = ["rl_score_vs_sqrt_kl", "rl_train_vs_test", "rl_robustness", "rl_gold_vs_sqrt_kl", "rl_best_of_n", "rl_elo"]


def test_every_figure_written_and_labelled(analyzed):
  figures = {**analyzed["pm"]["figures"], **analyzed["rl"]["figures"]}
  assert sorted(figures) == sorted(PM_FIGS + RL_FIGS)
  for stem, fig in figures.items():
    for ext in ("png", "pdf"):
      path = os.path.join(analyzed["out"], f"{stem}.{ext}")
      assert os.path.getsize(path) > 1000, path
    assert "cf. " in plots.figure_title(fig), stem
    main_axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"
                 and type(ax).__name__ != "SecondaryAxis"]
    assert main_axes, stem
    for ax in main_axes:
      assert ax.get_xlabel() and ax.get_ylabel(), (stem, ax.get_title())
    assert plots.has_legend(fig), stem
    legends = fig.legends or [ax.get_legend() for ax in main_axes]
    assert all(leg.get_texts() for leg in legends), stem
  fig7 = figures["pm_accuracy_vs_data"]
  ax = fig7.axes[0]
  assert ax.get_xscale() == "log" and ax.get_xlabel() == "comparisons (pairs)"
  assert figures["pm_accuracy_vs_params"].axes[0].get_xlabel() == "non-embedding parameters"
  assert "sqrt nats" in figures["rl_score_vs_sqrt_kl"].axes[0].get_xlabel()
  # One line per model size in Fig 7 left: the 5 sizes appear in the legend.
  labels = [t.get_text() for t in fig7.legends[0].get_texts()]
  assert sum(lbl.split(" ")[0] in SIZES for lbl in labels) == len(SIZES)
  assert any("Bayes ceiling" in lbl for lbl in labels)


def test_json_outputs_are_strict_and_complete(analyzed):
  with open(os.path.join(analyzed["out"], "pm_analysis.json")) as f:
    pm_json = json.load(f, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
  assert pm_json["scaling"]["metrics"]["accuracy"]["fit"]["b"] == pytest.approx(
      analyzed["pm"]["result"]["scaling"]["metrics"]["accuracy"]["fit"]["b"])
  assert [os.path.basename(d) for d in pm_json["skipped_unfinished"]] == ["killed_run"]
  with open(os.path.join(analyzed["out"], "rl_analysis.json")) as f:
    rl_json = json.load(f)
  assert len(rl_json["runs"]) == 2 and rl_json["runs"][0]["robustness"]["tests"]["t100k"]["params"] == 100_000
  assert set(rl_json["runs"][0]["gain_gaps"]) == {n for n, *_ in TEST_PMS}
  assert rl_json["robustness_fit"]["slope"] == pytest.approx(analyzed["rl"]["result"]["robustness_fit"]["slope"])
  # Best-of-n and Elo from their run directories; Elo also from the older place inside a PPO run.
  assert [os.path.basename(os.path.dirname(b["path"])) for b in rl_json["best_of_n"]] == ["bon-p25k_pm100k"]
  assert [os.path.basename(os.path.dirname(e["path"])) for e in rl_json["elo"]] == ["elo-p25k_pm100k", "p25k_pm100k"]


def test_cli_handles_missing_pieces(tmp_path, capsys):
  # Only a scaling grid (no mix, no PPO, no bon/elo): figures skipped with notes, exit 0.
  root = tmp_path / "res"
  for size in ("1k", "25k"):
    for data in (500, 2000):
      make_pm_run(str(root), f"{size}_{data}", size, SIZES[size], data, 0, float(true_acc(SIZES[size], data)))
  out = tmp_path / "out"
  assert cli.main(["all", str(root), "--out", str(out), "--n_boot", "20"]) == 0
  text = capsys.readouterr().out
  assert "skipped helpful/harmless tension" in text and "no bon.json" in text and "no finished PPO runs" in text
  assert "accuracy: a=" in text
  assert (out / "pm_accuracy_vs_data.png").exists() and not (out / "pm_calibration.png").exists()
  assert (out / "rl_analysis.json").exists()


def test_a_reproduction_roots_rl_analysis_reads_only_its_ppo_best_of_n_and_elo_stages(tmp_path):
  """PPO from the distilled model and a paper-faithful variant under the root are other studies:
  they must not join the main runs (the root's own runs are found, the others are not)."""
  rng = np.random.default_rng(0)
  root = str(tmp_path / "laptop")
  make_ppo_run(os.path.join(root, "ppo"), "policy-25k-pm-100k-s0", ("p25k", 25_000), ("pm100k", 100_000), rng)
  make_ppo_run(os.path.join(root, "ppo_distilled"), "policy-25k-cd-pm-100k-s0", ("p25k", 25_000),
               ("pm100k", 100_000), rng)
  make_ppo_run(os.path.join(root, "paper-faithful", "ppo"), "policy-25k-pm-100k-s0", ("p25k", 25_000),
               ("pm100k", 100_000), rng)
  out = cli.run_rl(root, str(tmp_path / "out"))
  assert [r["name"] for r in out["result"]["runs"]] == [os.path.join("ppo", "policy-25k-pm-100k-s0")]
  # A directory of PPO runs that is not a reproduction root is read whole, as before.
  out = cli.run_rl(os.path.join(root, "ppo_distilled"), str(tmp_path / "out2"))
  assert [r["name"] for r in out["result"]["runs"]] == ["policy-25k-cd-pm-100k-s0"]
