"""OOD detection analysis: AUROC by layer and model size, and few-shot outlier exposure
(Bai et al. 2022 section 5.4, Figs 22, 23, 39), from the `ood` runs' ood.json files.

Claims (the report's claim format: {id, claim, paper, ours, ci, held, detail}):

    ood_auroc_middle_layers     for the largest base LM with an interior layer (>= 2 blocks),
                                an interior residual stream beats both the embeddings and the
                                last stream: middle_gap = max_{0<l<L} AUROC_l - max(AUROC_0,
                                AUROC_L) > 0, and its 95% interval excludes 0
    ood_outlier_exposure_helps  for the largest base LM, the k = 10 outlier-exposure head beats
                                the zero-shot SRMD at the same (middle) layer: gain > 0 with
                                its 95% interval above 0

Intervals: with one run per size (one base LM seed) each is the run's own bootstrap over test
prompts (and outlier-exposure draws); with several runs of a size (independent seeds), the t
interval over those runs (`fits.seed_interval`). `detail` says which.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Sequence

import numpy as np

from analysis import fits, plots
from analysis.runs import Run, RunFileError, discover, read_json, write_json

PAPER_BEST_AUROC = 0.85        # Fig 22: the 52B model's middle layers, no outlier exposure
PAPER_EXPOSURE_K10 = 0.94      # Fig 23: the 52B model with 10 harmful examples (+-0.02)
_REQUIRED = ("num_layers", "params", "auroc_srmd", "auroc_srmd_ci", "middle_gap", "middle_gap_ci",
             "ks", "auroc_exposure", "exposure_gain", "exposure_gain_ci", "exposure_layer")


def claim(cid, text, paper, ours, ci, held, detail="") -> dict:
  """One claim in the report's format (the same keys as analysis.report's claims)."""
  return {"id": cid, "claim": text, "paper": paper, "ours": ours, "ci": ci,
          "held": bool(held) if held is not None else False, "detail": detail}


def ood_record(run: Run) -> dict[str, Any]:
  """A finished ood run's ood.json, checked for the fields the analysis reads."""
  path = run.path("ood.json")
  result = read_json(path)
  missing = [k for k in _REQUIRED if k not in result]
  if missing:
    raise RunFileError(f"{path}: ood.json is missing field(s) {missing}")
  return {"run": run.name, "model_size": str(result.get("model_size")),
          "seed": run.summary.get("seed", run.config.get("seed")), **result}


def _pooled(recs: Sequence[dict], key: str, ci_key: str | None) -> tuple[Any, Any, str]:
  """(estimate, interval, how) of a scalar or per-index list field over a size's runs."""
  if len(recs) == 1:
    return recs[0][key], (recs[0][ci_key] if ci_key else None), "bootstrap over test prompts"
  values = np.asarray([r[key] for r in recs], np.float64)
  if values.ndim == 1:
    s = fits.seed_interval(values)
    return s["mean"], s["ci"], f"t interval over {len(recs)} runs"
  per = [fits.seed_interval(col) for col in values.T]
  return [p["mean"] for p in per], [p["ci"] for p in per], f"t interval over {len(recs)} runs"


def size_table(records: Sequence[dict]) -> list[dict]:
  """One row per model size (smallest first): AUROC by layer (SRMD, MD), the best layer, the
  middle-layer gap, and outlier-exposure AUROC and gain by k, each with its interval."""
  by_size = collections.defaultdict(list)
  for r in records:
    by_size[(r["params"], r["model_size"])].append(r)
  rows = []
  for (params, size), recs in sorted(by_size.items()):
    row = {"model_size": size, "params": params, "num_layers": recs[0]["num_layers"],
           "n_runs": len(recs), "ks": recs[0]["ks"], "exposure_layer": recs[0]["exposure_layer"]}
    for key in ("auroc_srmd", "auroc_md", "middle_gap", "auroc_exposure", "exposure_gain"):
      ci_key = key + "_ci" if key + "_ci" in recs[0] else None
      row[key], row[key + "_ci"], row["interval"] = _pooled(recs, key, ci_key)
    a = np.asarray(row["auroc_srmd"], np.float64)
    row["best_layer"] = int(np.nanargmax(a))
    row["best_auroc"] = float(a[row["best_layer"]])
    row["best_auroc_ci"] = (row["auroc_srmd_ci"] or [None] * len(a))[row["best_layer"]]
    row["per_seed"] = {"middle_gap": {str(r["seed"]): r["middle_gap"] for r in recs},
                       **{f"exposure_gain_k{k}": {str(r["seed"]): r["exposure_gain"][i] for r in recs}
                          for i, k in enumerate(row["ks"])}}
    draws = recs[0].get("auroc_exposure_draws")
    row["exposure_draw_std"] = ([float(np.std(d)) for d in draws] if draws and len(recs) == 1
                                else [float("nan")] * len(row["ks"]))
    rows.append(row)
  return rows


