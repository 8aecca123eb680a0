"""Preference-model analysis: the scaling table and law, calibration, the helpful/harmless
tension, accuracy by turn (paper Figs 7, 8, 9, 19, 26, 31, 32).

Reads PM run directories (`analysis.runs`); fits with `analysis.fits`. Everything this
module returns is JSON-able (numbers, strings, lists, dicts with string keys).
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from analysis import fits, plots, pm_figures
from analysis.runs import Run, RunFileError

# Paper (helpful-only data): acc = 0.72 + 0.007 ln(P/1e11) + 0.015 ln(D/8e4) (natural log [M]).
PAPER_HELPFUL_FIT = {"a": 0.72, "b": 0.007, "c": 0.015, "p0": 1e11, "d0": 8e4}
P0, D0 = PAPER_HELPFUL_FIT["p0"], PAPER_HELPFUL_FIT["d0"]

# The shortcut baselines beside every PM accuracy (hh_jax/eval/baselines.py): the shorter reply,
# the reply with more distinct tokens, and a bag-of-words logistic regression fitted on the PM's
# own training pairs.
BASELINES = ("shorter_baseline", "distinct_baseline", "bow_baseline")

_REQUIRED = ("params/non_embedding", "data/num_train", "eval/accuracy")


# ----------------------------------------------------------------------------- records


def pm_record(run: Run) -> dict[str, Any]:
  """One trained PM as a flat record: size, data, seed, accuracies (overall, per source, per turn), ceilings."""
  s, data_cfg = run.summary, run.config.get("data", {}) or {}
  missing = [k for k in _REQUIRED if k not in s]
  if missing:
    raise RunFileError(f"{run.path('summary.json')}: PM summary is missing field(s) {missing}")
  by_source, bayes_by_source, by_turn = {}, {}, {}
  for key, value in s.items():
    if key.startswith("eval/accuracy_turn_"):
      by_turn[int(key.rsplit("_", 1)[1])] = float(value)
    elif key.startswith("eval/accuracy_"):
      by_source[key[len("eval/accuracy_"):]] = float(value)
    elif key.startswith("eval/bayes_ceiling_"):
      bayes_by_source[key[len("eval/bayes_ceiling_"):]] = float(value)
  return {
      "run": run.name, "model_size": str(s.get("model_size", run.config.get("model_size"))),
      "seed": int(s.get("seed", run.config.get("seed", 0))),
      "params": int(s["params/non_embedding"]), "num_train": int(s["data/num_train"]),
      "dataset": str(data_cfg.get("dataset", s.get("data/dataset", "?"))),
      "helpful_fraction": data_cfg.get("helpful_fraction"),
      "harmless_weight": float(data_cfg.get("harmless_weight", 1.0) or 1.0),
      "accuracy": float(s["eval/accuracy"]),
      "bayes_ceiling": s.get("eval/bayes_ceiling"),
      "shorter_baseline": s.get("eval/shorter_baseline_accuracy"),
      "distinct_baseline": s.get("eval/distinct_tokens_baseline_accuracy"),
      "bow_baseline": s.get("eval/bow_baseline_accuracy"),
      "by_source": by_source, "bayes_by_source": bayes_by_source, "by_turn": by_turn,
  }


def family_of(rec: dict) -> str:
  """Runs that differ only in size, data size and seed share a family (one scaling grid)."""
  return (f"{rec['dataset']} helpful_fraction={rec['helpful_fraction']} "
          f"harmless_weight={rec['harmless_weight']:g}")


def metric_value(rec: dict, metric: str) -> float | None:
  """'accuracy' or 'accuracy_<source>' or 'bayes_ceiling[_<source>]' from a record (None if absent)."""
  if metric in ("accuracy", "bayes_ceiling") + BASELINES:
    return rec.get(metric)
  for prefix, table in (("accuracy_", "by_source"), ("bayes_ceiling_", "bayes_by_source")):
    if metric.startswith(prefix):
      return rec[table].get(metric[len(prefix):])
  raise KeyError(metric)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std (ddof 1; NaN for a single seed)."""
  arr = np.asarray(values, dtype=np.float64)
  return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else float("nan"))


