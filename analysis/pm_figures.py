"""Figures of the preference-model analysis (paper Figs 7, 8, 9, 19, 26, 31, 32).

Each function takes the JSON-able tables and fits of `analysis.pm` and returns a Figure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from analysis import fits, plots


# ----------------------------------------------------------------------------- figures: scaling


def _metric_label(metric: str) -> str:
  return "all test pairs" if metric == "accuracy" else f"{metric[len('accuracy_'):]} test pairs"


def _ceiling_metric(metric: str) -> str:
  return "bayes_ceiling" + metric[len("accuracy"):]


def fig_accuracy_vs_data(cells: Sequence[dict], fit_result: dict):
  """Accuracy vs comparisons (log x), one line per model size, mean +- std over seeds; the fitted
  law dashed; the Bayes ceiling dotted. One panel per test set (cf. Fig 7 left, 31, 32)."""
  metrics = list(fit_result["metrics"]) or ["accuracy"]
  fig, axes = plots.new_figure(ncols=len(metrics))
  sizes = sorted({(c["params"], c["model_size"]) for c in cells})
  colors = plots.size_colors([s for _, s in sizes])
  for ax, metric in zip(axes, metrics):
    fit = fit_result["metrics"].get(metric, {}).get("fit")
    fit_cells = fit_result["metrics"].get(metric, {}).get("fit_cells")
    for params, size in sizes:
      cs = sorted((c for c in cells if c["model_size"] == size and f"{metric}_mean" in c),
                  key=lambda c: c["num_train"])
      if not cs:
        continue
      x = [c["num_train"] for c in cs]
      plots.errorbar_line(ax, x, [c[f"{metric}_mean"] for c in cs], [c[f"{metric}_std"] for c in cs],
                          plots.size_label(size, params), colors[size])
      if fit is not None:
        grid = np.geomspace(min(x), max(x), 50)
        ax.plot(grid, fits.loglinear_curve(fit, params, grid), "--", color=colors[size], linewidth=1.0)
    _draw_ceiling(ax, cells, _ceiling_metric(metric))
    if metric == "accuracy":
      _draw_best_baseline(ax, cells)
    title = _metric_label(metric)
    if fit is not None:
      ax.plot([], [], "--", color="gray", linewidth=1.0,
              label=f"fit a + b ln(P/{fit['p0']:.0e}) + c ln(D/{fit['d0']:.0e}); bands: +-std over seeds")
      title += f"\na={fit['a']:.3f}  b={fit['b']:.4f}  c={fit['c']:.4f}\nR$^2$={fit['r2']:.3f} over runs"
      if fit_cells is not None:
        title += f", {fit_cells['r2']:.3f} over seed means"
    plots.log_ticks(ax, [c["num_train"] for c in cells])
    plots.label_axes(ax, "comparisons (pairs)", "accuracy", title, legend=False)
  plots.figure_legend(fig, axes)
  plots.suptitle(fig, "PM accuracy vs dataset size", "Bai et al. Fig 7 left, 31, 32")
  return fig


def fig_accuracy_vs_params(cells: Sequence[dict], fit_result: dict):
  """Accuracy vs non-embedding parameters (log x), one line per data size, with the fitted law (cf. Fig 7 right)."""
  fit = fit_result["metrics"].get("accuracy", {}).get("fit")
  fig, (ax,) = plots.new_figure()
  data_sizes = sorted({c["num_train"] for c in cells})
  colors = plots.size_colors(data_sizes)
  for d in data_sizes:
    cs = sorted((c for c in cells if c["num_train"] == d), key=lambda c: c["params"])
    x = [c["params"] for c in cs]
    plots.errorbar_line(ax, x, [c["accuracy_mean"] for c in cs], [c["accuracy_std"] for c in cs],
                        f"{plots.format_count(d)} comparisons", colors[d])
    if fit is not None and len(x) > 1:
      grid = np.geomspace(min(x), max(x), 50)
      ax.plot(grid, fits.loglinear_curve(fit, grid, d), "--", color=colors[d], linewidth=1.0)
  if fit is not None:
    ax.plot([], [], "--", color="gray", linewidth=1.0, label="fitted log-linear law")
  _draw_ceiling(ax, cells, "bayes_ceiling")
  plots.log_ticks(ax, [c["params"] for c in cells])
  plots.label_axes(ax, "non-embedding parameters", "accuracy", "all test pairs", legend=False)
  ax.fill_between([], [], [], color="gray", alpha=0.18, label="band: +-1 sd over seeds")
  plots.figure_legend(fig, [ax], ncol=2)
  plots.suptitle(fig, "PM accuracy vs model size", "Bai et al. Fig 7 right")
  return fig


def best_baseline_by_data(cells: Sequence[dict]) -> dict[int, float]:
  """{data size: the best shortcut baseline}: per baseline, its mean over the cells of that data
  size (the shorter-reply and distinct-tokens baselines do not depend on the PM; the bag of words
  is fitted on the PM's training pairs), then the best of them."""
  out = {}
  for d in sorted({c["num_train"] for c in cells}):
    means = [np.mean(xs) for key in ("shorter_baseline", "distinct_baseline", "bow_baseline")
             if (xs := [c[f"{key}_mean"] for c in cells if c["num_train"] == d and f"{key}_mean" in c])]
    if means:
      out[d] = float(max(means))
  return out


def _draw_best_baseline(ax, cells) -> None:
  best = best_baseline_by_data(cells)
  if best:
    ax.plot(list(best), list(best.values()), "x-", color="gray", linewidth=1.0,
            label="best shortcut baseline (shorter / distinct tokens / bag of words)")


def _draw_ceiling(ax, cells, key: str) -> None:
  values = [c[f"{key}_mean"] for c in cells if f"{key}_mean" in c]
  if values:
    ax.axhline(float(np.mean(values)), linestyle=":", color="black", linewidth=1.2,
               label="Bayes ceiling (gold labeler)")


# ----------------------------------------------------------------------------- figures: calibration


def fig_calibration(calib: dict, title_note: str = ""):
  """Binned |PM score gap| vs observed accuracy, beside 1/(1+e^-d) (cf. Fig 9)."""
  fig, (ax,) = plots.new_figure(width=4.6, height=3.8)
  pooled = calib["pooled"]
  d_max = max([max(pooled["centers"])] + ([max(calib["gold_labeler"]["centers"])] if "gold_labeler" in calib else []))
  grid = np.linspace(0, d_max * 1.05, 100)
  ax.plot(grid, 1 / (1 + np.exp(-grid)), color="black", linewidth=1.0, label="1/(1+e^-d) (perfect calibration)")
  ax.errorbar(pooled["centers"], pooled["accuracy"], yerr=pooled["accuracy_stderr"], fmt="o-", color="C0",
              capsize=2, label=f"PM, all pairs (ECE {pooled['ece']:.3f})")
  for i, (name, b) in enumerate(calib.get("by_source", {}).items()):
    ax.plot(b["centers"], b["accuracy"], "s--", color=f"C{i + 2}", markersize=3, linewidth=1.0,
            label=f"PM, {name} (ECE {b['ece']:.3f})")
  if "gold_labeler" in calib:
    g = calib["gold_labeler"]
    ax.plot(g["centers"], g["accuracy"], "^:", color="C1", linewidth=1.0, label="gold labeler (logit p_chosen)")
  ax.set_ylim(0.45, 1.02)
  plots.label_axes(ax, "|PM score difference| (logits)", "accuracy (PM-preferred is chosen)", title_note)
  plots.suptitle(fig, "PM calibration", "Bai et al. Fig 9")
  return fig


# ----------------------------------------------------------------------------- figures: helpful / harmless tension


def fig_mix_tension(rows: Sequence[dict]):
  """% helpful data in the PM mix vs helpful, harmless and mean accuracy, one line per size (cf. Fig 19, 26)."""
  fig, axes = plots.new_figure(ncols=3, width=3.6)
  sizes = sorted({(r["params"], r["model_size"]) for r in rows})
  colors = plots.size_colors([s for _, s in sizes])
  for ax, key in zip(axes, ("helpful", "harmless", "mean")):
    for params, size in sizes:
      rs = sorted((r for r in rows if r["model_size"] == size and r[key] is not None),
                  key=lambda r: r["helpful_fraction"])
      ax.plot([100 * r["helpful_fraction"] for r in rs], [r[key] for r in rs], "o-", color=colors[size],
              label=plots.size_label(size, params))
    ax.axhline(0.5, linestyle=":", color="gray", linewidth=1.0, label="chance")
    plots.label_axes(ax, "helpful data in the PM training mix (%)", f"{key} test accuracy",
                     f"{key} accuracy" if key != "mean" else "mean of helpful and harmless", legend=False)
  plots.figure_legend(fig, axes)
  plots.suptitle(fig, "Helpful / harmless tension", "Bai et al. Fig 19, 26")
  return fig


# ----------------------------------------------------------------------------- figures: accuracy by turn


def fig_turns(rows: Sequence[dict], turn_counts: dict[int, int] | None):
  """Pairs per turn count and PM accuracy by turn, one line per model size (cf. Fig 8)."""
  fig, axes = plots.new_figure(ncols=2 if turn_counts else 1)
  ax = axes[-1]
  colors = plots.size_colors([r["model_size"] for r in rows])
  for r in rows:
    turns = sorted(r["by_turn"], key=int)
    ax.plot([int(t) for t in turns], [r["by_turn"][t] for t in turns], "o-", color=colors[r["model_size"]],
            label=f"{r['model_size']} ({plots.format_count(r['num_train'])} pairs)")
  plots.label_axes(ax, "dialogue turn (human turns in context)", "accuracy", "PM accuracy by turn")
  for a in axes:
    a.xaxis.set_major_locator(plots.integer_locator())
  if turn_counts:
    turns = sorted(turn_counts)
    axes[0].bar(turns, [turn_counts[t] for t in turns], color="C0", label="test pairs")
    plots.label_axes(axes[0], "dialogue turn (human turns in context)", "test pairs (count)", "pairs per turn")
  plots.suptitle(fig, "Accuracy by dialogue turn", "Bai et al. Fig 8")
  return fig