def _describe(rows: Sequence[dict]) -> str:
  return "; ".join(f"{r['model_size']}: best layer {r['best_layer']} of {r['num_layers']}, "
                   f"AUROC {r['best_auroc']:.3f}" for r in rows)


def middle_layers_claim(rows: Sequence[dict]) -> dict:
  """ood_auroc_middle_layers on the largest size with an interior layer (module docstring)."""
  deep = [r for r in rows if r["num_layers"] >= 2 and r["middle_gap"] is not None
          and np.isfinite(r["middle_gap"])]
  if not deep:
    return claim("ood_auroc_middle_layers", "OOD detection works best from middle layers",
                 "Fig 22", None, None, False, "no base LM with an interior layer (>= 2 blocks)")
  top = deep[-1]
  ci = top["middle_gap_ci"]
  held = top["middle_gap"] > 0 and ci is not None and ci[0] > 0
  return claim(
      "ood_auroc_middle_layers",
      "Simplified relative Mahalanobis OOD detection of harmful prompts works best from a middle "
      "layer (interior-layer AUROC minus the better end layer, largest base LM)",
      f"middle layers best for large models; best AUROC ~{PAPER_BEST_AUROC} (52B, Fig 22)",
      top["middle_gap"], ci, held,
      f"{top['model_size']} ({top['interval']}); {_describe(rows)}")


def exposure_claim(rows: Sequence[dict], k: int = 10) -> dict:
  """ood_outlier_exposure_helps: AUROC gain of the k-shot head over zero-shot SRMD at the same
  layer, on the largest size (module docstring)."""
  have = [r for r in rows if k in r["ks"]]
  if not have:
    return claim("ood_outlier_exposure_helps", "few-shot outlier exposure helps", "Fig 23", None,
                 None, False, f"no run with k = {k}")
  top = have[-1]
  i = top["ks"].index(k)
  gain, ci = top["exposure_gain"][i], (top["exposure_gain_ci"] or [None] * len(top["ks"]))[i]
  held = gain is not None and gain > 0 and ci is not None and ci[0] > 0
  others = "; ".join(f"{r['model_size']}: {r['auroc_exposure'][r['ks'].index(k)]:.3f} "
                     f"(gain {r['exposure_gain'][r['ks'].index(k)]:+.3f})" for r in have)
  return claim(
      "ood_outlier_exposure_helps",
      f"A linear head trained with {k} harmful examples beats zero-shot SRMD at the same layer "
      f"(AUROC gain, largest base LM)",
      f"AUROC {PAPER_EXPOSURE_K10} +- 0.02 with 10 examples vs ~{PAPER_BEST_AUROC} zero-shot (52B, Fig 23)",
      gain, ci, held,
      f"{top['model_size']} layer {top['exposure_layer']} ({top['interval']}); AUROC at k={k}: {others}")


def ood_claims(result: dict | None) -> list[dict]:
  """Both OOD claims from analyze_ood's result (None or no rows: both not held, with a note)."""
  rows = (result or {}).get("sizes") or []
  if not rows:
    return [claim(cid, "OOD detection", "Fig 22, 23", None, None, False, "no ood runs")
            for cid in ("ood_auroc_middle_layers", "ood_outlier_exposure_helps")]
  return [middle_layers_claim(rows), exposure_claim(rows)]


# ----------------------------------------------------------------------------- figures


def fig_auroc_vs_layer(rows: Sequence[dict]):
  """AUROC vs layer (the residual stream index, 0 = embeddings), one line per size, SRMD solid
  with its interval as a band and plain Mahalanobis dashed (cf. Fig 22 left, Fig 39)."""
  fig, axes = plots.new_figure(width=5.4)
  ax = axes[0]
  colors = plots.size_colors([r["model_size"] for r in rows])
  for r in rows:
    layers = np.arange(r["num_layers"] + 1)
    color = colors[r["model_size"]]
    ax.plot(layers, r["auroc_srmd"], "-o", color=color,
            label=f"{plots.size_label(r['model_size'], r['params'])} SRMD")
    if r["auroc_srmd_ci"] and None not in r["auroc_srmd_ci"]:
      lo, hi = np.asarray(r["auroc_srmd_ci"], np.float64).T
      ax.fill_between(layers, lo, hi, color=color, alpha=0.18, linewidth=0)
    if r.get("auroc_md"):
      ax.plot(layers, r["auroc_md"], "--", marker=".", color=color, linewidth=1.0)
  ax.plot([], [], "--", color="gray", linewidth=1.0, label="plain Mahalanobis")
  ax.axhline(0.5, color="gray", linestyle=":", linewidth=1.0, label="chance")
  ax.xaxis.set_major_locator(plots.integer_locator())
  plots.label_axes(ax, "layer (residual stream; 0 = embeddings)", "AUROC, helpful vs harmful prompts")
  plots.suptitle(fig, "OOD detection of harmful prompts by layer", "Bai et al. Fig 22, 39")
  return fig