def _sources(records: Sequence[dict]) -> list[str]:
  return sorted({src for r in records for src in r["by_source"]})


def aggregate(records: Sequence[dict]) -> list[dict]:
  """Mean and std over seeds of every metric, per (family, model size, num_train) cell."""
  cells = collections.defaultdict(list)
  for r in records:
    cells[(family_of(r), r["model_size"], r["params"], r["num_train"])].append(r)
  metrics = ["accuracy", "bayes_ceiling", *BASELINES] + [f"{m}_{s}" for s in _sources(records)
                                             for m in ("accuracy", "bayes_ceiling")]
  out = []
  for (family, size, params, num_train), rs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][3])):
    cell = {"family": family, "model_size": size, "params": params, "num_train": num_train,
            "helpful_fraction": rs[0]["helpful_fraction"], "n_seeds": len(rs),
            "seeds": sorted(r["seed"] for r in rs)}
    for m in metrics:
      values = [v for v in (metric_value(r, m) for r in rs) if v is not None]
      if values:
        cell[f"{m}_mean"], cell[f"{m}_std"] = _mean_std(values)
    turns = sorted({t for r in rs for t in r["by_turn"]})
    cell["by_turn_mean"] = {str(t): _mean_std([r["by_turn"][t] for r in rs if t in r["by_turn"]])[0]
                            for t in turns}
    out.append(cell)
  return out


def pm_scaling_table(runs: Sequence[Run]) -> dict[str, Any]:
  """{"records": one per trained PM, "cells": mean/std over seeds per (family, size, data)}."""
  records = [pm_record(r) for r in runs if r.kind == "pm"]
  return {"records": records, "cells": aggregate(records)}


def main_family(records: Sequence[dict]) -> str | None:
  """The family with the most distinct (params, num_train) cells: the scaling grid to fit."""
  cells = collections.defaultdict(set)
  for r in records:
    cells[family_of(r)].add((r["params"], r["num_train"]))
  return max(cells, key=lambda f: (len(cells[f]), f)) if cells else None


# ----------------------------------------------------------------------------- scaling law


def _json_slices(slices: dict) -> dict:
  return {name: {format(k, ".6g"): v for k, v in group.items()} for name, group in slices.items()}


def fit_metric(records: Sequence[dict], metric: str, p0: float, d0: float, n_boot: int, seed: int) -> dict:
  """acc = a + b ln(P/P0) + c ln(D/D0) on one metric: point fit, R^2, bootstrap 95% CI over seeds, slices."""
  rows = [{"params": r["params"], "data": r["num_train"], "seed": r["seed"], "acc": metric_value(r, metric)}
          for r in records if metric_value(r, metric) is not None]
  boot = fits.bootstrap_loglinear(rows, n_boot=n_boot, seed=seed, p0=p0, d0=d0)
  acc = [r["acc"] for r in rows]
  slices = fits.per_slice_fits(acc, [r["params"] for r in rows], [r["data"] for r in rows])
  return {"fit": boot["fit"], "fit_cells": boot["fit_cells"],
          "ci95": {k: list(v) for k, v in boot["ci"].items()},
          "n_cells": boot["n_cells"], "n_runs": len(rows),
          "seeds_per_cell": len(rows) / boot["n_cells"], "per_slice": _json_slices(slices)}


