"""Loss weighting and data mix over PM size (Bai et al. 2022 Figs 26, 27), from PM run
directories (`analysis.runs`): the pm_lambda sweep (data.harmless_weight = lambda) and the
pm_mix sweep (data.helpful_fraction).

Claims (the report's claim format), each judged on a per-seed paired difference between the
smallest and the largest size, with the 95% t interval over seeds (`fits.seed_interval`;
one seed gives no interval, and the claim is then not held):

    lambda_tradeoff_by_size       slope_s(size) = least-squares slope of helpful test accuracy
                                  in lambda for PM seed s; d_s = slope_s(smallest) -
                                  slope_s(largest); held when the mean d < 0 and the interval
                                  lies below 0 (helpfulness falls faster with lambda when small)
    larger_pm_less_mix_sensitive  m(f) = (helpful + harmless accuracy) / 2 at helpful fraction
                                  f; S_s(size) = max_f m - min_f m over the interior fractions
                                  0 < f < 1 (the paper: small PMs peak in the middle and drop
                                  off on either side, large ones are flat at the top);
                                  d_s = S_s(smallest) - S_s(largest); held when the interval
                                  lies above 0
"""

from __future__ import annotations

import collections
import os
from typing import Sequence

import numpy as np

from analysis import fits, plots
from analysis.runs import Run, discover, write_json

PAPER_LAMBDA_DROP = {"13M": 0.074, "52B": 0.015}   # helpful error increase, lambda 1 -> 10


def claim(cid, text, paper, ours, ci, held, detail="") -> dict:
  """One claim in the report's format (the same keys as analysis.report's claims)."""
  return {"id": cid, "claim": text, "paper": paper, "ours": ours, "ci": ci,
          "held": bool(held) if held is not None else False, "detail": detail}


def _group_mean(values: dict, prefix: str) -> float | None:
  """Mean of the values whose key starts with prefix (HH-RLHF: helpful-base, helpful-online, ...)."""
  xs = [float(v) for k, v in values.items() if k.startswith(prefix)]
  return float(np.mean(xs)) if xs else None


def weighting_record(run: Run) -> dict | None:
  """A PM run as {model_size, params, seed, lambda, helpful_fraction, dataset, num_train,
  helpful, harmless} (None when it lacks a helpful or harmless test accuracy)."""
  s, data = run.summary, run.config.get("data", {}) or {}
  by_source = {k[len("eval/accuracy_"):]: v for k, v in s.items()
               if k.startswith("eval/accuracy_") and not k.startswith("eval/accuracy_turn_")}
  helpful, harmless = _group_mean(by_source, "helpful"), _group_mean(by_source, "harmless")
  if helpful is None or harmless is None:
    return None
  return {"run": run.name, "sweep": os.path.dirname(os.path.normpath(run.dir)),
          "model_size": str(s.get("model_size", run.config.get("model_size"))),
          "params": int(s.get("params/non_embedding", 0)), "seed": int(run.config.get("seed", 0)),
          "lambda": float(data.get("harmless_weight", 1.0)),
          "helpful_fraction": data.get("helpful_fraction"), "dataset": data.get("dataset"),
          "num_train": int(s.get("data/num_train", 0)), "helpful": float(helpful),
          "harmless": float(harmless)}


def records_of(runs: Sequence[Run]) -> list[dict]:
  return [r for r in (weighting_record(run) for run in runs if run.kind == "pm") if r is not None]


def from_pm_record(rec: dict) -> dict | None:
  """A record of a pm_analysis.json table (analysis.pm.pm_record) in this module's format; its
  sweep is the file's own (one analysis directory per sweep)."""
  helpful, harmless = _group_mean(rec["by_source"], "helpful"), _group_mean(rec["by_source"], "harmless")
  if helpful is None or harmless is None:
    return None
  return {"run": rec["run"], "sweep": "", "model_size": rec["model_size"], "params": rec["params"],
          "seed": rec["seed"], "lambda": float(rec["harmless_weight"]),
          "helpful_fraction": rec["helpful_fraction"], "dataset": rec["dataset"],
          "num_train": rec["num_train"], "helpful": helpful, "harmless": harmless}