def fig_auroc_vs_k(rows: Sequence[dict]):
  """AUROC vs number of harmful examples k (log x; k = 0 is zero-shot SRMD at the same layer),
  one line per size, +-std over the draws of the k examples (cf. Fig 23)."""
  fig, axes = plots.new_figure(width=5.4)
  ax = axes[0]
  colors = plots.size_colors([r["model_size"] for r in rows])
  for r in rows:
    e = r["exposure_layer"]
    x = [0.5] + list(r["ks"])              # k = 0 drawn at 0.5 on the log axis
    y = [r["auroc_srmd"][e]] + list(r["auroc_exposure"])
    std = [0.0] + list(r["exposure_draw_std"])
    plots.errorbar_line(ax, x, y, std, f"{plots.size_label(r['model_size'], r['params'])} (layer {e})",
                        colors[r["model_size"]])
  ax.set_xscale("log")
  ticks = [0.5] + list(rows[0]["ks"])
  ax.set_xticks(ticks, ["0"] + [str(k) for k in rows[0]["ks"]])
  ax.axhline(0.5, color="gray", linestyle=":", linewidth=1.0, label="chance")
  plots.label_axes(ax, "harmful examples seen k (0 = zero-shot SRMD)", "AUROC, helpful vs harmful prompts")
  plots.suptitle(fig, "Few-shot outlier exposure", "Bai et al. Fig 23")
  return fig


def _seed_statistic(row: dict, key: str, n_sizes: int, what: str) -> dict:
  """A per-seed statistic of one size row in analysis.claims' format (seeds = that size's runs)."""
  per = {s: v for s, v in row["per_seed"][key].items() if v is not None and np.isfinite(v)}
  si = fits.seed_interval(per.values())
  ci = si["ci"] or [None, None]
  return {"values": {"value": si["mean"], "ci_low": ci[0], "ci_high": ci[1]},
          "counts": {"seeds": len(per), "sizes": n_sizes}, "per_seed": per,
          "detail": f"{row['model_size']}: {what}; seeds are independent prompt draws"}


def middle_gap_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of ood_auroc_middle_layers, from inputs["ood"] (analyze_ood's
  result): value = mean over seeds of the largest >= 2-block base LM's middle_gap."""
  rows = [r for r in ((inputs.get("ood") or {}).get("sizes") or []) if r["num_layers"] >= 2]
  if not rows:
    return {"not_tested": "the ood stage has no base LM with an interior layer (>= 2 blocks)"}
  return _seed_statistic(rows[-1], "middle_gap", len(rows),
                         "best interior-layer SRMD AUROC minus the better end layer's")


def exposure_gain_statistic(inputs: dict, main_run=None, k: int = 10) -> dict:
  """analysis.claims statistic of ood_outlier_exposure_helps: value = mean over seeds of the
  largest base LM's AUROC gain of the k-shot head over SRMD at the same layer."""
  rows = [r for r in ((inputs.get("ood") or {}).get("sizes") or []) if k in r["ks"]]
  if not rows:
    return {"not_tested": f"the ood stage has no run with k = {k}"}
  return _seed_statistic(rows[-1], f"exposure_gain_k{k}", len(rows),
                         f"k = {k} head AUROC minus SRMD AUROC at layer {rows[-1]['exposure_layer']}")


def analyze_ood(runs: Sequence[Run]) -> tuple[dict, dict, list[str]]:
  """(result, {name: Figure}, notes) from the finished ood runs among `runs`."""
  records = [ood_record(r) for r in runs if r.kind == "ood" and r.has("ood.json")]
  if not records:
    return {"sizes": []}, {}, ["no ood runs: OOD figures skipped"]
  rows = size_table(records)
  result = {"sizes": rows, "claims": ood_claims({"sizes": rows})}
  figures = {"ood_auroc_vs_layer": fig_auroc_vs_layer(rows), "ood_auroc_vs_k": fig_auroc_vs_k(rows)}
  return result, figures, []


def run_ood(root: str, out_dir: str) -> dict:
  """analyze_ood over the finished runs under root; writes <out_dir>/ood_analysis.json and the
  figures (PNG + PDF); returns {"result", "notes", "files"}."""
  found = discover(root)
  result, figures, notes = analyze_ood(found.runs)
  result["skipped_unfinished"] = found.skipped
  os.makedirs(out_dir, exist_ok=True)
  files = [p for stem, fig in figures.items() for p in plots.save(fig, out_dir, stem)]
  write_json(os.path.join(out_dir, "ood_analysis.json"), result)
  return {"result": result, "notes": notes, "files": files + [os.path.join(out_dir, "ood_analysis.json")]}