def pm_scaling_fits(runs_or_records, p0: float = P0, d0: float = D0, n_boot: int = 1000,
                    seed: int = 0) -> dict[str, Any]:
  """The PM scaling law on the main family, for overall accuracy and each source's accuracy.

  acc = a + b ln(P / P0) + c ln(D / D0), P = non-embedding parameters, D = comparisons
  actually trained on. With the paper's reference point (P0 = 1e11, D0 = 8e4) `a` is an
  extrapolation to a 100B model; b and c (accuracy per e-fold of size / data) are the
  numbers to compare with the paper's helpful-only 0.007 and 0.015.
  Returns {"family", "p0", "d0", "metrics": {metric: fit_metric(...)}, "paper_helpful", "notes"}.
  """
  records = [r if isinstance(r, dict) else pm_record(r) for r in runs_or_records
             if isinstance(r, dict) or r.kind == "pm"]
  family = main_family(records)
  out: dict[str, Any] = {"family": family, "p0": p0, "d0": d0, "metrics": {},
                         "paper_helpful": dict(PAPER_HELPFUL_FIT), "notes": []}
  grid = [r for r in records if family_of(r) == family]
  for metric in ["accuracy"] + [f"accuracy_{s}" for s in _sources(grid)]:
    try:
      out["metrics"][metric] = fit_metric(grid, metric, p0, d0, n_boot, seed)
    except ValueError as e:  # too few distinct sizes / data sizes for three coefficients
      out["notes"].append(f"no {metric} fit on {family!r}: {e}")
  return out


# ----------------------------------------------------------------------------- calibration


def calibration_runs(records: Sequence[dict], runs: Sequence[Run]) -> list[Run]:
  """Runs of the largest model at its largest data size in the main family (all seeds) with eval_scores."""
  family = main_family(records)
  grid = [r for r in records if family_of(r) == family]
  if not grid:
    return []
  top_params = max(r["params"] for r in grid)
  top_data = max(r["num_train"] for r in grid if r["params"] == top_params)
  names = {r["run"] for r in grid if r["params"] == top_params and r["num_train"] == top_data}
  return [run for run in runs if run.name in names and run.scores is not None]


def pooled_scores(runs: Sequence[Run]) -> dict[str, np.ndarray]:
  """Concatenate eval_scores over runs: gap = chosen - rejected, source names, optional p_chosen."""
  parts = collections.defaultdict(list)
  names = None
  for run in runs:
    sc = run.scores
    parts["gap"].append(sc["chosen"].astype(np.float64) - sc["rejected"].astype(np.float64))
    n = len(sc["chosen"])
    parts["source"].append(sc["source"] if "source" in sc else np.zeros(n, np.int64))
    parts["num_turns"].append(sc["num_turns"] if "num_turns" in sc else np.ones(n, np.int64))
    if "p_chosen" in sc:
      parts["p_chosen"].append(sc["p_chosen"].astype(np.float64))
    if "source_names" in sc:
      names = [str(x) for x in sc["source_names"]]
  out = {k: np.concatenate(v) for k, v in parts.items()}
  if "p_chosen" in out and len(out["p_chosen"]) != len(out["gap"]):
    del out["p_chosen"]  # only some runs have it: do not mix
  out["source_names"] = names
  return out


def calibration_analysis(pooled: dict, n_bins: int = 10) -> dict[str, Any]:
  """PM calibration (pooled and per source) and, with p_chosen, the gold labeler's own calibration.

  The labeler prefers chosen with probability p = sigmoid(beta dR), so its 'score gap' is
  logit(p); binned like the PM's it lies on 1/(1 + e^-d) up to sampling noise (a check on the world).
  """
  def as_json(b):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in b.items()}

  out = {"pooled": as_json(fits.calibration_bins(pooled["gap"], n_bins)), "n_pairs": len(pooled["gap"])}
  names = pooled["source_names"]
  sources = np.unique(pooled["source"])
  if len(sources) > 1:
    out["by_source"] = {}
    for s in sources:
      sel = pooled["source"] == s
      name = names[int(s)] if names and int(s) < len(names) else str(int(s))
      if sel.sum() >= n_bins:
        out["by_source"][name] = as_json(fits.calibration_bins(pooled["gap"][sel], n_bins))
  if "p_chosen" in pooled:
    p = np.clip(pooled["p_chosen"], 1e-12, 1 - 1e-12)
    out["gold_labeler"] = as_json(fits.calibration_bins(np.log(p / (1 - p)), n_bins))
  return out