def slope(x: Sequence[float], y: Sequence[float]) -> float:
  """Least-squares slope sum (x - mean x)(y - mean y) / sum (x - mean x)^2 (NaN if x is constant)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  dx = x - x.mean()
  denom = float(dx @ dx)
  return float(dx @ (y - y.mean()) / denom) if denom > 0 else float("nan")


def _by(records, *keys) -> dict:
  out = collections.defaultdict(list)
  for r in records:
    out[tuple(r[k] for k in keys)].append(r)
  return out


def _sizes(records) -> list[tuple[int, str]]:
  return sorted({(r["params"], r["model_size"]) for r in records})


def lambda_records(records: Sequence[dict]) -> list[dict]:
  """The lambda sweep: runs of the (sweep directory, dataset, helpful_fraction, num_train)
  group with the most distinct lambdas (>= 2), else []."""
  groups = _by(records, "sweep", "dataset", "helpful_fraction", "num_train")
  best = max(groups.values(), key=lambda rs: (len({r["lambda"] for r in rs}), len(rs)), default=[])
  return best if len({r["lambda"] for r in best}) >= 2 else []


def mix_records(records: Sequence[dict]) -> list[dict]:
  """The mix sweep: lambda = 1 runs with a helpful_fraction, of the (sweep directory, dataset,
  num_train) group with the most distinct fractions (>= 3, so that there is an interior one),
  else [] (the sweep directory keeps a lambda sweep's lambda = 1 runs out of it)."""
  groups = _by([r for r in records if r["helpful_fraction"] is not None and r["lambda"] == 1.0],
               "sweep", "dataset", "num_train")
  best = max(groups.values(), key=lambda rs: (len({r["helpful_fraction"] for r in rs}), len(rs)),
             default=[])
  return best if len({r["helpful_fraction"] for r in best}) >= 3 else []


def per_seed(records: Sequence[dict], x_key: str, statistic) -> dict[str, dict[int, float]]:
  """{model_size: {seed: statistic(xs, runs)}} over each (size, seed)'s runs sorted by x_key."""
  out = collections.defaultdict(dict)
  for (size, seed), rs in _by(records, "model_size", "seed").items():
    rs = sorted(rs, key=lambda r: r[x_key])
    out[size][seed] = statistic([r[x_key] for r in rs], rs)
  return dict(out)


def mix_spread(xs: Sequence[float], rs: Sequence[dict]) -> float:
  """max - min of m(f) = (helpful + harmless) / 2 over the interior fractions 0 < f < 1."""
  m = [(r["helpful"] + r["harmless"]) / 2 for f, r in zip(xs, rs) if 0.0 < f < 1.0]
  return float(max(m) - min(m)) if len(m) >= 2 else float("nan")


def paired_difference(stat: dict[str, dict[int, float]], small: str, large: str) -> dict:
  """d_s = stat[small][s] - stat[large][s] over the seeds both sizes have, with its t interval."""
  seeds = sorted(set(stat.get(small, {})) & set(stat.get(large, {})))
  return {"seeds": seeds, **fits.seed_interval([stat[small][s] - stat[large][s] for s in seeds])}


def cell_table(records: Sequence[dict], x_key: str) -> list[dict]:
  """Per (size, x): mean and std over seeds of helpful, harmless and mean accuracy."""
  rows = []
  for (params, size, x), rs in sorted(_by(records, "params", "model_size", x_key).items()):
    row = {"model_size": size, "params": params, x_key: x, "n_seeds": len(rs)}
    for key in ("helpful", "harmless"):
      v = np.array([r[key] for r in rs])
      row[key], row[key + "_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    m = np.array([(r["helpful"] + r["harmless"]) / 2 for r in rs])
    row["mean"], row["mean_std"] = float(m.mean()), float(m.std(ddof=1)) if len(m) > 1 else float("nan")
    rows.append(row)
  return rows


def _size_pair(records) -> tuple[str, str] | None:
  sizes = _sizes(records)
  return (sizes[0][1], sizes[-1][1]) if len(sizes) >= 2 else None


def lambda_measure(records: Sequence[dict]) -> dict | None:
  """The lambda_tradeoff_by_size statistic: d_s = slope_s(smallest) - slope_s(largest) of
  helpful accuracy in lambda, over seeds (None without a lambda sweep over >= 2 sizes)."""
  recs = lambda_records(records)
  pair = _size_pair(recs)
  if pair is None:
    return None
  slopes = per_seed(recs, "lambda", lambda xs, rs: slope(xs, [r["helpful"] for r in rs]))
  return {"pair": pair, "by_size": slopes, **paired_difference(slopes, *pair)}


def mix_measure(records: Sequence[dict]) -> dict | None:
  """The larger_pm_less_mix_sensitive statistic: d_s = S_s(smallest) - S_s(largest), the spread
  of mean accuracy over the interior fractions, over seeds (None without a mix sweep)."""
  recs = mix_records(records)
  pair = _size_pair(recs)
  if pair is None:
    return None
  spreads = per_seed(recs, "helpful_fraction", mix_spread)
  return {"pair": pair, "by_size": spreads, "fractions": len({r["helpful_fraction"] for r in recs}),
          **paired_difference(spreads, *pair)}


def _size_means(by_size: dict) -> str:
  return ", ".join(f"{s} {np.nanmean(list(v.values())):+.4f}" for s, v in by_size.items())


def lambda_claim(records: Sequence[dict]) -> dict:
  """lambda_tradeoff_by_size (module docstring)."""
  d = lambda_measure(records)
  if d is None:
    return claim("lambda_tradeoff_by_size", "loss weighting by size", "Fig 27", None, None, False,
                 "no lambda sweep over >= 2 sizes")
  held = d["mean"] is not None and d["ci"] is not None and d["mean"] < 0 and d["ci"][1] < 0
  small, large = d["pair"]
  return claim(
      "lambda_tradeoff_by_size",
      f"Helpful accuracy falls faster with the harmlessness weight lambda for the smallest PM "
      f"({small}) than for the largest ({large}): slope difference per unit lambda",
      "lambda 1 -> 10 costs 7.4% helpful accuracy at 13M, 1.5% at 52B (Fig 27)",
      d["mean"], d["ci"], held,
      f"t interval over {d['n']} seeds; mean slope by size: {_size_means(d['by_size'])}")


def mix_claim(records: Sequence[dict]) -> dict:
  """larger_pm_less_mix_sensitive (module docstring)."""
  d = mix_measure(records)
  if d is None:
    return claim("larger_pm_less_mix_sensitive", "mix sensitivity by size", "Fig 26", None, None,
                 False, "no mix sweep over >= 2 sizes and >= 3 fractions")
  held = d["mean"] is not None and d["ci"] is not None and d["ci"][0] > 0
  note = "" if d["ci"] is not None else " (one seed per cell: no interval over seeds)"
  small, large = d["pair"]
  return claim(
      "larger_pm_less_mix_sensitive",
      f"Mean accuracy varies less over the interior helpful fractions for the largest PM "
      f"({large}) than for the smallest ({small}): spread difference",
      "larger PMs are flatter at the top, smaller ones peak in the middle (Fig 26)",
      d["mean"], d["ci"], held, f"t interval over {d['n']} seeds{note}; spread by size: "
      f"{_size_means(d['by_size'])}")


def _as_statistic(d: dict | None, reason: str) -> dict:
  """A measure in analysis.claims' statistic format: {"values", "counts", "per_seed", "detail"}."""
  if d is None:
    return {"not_tested": reason}
  ci = d["ci"] or [None, None]
  values = {"value": d["mean"], "ci_low": ci[0], "ci_high": ci[1]}
  for size, per in d["by_size"].items():
    values[f"mean_{size}"] = float(np.nanmean(list(per.values())))
  counts = {"seeds": d["n"], "sizes": len(d["by_size"])}
  if "fractions" in d:
    counts["fractions"] = d["fractions"]
  return {"values": values, "counts": counts,
          "per_seed": {str(s): v for s, v in zip(d["seeds"], d["values"])},
          "detail": f"{d['pair'][0]} minus {d['pair'][1]}, paired by seed"}


def _table_records(analysis_json: dict | None) -> list[dict]:
  rows = ((analysis_json or {}).get("table") or {}).get("records") or []
  return [r for r in (from_pm_record(x) for x in rows) if r is not None]


def lambda_slope_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of lambda_tradeoff_by_size, from inputs["pm_lambda"] (the
  pm_analysis.json of the pm_lambda sweep): value = mean over seeds of d_s (< 0: the small PM's
  helpful accuracy falls faster), with its t interval."""
  return _as_statistic(lambda_measure(_table_records(inputs.get("pm_lambda"))),
                       "the pm_lambda stage has no lambda sweep over >= 2 sizes")


def mix_sensitivity_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of larger_pm_less_mix_sensitive, from inputs["pm_mix"]: value =
  mean over seeds of d_s (> 0: the small PM is more sensitive), with its t interval."""
  return _as_statistic(mix_measure(_table_records(inputs.get("pm_mix"))),
                       "the pm_mix stage has no sweep over >= 2 sizes and >= 3 fractions")


# ----------------------------------------------------------------------------- figures


def _panels(rows: Sequence[dict], x_key: str, xlabel: str, title: str, paper: str, normalize=False):
  """Helpful, harmless and mean accuracy vs x, one line per size (+-std over seeds)."""
  keys = ("helpful", "harmless", "mean")
  fig, axes = plots.new_figure(ncols=len(keys))
  sizes = sorted({(r["params"], r["model_size"]) for r in rows})
  colors = plots.size_colors([s for _, s in sizes])
  for ax, key in zip(axes, keys):
    for params, size in sizes:
      rs = sorted((r for r in rows if r["model_size"] == size), key=lambda r: r[x_key])
      y = np.array([r[key] for r in rs])
      scale = y.max() if normalize else 1.0
      plots.errorbar_line(ax, [r[x_key] for r in rs], y / scale,
                          np.array([r[key + "_std"] for r in rs]) / scale,
                          plots.size_label(size, params), colors[size])
    if not normalize:
      ax.axhline(0.5, color="gray", linestyle=":", linewidth=1.0, label="chance")
    ylabel = f"{key} accuracy" + (" / its max" if normalize else "")
    plots.label_axes(ax, xlabel, ylabel, f"{key} test pairs", legend=False)
  plots.figure_legend(fig, axes)
  plots.suptitle(fig, title, paper)
  return fig


def analyze_weighting(runs: Sequence[Run]) -> tuple[dict, dict, list[str]]:
  """(result, {name: Figure}, notes): the lambda and mix tables, both claims, and figures."""
  records = records_of(runs)
  lam, mix = lambda_records(records), mix_records(records)
  result = {"lambda": cell_table(lam, "lambda"), "mix": cell_table(mix, "helpful_fraction"),
            "claims": [lambda_claim(records), mix_claim(records)]}
  figures, notes = {}, []
  if result["lambda"]:
    figures["pm_lambda_tradeoff"] = _panels(result["lambda"], "lambda", "harmlessness weight lambda",
                                            "Loss weighting L_help + lambda L_harm", "Bai et al. Fig 27")
  else:
    notes.append("no lambda sweep: pm_lambda_tradeoff skipped")
  if result["mix"]:
    figures["pm_mix_sensitivity"] = _panels(result["mix"], "helpful_fraction", "helpful fraction of the mix",
                                            "Accuracy / its max over the data mix", "Bai et al. Fig 26",
                                            normalize=True)
  else:
    notes.append("no mix sweep with >= 3 fractions: pm_mix_sensitivity skipped")
  return result, figures, notes


def run_weighting(roots: Sequence[str], out_dir: str) -> dict:
  """analyze_weighting over the finished runs under every root (e.g. <results>/pm_lambda and
  <results>/pm_mix; missing roots are skipped); writes <out_dir>/weighting_analysis.json and the
  figures; returns {"result", "notes", "files"}."""
  found = [discover(r) for r in roots if os.path.isdir(r)]
  result, figures, notes = analyze_weighting([run for f in found for run in f.runs])
  result["skipped_unfinished"] = [d for f in found for d in f.skipped]
  os.makedirs(out_dir, exist_ok=True)
  files = [p for stem, fig in figures.items() for p in plots.save(fig, out_dir, stem)]
  path = os.path.join(out_dir, "weighting_analysis.json")
  write_json(path, result)
  return {"result": result, "notes": notes, "files": files + [path]}
