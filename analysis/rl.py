"""RLHF analysis: PM score vs sqrt(KL), train vs test PMs (robustness), over-optimisation of the
gold reward, best-of-n and Elo (paper Figs 4, 13, 15, 33, 36; Gao et al. 2022).

Reads PPO run directories (metrics.jsonl, pms.json), bon.json and elo.json files; fits with
`analysis.fits`; draws with `analysis.rl_figures`. Returned dicts are JSON-able.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from analysis import fits, rl_figures
from analysis.runs import Run, RunFileError, read_json, split_seed


# ----------------------------------------------------------------------------- curves


def _column(rows: Sequence[dict], key: str) -> np.ndarray:
  """(T,) float array of `key` over iterations; NaN where a row lacks it."""
  return np.array([float(r[key]) if r.get(key) is not None else np.nan for r in rows], dtype=np.float64)


def rl_curve(run: Run) -> dict[str, Any]:
  """One PPO run as arrays over iterations.

  Returns name, policy / train_pm ({"name", "model_size", "params"}), tests ({name: {...}}),
  step, samples (RL samples so far), kl (nats), sqrt_kl = sqrt(max(kl, 0)) unless logged,
  score_train, score_test ({name: (T,)}), gold ({"helpful", "harmless", "hh": (T,)} present ones).
  """
  rows = sorted(run.metrics, key=lambda r: r.get("step", 0))
  path = run.path("metrics.jsonl")
  if not rows:
    raise RunFileError(f"{path}: PPO run has no metrics")
  for key in ("ppo/kl", "ppo/score_train"):
    if not any(key in r for r in rows):
      raise RunFileError(f"{path}: no {key!r} in any line")
  kl = _column(rows, "ppo/kl")
  sqrt_kl = _column(rows, "ppo/sqrt_kl") if any("ppo/sqrt_kl" in r for r in rows) else np.sqrt(np.maximum(kl, 0))
  step = _column(rows, "step")
  batch = run.config.get("batch_size")
  samples = (_column(rows, "ppo/samples") if any("ppo/samples" in r for r in rows)
             else step * (batch or 1))
  test_names = sorted({k[len("ppo/score_test/"):] for r in rows for k in r if k.startswith("ppo/score_test/")})
  gold_keys = sorted({k[len("gold/"):] for r in rows for k in r if k.startswith("gold/")})
  pms = run.pms or {}
  tests = {t["name"]: t for t in pms.get("test", [])}
  for name in test_names:
    tests.setdefault(name, {"name": name, "model_size": None, "params": None})
  config, seed = split_seed(run.name)
  return {
      "name": run.name, "dir": run.dir, "config": config,
      "seed": seed if seed is not None else int(run.config.get("seed", 0) or 0),
      "initial": initial_stats(run.samples[0] if run.samples else {}),
      "policy": pms.get("policy", {"name": None, "model_size": None, "params": None}),
      "train_pm": pms.get("train", {"name": None, "model_size": None, "params": None}),
      "tests": {n: tests[n] for n in test_names},
      "step": step, "samples": samples, "kl": kl, "sqrt_kl": sqrt_kl,
      "score_train": _column(rows, "ppo/score_train"),
      "score_test": {n: _column(rows, f"ppo/score_test/{n}") for n in test_names},
      "gold": {k: _column(rows, f"gold/{k}") for k in gold_keys},
  }


def initial_stats(first_line: dict) -> dict[str, dict[str, float]]:
  """Mean and std of every scorer over the first iteration's samples (samples.jsonl's first line):
  those rollouts come from the initial policy, so they are the same base-policy samples for every
  PM of a run. {"score_train" | "score_test/<name>" | "gold_<k>": {"mean", "std", "n"}}."""
  out = {}
  for key, values in first_line.items():
    if key == "score_train" or key.startswith(("score_test/", "gold_")):
      x = np.asarray(values, np.float64)
      x = x[np.isfinite(x)]
      if len(x) >= 2:
        out[key] = {"mean": float(x.mean()), "std": float(x.std(ddof=1)), "n": len(x)}
  return out


def initial_std(curve: dict, scorer: str) -> float | None:
  """The std of `scorer`'s scores of the initial policy's samples (None if unknown or 0)."""
  std = (curve.get("initial") or {}).get(scorer, {}).get("std")
  return std if std else None


def rl_curves(runs: Sequence[Run]) -> list[dict[str, Any]]:
  """rl_curve for every PPO run, ordered by policy size then train-PM size then name."""
  curves = [rl_curve(r) for r in runs if r.kind == "ppo"]
  return sorted(curves, key=lambda c: (c["policy"].get("params") or 0, c["train_pm"].get("params") or 0, c["name"]))


# ----------------------------------------------------------------------------- fits


def first_half(n: int, fraction: float = 0.5) -> int:
  """Iterations in the first `fraction` of a run (at least 3, when there are 3)."""
  return min(n, max(3, int(math.ceil(n * fraction))))


def score_kl_fit(sqrt_kl, score, fraction: float = 0.5) -> dict[str, float] | None:
  """score = intercept + slope sqrt(KL) over the first `fraction` of iterations (paper §4: linear in sqrt KL).

  Non-finite points are dropped; None if fewer than 3 points or sqrt(KL) does not vary.
  Returns `fits.linear_fit`'s dict plus iterations (the first k iterations the fit covers).
  """
  k = first_half(len(sqrt_kl), fraction)
  x, y = np.asarray(sqrt_kl[:k]), np.asarray(score[:k])
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 3 or np.ptp(x[keep]) == 0:
    return None
  return {**fits.linear_fit(x[keep], y[keep]), "iterations": k}


def gold_gao_fit(sqrt_kl, gold) -> dict[str, float] | None:
  """Gao RL form on gold(d) - gold(first iteration) = d (alpha - beta ln d), d = sqrt(KL).

  The first iteration's samples come from the initial policy (KL ~ 0), so its gold score is
  gold(0). None if fewer than 3 finite points or the fit is degenerate.
  """
  d, g = np.asarray(sqrt_kl, np.float64), np.asarray(gold, np.float64)
  keep = np.isfinite(d) & np.isfinite(g)
  if keep.sum() < 3 or not np.isfinite(g[0]):
    return None
  try:
    out = fits.gao_rl_fit(np.maximum(d[keep], 0.0), g[keep] - g[0])
  except ValueError:
    return None
  out["gold0"] = float(g[0])
  return out


def budget_index(samples, budget: float | None) -> int:
  """Index of the last iteration with samples <= budget (the last iteration when budget is None;
  the first when the budget is below every logged count)."""
  samples = np.asarray(samples)
  if budget is None:
    return len(samples) - 1
  within = np.flatnonzero(samples <= budget)
  return int(within[-1]) if len(within) else 0


def gain_gap_series(curve: dict, test: str) -> np.ndarray:
  """(T,) gain gap against one test PM: gap_t = (train_t - train_0) - (test_t - test_0).

  How far the train PM's score gain since the first iteration has pulled ahead of the test
  PM's; > 0 when the policy exploits the train PM (over-optimisation, paper Fig 4 left).
  """
  train, other = curve["score_train"], curve["score_test"][test]
  return (train - train[0]) - (other - other[0])


def window_mean(x, i: int, window: int = 5) -> float:
  """mean of x[i - window // 2 .. i + window // 2], clipped at the start of the series."""
  x = np.asarray(x, np.float64)
  return float(np.mean(x[max(0, i - window // 2): i + window // 2 + 1]))


def standardized_gain_gap_series(curve: dict, test: str) -> np.ndarray | None:
  """(T,) gain gap on the shared scale: gap_t = (train_t - train_0) / sd_train - (test_t - test_0) / sd_test,
  each PM's gain divided by the std of its own scores of the initial policy's samples (so a PM
  whose logits are twice as large does not count twice). None without those stds."""
  sd_train, sd_test = initial_std(curve, "score_train"), initial_std(curve, f"score_test/{test}")
  if sd_train is None or sd_test is None:
    return None
  train, other = curve["score_train"], curve["score_test"][test]
  return (train - train[0]) / sd_train - (other - other[0]) / sd_test


def gain_gaps(curve: dict, window: int = 5, standardized: bool = False) -> dict[str, dict[str, float]]:
  """Per test PM: the gain gap early in training and at the end (paper Fig 4 left).

  early = window_mean(gap, max(window, T // 5)) (about 20% of training),
  end = window_mean(gap, T - 1 - window // 2) (the last `window` iterations); T = iterations.
  standardized: the gaps of `standardized_gain_gap_series` (test PMs without stds left out).
  """
  n = len(curve["score_train"])
  early, end = max(window, n // 5), n - 1 - window // 2
  out = {}
  for name in curve["score_test"]:
    gap = standardized_gain_gap_series(curve, name) if standardized else gain_gap_series(curve, name)
    if gap is not None:
      out[name] = {"early": window_mean(gap, early, window), "end": window_mean(gap, end, window)}
  return out


def robustness(curve: dict, budget: float | None = None) -> dict[str, Any]:
  """Test-PM scores at a fixed RL sample budget, and the train-test gap at the start and at the budget.

  gain = score(budget) - score(first iteration): subtracting each PM's score of the initial
  policy removes its arbitrary offset (paper App B.2 mean-removes scores when comparing PMs).
  gap = score_train - score_test (raw) and gain_gap = train gain - test gain (over-optimisation).
  gain_std = gain / (std of the test PM's scores of the initial policy's samples): the gain on a
  scale shared by all test PMs (None without samples.jsonl).
  """
  i = budget_index(curve["samples"], budget)
  train = curve["score_train"]
  tests = {}
  for name, s in curve["score_test"].items():
    sd = initial_std(curve, f"score_test/{name}")
    tests[name] = {
        "model_size": curve["tests"][name].get("model_size"), "params": curve["tests"][name].get("params"),
        "score": float(s[i]), "gain": float(s[i] - s[0]),
        "gain_std": float(s[i] - s[0]) / sd if sd else None,
        "gap_start": float(train[0] - s[0]), "gap_end": float(train[i] - s[i]),
        "gain_gap": float(gain_gap_series(curve, name)[i]),
    }
  return {"budget": budget, "iteration_index": i, "samples": float(curve["samples"][i]),
          "sqrt_kl": float(curve["sqrt_kl"][i]), "train_score": float(train[i]),
          "train_gain": float(train[i] - train[0]), "tests": tests}


def run_fits(curve: dict, budget: float | None = None, fraction: float = 0.5) -> dict[str, Any]:
  """Every fitted number for one PPO run."""
  return {
      "name": curve["name"], "config": curve["config"], "seed": curve["seed"],
      "initial": curve["initial"], "policy": curve["policy"], "train_pm": curve["train_pm"],
      "n_iterations": len(curve["step"]), "final_samples": float(curve["samples"][-1]),
      "final_sqrt_kl": float(curve["sqrt_kl"][-1]),
      "score_vs_sqrt_kl": {"fraction": fraction, "train": score_kl_fit(curve["sqrt_kl"], curve["score_train"], fraction),
                           "test": {n: score_kl_fit(curve["sqrt_kl"], s, fraction)
                                    for n, s in curve["score_test"].items()}},
      "gold_gao_rl": {k: gold_gao_fit(curve["sqrt_kl"], g) for k, g in curve["gold"].items()},
      "robustness": robustness(curve, budget),
      "gain_gaps": gain_gaps(curve),
      "gain_gaps_std": gain_gaps(curve, standardized=True),
  }


def robustness_fit(run_results: Sequence[dict]) -> dict[str, float] | None:
  """gain = intercept + slope ln(test-PM params) over every (run, test PM) pair at the budget.

  The test-PM gains of `robustness` across runs (paper Fig 33): slope > 0 says larger test
  PMs see more of the RL gain, i.e. larger PMs are more robust. `fits.linear_fit` plus
  n_points; None with fewer than 2 distinct test-PM sizes. Non-finite gains are left out.
  """
  points = [(math.log(t["params"]), t["gain"]) for r in run_results
            for t in r["robustness"]["tests"].values() if t.get("params") and np.isfinite(t["gain"])]
  if len({x for x, _ in points}) < 2:
    return None
  x, y = np.array(points).T
  return {**fits.linear_fit(x, y), "n_points": len(points)}


# ----------------------------------------------------------------------------- best-of-n and Elo files


def load_bon(path: str) -> dict[str, Any]:
  """bon.json with its arrays as float arrays; checks that every scorer has one value per n."""
  raw = read_json(path)
  for key in ("n", "kl_bound"):
    if key not in raw:
      raise RunFileError(f"{path}: missing field {key!r}")
  n = len(raw["n"])
  scorers = {k: np.asarray(v, np.float64) for k, v in raw.items()
             if (k.startswith("score_") or k.startswith("gold_")) and isinstance(v, list)}
  for k, v in scorers.items():
    if len(v) != n:
      raise RunFileError(f"{path}: field {k!r} has {len(v)} values, expected {n} (one per n)")
  return {"path": path, "n": np.asarray(raw["n"], np.float64), "kl_bound": np.asarray(raw["kl_bound"], np.float64),
          "scores": scorers, "gold_hh_base": raw.get("gold_hh_base")}


def bon_fits(bon: dict) -> dict[str, Any]:
  """Gao best-of-n form per scorer: score(n) - score(n=1) = d (alpha - beta d), d = sqrt(KL bound).

  For gold the baseline is gold_hh_base when given (the base policy's expected gold score).
  """
  d = np.sqrt(np.maximum(bon["kl_bound"], 0.0))
  out = {}
  for name, s in bon["scores"].items():
    base = bon["gold_hh_base"] if name == "gold_hh" and bon["gold_hh_base"] is not None else s[0]
    try:
      out[name] = fits.gao_bon_fit(d, s - base)
      out[name]["base"] = float(base)
    except ValueError:
      out[name] = None
  return out


def load_elo(path: str) -> dict[str, Any]:
  """elo.json as arrays; checks the lengths agree."""
  raw = read_json(path)
  if "samples" not in raw:
    raise RunFileError(f"{path}: missing field 'samples'")
  n = len(raw["samples"])
  out = {"path": path, "samples": np.asarray(raw["samples"], np.float64)}
  for key in ("elo_pm_predicted", "elo_gold", "elo_gold_stderr"):
    if key in raw:
      if len(raw[key]) != n:
        raise RunFileError(f"{path}: field {key!r} has {len(raw[key])} values, expected {n}")
      out[key] = np.asarray(raw[key], np.float64)
  return out


# ----------------------------------------------------------------------------- driver


def _jsonable_bon(bon: dict) -> dict:
  return {"path": bon["path"], "n": bon["n"].tolist(), "kl_bound": bon["kl_bound"].tolist(),
          "scores": {k: v.tolist() for k, v in bon["scores"].items()}, "gold_hh_base": bon["gold_hh_base"]}


def analyze_rl(runs: Sequence[Run], bon_paths: Sequence[str] = (), elo_paths: Sequence[str] = (),
               budget: float | None = None, fraction: float = 0.5) -> tuple[dict, dict, list[str]]:
  """Every RL number and figure: (result JSON dict, {stem: Figure}, notes about skipped pieces)."""
  curves = rl_curves(runs)
  results = [run_fits(c, budget, fraction) for c in curves]
  bons = [load_bon(p) for p in bon_paths]
  bon_results = [bon_fits(b) for b in bons]
  elos = [load_elo(p) for p in elo_paths]
  out = {"n_runs": len(curves), "budget": budget, "runs": results,
         "robustness_fit": robustness_fit(results),
         "best_of_n": [{**_jsonable_bon(b), "gao_bon": r} for b, r in zip(bons, bon_results)],
         "elo": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in e.items()} for e in elos]}
  figures, notes = rl_figures.rl_figures(curves, results, bons, bon_results, elos, budget)
  return out, figures, notes


def summary_lines(result: dict) -> list[str]:
  lines = [f"RL: {result['n_runs']} PPO runs, {len(result['best_of_n'])} best-of-n, {len(result['elo'])} Elo files"]
  for r in result["runs"]:
    f = r["score_vs_sqrt_kl"]["train"]
    fit_txt = f"slope={f['slope']:.3f} R^2={f['r2']:.3f}" if f else "no fit"
    rob = r["robustness"]
    gaps = ", ".join(f"{n}: {t['gap_start']:+.2f} -> {t['gap_end']:+.2f}" for n, t in rob["tests"].items())
    lines.append(f"  {r['name']}: train score vs sqrt(KL) {fit_txt}; train-test gap {gaps or 'n/a'}")
    gain = ", ".join(f"{n}: {g['early']:+.2f} -> {g['end']:+.2f}" for n, g in r["gain_gaps"].items())
    if gain:
      lines.append(f"    train-minus-test gain gap, early -> end: {gain}")
    g = r["gold_gao_rl"].get("hh")
    if g:
      lines.append(f"    gold hh Gao RL: alpha={g['alpha']:.3f} beta={g['beta']:.3f} d_peak={g['d_peak']:.2f}")
  rf = result["robustness_fit"]
  if rf:
    lines.append(f"  test-PM gain vs ln(test-PM params): slope={rf['slope']:.3f} +- {rf['slope_stderr']:.3f} "
                 f"({rf['n_points']} points)")
  for b in result["best_of_n"]:
    g = b["gao_bon"].get("gold_hh")
    if g:
      lines.append(f"  best-of-n {b['path']}: gold Gao BoN alpha={g['alpha']:.3f} beta={g['beta']:.3f}")
  return lines