def per_run_ece(runs: Sequence[Run], n_bins: int = 10) -> list[dict]:
  """[{"run", "seed", "ece", "n_pairs"}]: each run's own expected calibration error (the replicate
  of the calibration claim's interval over seeds)."""
  out = []
  for run in runs:
    gap = pooled_scores([run])["gap"]
    out.append({"run": run.name, "seed": pm_record(run)["seed"], "n_pairs": len(gap),
                "ece": fits.calibration_bins(gap, n_bins)["ece"]})
  return out


# ----------------------------------------------------------------------------- helpful / harmless tension


def _group_accuracy(rec: dict, prefix: str) -> float | None:
  """Accuracy on the sources named `prefix*` (mean if several, e.g. helpful-base and helpful-online)."""
  values = [v for k, v in rec["by_source"].items() if k.startswith(prefix)]
  return float(np.mean(values)) if values else None


def mix_group(records: Sequence[dict]) -> list[dict]:
  """The mix-sweep records (data.helpful_fraction set) of the (dataset, harmless weight, pairs)
  group with the most distinct fractions ([] without a mix sweep)."""
  groups = collections.defaultdict(list)
  for r in records:
    if r["helpful_fraction"] is not None:
      groups[(r["dataset"], r["harmless_weight"], r["num_train"])].append(r)
  if not groups:
    return []
  return max(groups.values(), key=lambda rs: (len({r["helpful_fraction"] for r in rs}), len(rs)))


def mix_table(records: Sequence[dict]) -> list[dict]:
  """The mix sweep (cf. Fig 19, 26): per (model size, helpful_fraction), mean helpful, harmless and mean accuracy.

  Uses runs with data.helpful_fraction set, from the (dataset, harmless_weight, num_train)
  group with the most distinct fractions, and model sizes trained at >= 2 fractions.
  mean = (helpful + harmless) / 2 (the paper's Fig 19 "mean"). [] if < 2 fractions.
  """
  group = mix_group(records)
  if len({r["helpful_fraction"] for r in group}) < 2:
    return []
  fractions_by_size = collections.defaultdict(set)
  for r in group:
    fractions_by_size[r["model_size"]].add(r["helpful_fraction"])
  cells = collections.defaultdict(list)
  for r in group:  # sizes seen at one fraction only (e.g. a scaling run at 0.5) draw no line
    if len(fractions_by_size[r["model_size"]]) >= 2:
      cells[(r["params"], r["model_size"], float(r["helpful_fraction"]))].append(r)
  out = []
  for (params, size, frac), rs in sorted(cells.items()):
    row = {"model_size": size, "params": params, "helpful_fraction": frac, "num_train": rs[0]["num_train"],
           "n_seeds": len(rs)}
    for key, prefix in (("helpful", "helpful"), ("harmless", "harmless")):
      values = [v for v in (_group_accuracy(r, prefix) for r in rs) if v is not None]
      row[key] = float(np.mean(values)) if values else None
    row["mean"] = (row["helpful"] + row["harmless"]) / 2 if None not in (row["helpful"], row["harmless"]) else None
    out.append(row)
  return out


# ----------------------------------------------------------------------------- accuracy by turn


def turn_table(cells: Sequence[dict], family: str | None) -> list[dict]:
  """Per model size at its largest data size in `family`: mean accuracy at each dialogue turn count."""
  out = []
  grid = [c for c in cells if c["family"] == family]
  for params, size in sorted({(c["params"], c["model_size"]) for c in grid}):
    cs = [c for c in grid if c["model_size"] == size]
    best = max(cs, key=lambda c: c["num_train"])
    if len(best["by_turn_mean"]) >= 2:
      out.append({"model_size": size, "params": params, "num_train": best["num_train"],
                  "by_turn": best["by_turn_mean"]})
  return out


# ----------------------------------------------------------------------------- driver


def analyze_pm(runs: Sequence[Run], n_boot: int = 1000, seed: int = 0, p0: float = P0,
               d0: float = D0) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
  """Every PM number and figure: (result JSON dict, {stem: Figure}, notes about skipped pieces)."""
  pm_runs = [r for r in runs if r.kind == "pm"]
  notes: list[str] = []
  if not pm_runs:
    return {"n_runs": 0}, {}, ["no finished PM runs: skipped every PM figure"]
  table = pm_scaling_table(pm_runs)
  records, cells = table["records"], table["cells"]
  fit_result = pm_scaling_fits(records, p0=p0, d0=d0, n_boot=n_boot, seed=seed)
  notes += fit_result["notes"]
  family = fit_result["family"]
  grid_cells = [c for c in cells if c["family"] == family]
  result = {"n_runs": len(records), "table": table, "scaling": fit_result}
  figures = {}
  if len({c["num_train"] for c in grid_cells}) >= 2:
    figures["pm_accuracy_vs_data"] = pm_figures.fig_accuracy_vs_data(grid_cells, fit_result)
  else:
    notes.append("only one data size: skipped accuracy vs comparisons (Fig 7 left)")
  if len({c["params"] for c in grid_cells}) >= 2:
    figures["pm_accuracy_vs_params"] = pm_figures.fig_accuracy_vs_params(grid_cells, fit_result)
  else:
    notes.append("only one model size: skipped accuracy vs params (Fig 7 right)")

  calib_runs = calibration_runs(records, pm_runs)
  if calib_runs:
    pooled = pooled_scores(calib_runs)
    calib = calibration_analysis(pooled)
    calib["runs"] = [r.name for r in calib_runs]
    calib["by_run"] = per_run_ece(calib_runs)
    result["calibration"] = calib
    top = pm_record(calib_runs[0])
    figures["pm_calibration"] = pm_figures.fig_calibration(
        calib, f"{top['model_size']} PM, {plots.format_count(top['num_train'])} pairs, "
               f"{len(calib_runs)} seed(s), {calib['n_pairs']} test pairs")
  else:
    notes.append("no eval_scores.npz for the largest PM: skipped calibration (Fig 9)")

  mix = mix_table(records)
  if mix:
    result["mix"] = mix
    figures["pm_mix_tension"] = pm_figures.fig_mix_tension(mix)
  else:
    notes.append("no helpful_fraction sweep (>= 2 fractions): skipped helpful/harmless tension (Fig 19, 26)")

  turns = turn_table(cells, family)
  if turns:
    result["turns"] = turns
    counts = None
    if calib_runs:
      values, n = np.unique(pooled_scores(calib_runs[:1])["num_turns"], return_counts=True)
      counts = {int(v): int(c) for v, c in zip(values, n)}
    figures["pm_accuracy_by_turn"] = pm_figures.fig_turns(turns, counts)
  else:
    notes.append("fewer than 2 turn counts: skipped accuracy by turn (Fig 8)")
  return result, figures, notes


def summary_lines(result: dict) -> list[str]:
  """A few lines of text for the terminal."""
  if not result.get("n_runs"):
    return ["PM: no runs"]
  lines = [f"PM: {result['n_runs']} runs; scaling family: {result['scaling']['family']}"]
  paper = result["scaling"]["paper_helpful"]
  for metric, m in result["scaling"]["metrics"].items():
    f, ci = m["fit"], m["ci95"]
    lines.append(f"  {metric}: a={f['a']:.4f} b={f['b']:.4f} [{ci['b'][0]:.4f}, {ci['b'][1]:.4f}] "
                 f"c={f['c']:.4f} [{ci['c'][0]:.4f}, {ci['c'][1]:.4f}] R^2={f['r2']:.3f} over runs, "
                 f"{m['fit_cells']['r2']:.3f} over seed means ({m['n_runs']} runs, {m['n_cells']} cells)")
  lines.append(f"  paper (helpful): a={paper['a']} b={paper['b']} c={paper['c']} (P0=1e11, D0=8e4)")
  if "calibration" in result:
    lines.append(f"  calibration ECE (pooled): {result['calibration']['pooled']['ece']:.4f}")
  return lines
