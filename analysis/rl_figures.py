"""Figures of the RLHF analysis (paper Figs 4, 13, 15, 33, 36; Gao et al. 2022).

Each function takes the curves and JSON-able fits of `analysis.rl` and returns a Figure;
`rl_figures` draws every figure the inputs allow and notes the ones it skipped.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from analysis import fits, plots


def run_label(curve: dict) -> str:
  return f"policy {curve['policy'].get('model_size')}, PM {curve['train_pm'].get('model_size')}"


def by_config(curves: Sequence[dict], results: Sequence[dict] | None = None) -> list[tuple[list, list]]:
  """[(curves of one config, their results)]: the seeds of each run config together (a config is
  a run name without its -s<k> suffix), in the order the configs first appear."""
  groups: dict[str, tuple[list, list]] = {}
  for i, c in enumerate(curves):
    cs, rs = groups.setdefault(c.get("config", c["name"]), ([], []))
    cs.append(c)
    rs.append(results[i] if results is not None else None)
  return list(groups.values())


class Styles:
  """Colour by policy size, line style by train-PM size, the same in every RL figure."""

  def __init__(self, curves: Sequence[dict]):
    policies = sorted({(c["policy"].get("params") or 0, str(c["policy"].get("model_size"))) for c in curves})
    self.colors = plots.size_colors([name for _, name in policies])
    pms = sorted({(c["train_pm"].get("params") or 0, str(c["train_pm"].get("model_size"))) for c in curves})
    self.linestyles = plots.styles_by(name for _, name in pms)

  def __call__(self, curve: dict) -> dict:
    return {"color": self.colors[str(curve["policy"].get("model_size"))],
            "linestyle": self.linestyles[str(curve["train_pm"].get("model_size"))]}


def _seeds_label(group) -> str:
  return f"{run_label(group[0])}" + (f" ({len(group)} seeds)" if len(group) > 1 else "")


def _largest_test(curve: dict) -> str | None:
  if not curve["tests"]:
    return None
  return max(curve["tests"], key=lambda n: (curve["tests"][n].get("params") or 0, n))


def _mean_fit_line(ax, group, results) -> None:
  """The first-half linear fit, averaged over the seeds of a config, over its first-half range."""
  fitted = [(c, r["score_vs_sqrt_kl"]["train"]) for c, r in zip(group, results) if r["score_vs_sqrt_kl"]["train"]]
  if not fitted:
    return
  k = min(f["iterations"] for _, f in fitted)
  x = np.array([np.nanmin([np.nanmin(c["sqrt_kl"][:k]) for c, _ in fitted]),
                np.nanmax([np.nanmax(c["sqrt_kl"][:k]) for c, _ in fitted])])
  slope, intercept = np.mean([f["slope"] for _, f in fitted]), np.mean([f["intercept"] for _, f in fitted])
  ax.plot(x, intercept + slope * x, color="black", linewidth=0.9, alpha=0.7, linestyle=(0, (1, 1)))


def fig_score_vs_sqrt_kl(curves: Sequence[dict], run_results: Sequence[dict]):
  """PM score vs sqrt(KL), one line per run config (mean over seeds, +-1 sd band), with the
  first-half linear fit dotted; train PM and largest test PM side by side (cf. Fig 4 right, 13)."""
  has_test = any(c["score_test"] for c in curves)
  fig, axes = plots.new_figure(ncols=2 if has_test else 1)
  style = Styles(curves)
  for group, results in by_config(curves, run_results):
    st = style(group[0])
    plots.seed_band(axes[0], [c["sqrt_kl"] for c in group], [c["score_train"] for c in group],
                    label=_seeds_label(group), **st)
    _mean_fit_line(axes[0], group, results)
    if has_test and (name := _largest_test(group[0])) is not None:
      plots.seed_band(axes[1], [c["sqrt_kl"] for c in group], [c["score_test"][name] for c in group],
                      label=_seeds_label(group), **st)
  axes[0].plot([], [], color="black", linewidth=0.9, linestyle=(0, (1, 1)), label="linear fit (first half of run)")
  plots.label_axes(axes[0], "sqrt(KL(pi || pi0)) (sqrt nats)", "train PM score (logits)", "train PM",
                   legend=not has_test)
  if has_test:
    plots.label_axes(axes[1], "sqrt(KL(pi || pi0)) (sqrt nats)", "test PM score (logits)",
                     "largest test PM of each run", legend=False)
    plots.figure_legend(fig, axes, ncol=3)
  plots.suptitle(fig, "PM score vs sqrt(KL) during PPO", "Bai et al. Fig 4 right, 13")
  return fig


def fig_train_vs_test(curves: Sequence[dict], max_panels: int = 12):
  """Score gain over the initial policy vs RL samples (log x), train PM vs every test PM; one panel
  per run config, mean over its seeds with a +-1 sd band (cf. Fig 4 left)."""
  groups = [g for g, _ in by_config([c for c in curves if c["score_test"]])][:max_panels]
  ncols = min(4, len(groups))
  nrows = int(math.ceil(len(groups) / ncols))
  fig, axes = plots.new_figure(ncols=ncols, nrows=nrows, width=3.6, height=3.0)
  for ax, group in zip(axes, groups):
    c = group[0]
    xs = [g["samples"] for g in group]
    plots.seed_band(ax, xs, [g["score_train"] - g["score_train"][0] for g in group], "black",
                    f"train PM {c['train_pm'].get('model_size') or ''}")
    names = sorted(c["tests"], key=lambda n: (c["tests"][n].get("params") or 0, n))
    colors = plots.size_colors(names)
    for n in names:
      plots.seed_band(ax, xs, [g["score_test"][n] - g["score_test"][n][0] for g in group], colors[n],
                      f"test PM {c['tests'][n].get('model_size') or n}")
    plots.log_axis(ax)
    plots.label_axes(ax, "RL samples", "PM score gain over initial policy (logits)", _seeds_label(group))
  for ax in axes[len(groups):]:
    ax.set_visible(False)
  plots.suptitle(fig, "Train vs test PM score during PPO", "Bai et al. Fig 4 left")
  return fig


def _robustness_points(result: dict) -> tuple[list, list, bool]:
  """(test-PM params, gains, shared scale?) of one run: the standardised gains when every test PM
  has one, else the raw gains in each PM's own logits."""
  tests = sorted((t for t in result["robustness"]["tests"].values() if t["params"]), key=lambda t: t["params"])
  shared = bool(tests) and all(t.get("gain_std") is not None for t in tests)
  return [t["params"] for t in tests], [t["gain_std"] if shared else t["gain"] for t in tests], shared


def fig_robustness(curves: Sequence[dict], run_results: Sequence[dict], budget: float | None):
  """Test-PM score gain at a fixed RL budget vs test-PM size (log x), on a scale shared by all
  test PMs (each PM's gain / the std of its scores of the initial policy's samples); one line per
  run config, mean over seeds with a +-1 sd band (cf. Fig 33)."""
  fig, (ax,) = plots.new_figure(width=4.8, height=3.6)
  style = Styles(curves)
  shared_all, sizes = True, set()
  for group, results in by_config(curves, run_results):
    points = [_robustness_points(r) for r in results]
    if not points[0][0]:
      continue
    shared_all &= all(p[2] for p in points)
    sizes.update(points[0][0])
    plots.seed_band(ax, [p[0] for p in points], [p[1] for p in points], label=_seeds_label(group),
                    marker="o", **style(group[0]))
  plots.log_ticks(ax, sizes)
  where = f"at {plots.format_count(budget)} RL samples" if budget else "at the last iteration"
  unit = "(std of its scores of the initial policy)" if shared_all else "(logits)"
  plots.label_axes(ax, "test PM non-embedding parameters", f"test PM score gain {unit}", where)
  plots.suptitle(fig, "Robustness: test-PM score vs test-PM size", "Bai et al. Fig 33")
  return fig


def fig_gold_vs_sqrt_kl(curves: Sequence[dict], run_results: Sequence[dict], bons: Sequence[dict],
                        bon_results: Sequence[dict], gold_key: str = "hh"):
  """Gold reward gain vs sqrt(KL) (gold units): PPO curves per config (mean over seeds, band) with
  the Gao RL fit d(alpha - beta ln d) of the seed-mean curve, and best-of-n points with the Gao
  BoN fit d(alpha - beta d) (cf. Gao et al. 2022)."""
  fig, (ax,) = plots.new_figure(width=4.8, height=3.6)
  style = Styles(curves)
  for group, _ in by_config([c for c in curves if gold_key in c["gold"]]):
    st = style(group[0])
    gains = [c["gold"][gold_key] - c["gold"][gold_key][0] for c in group]
    plots.seed_band(ax, [c["sqrt_kl"] for c in group], gains, label=f"PPO: {_seeds_label(group)}", **st)
    n = min(len(g) for g in gains)
    d = np.nanmean([c["sqrt_kl"][:n] for c in group], axis=0)
    g = np.nanmean([x[:n] for x in gains], axis=0)
    keep = np.isfinite(d) & np.isfinite(g)
    if keep.sum() >= 3:
      try:
        fit = fits.gao_rl_fit(np.maximum(d[keep], 0.0), g[keep])
      except ValueError:
        continue
      grid = np.linspace(0, np.nanmax(d), 100)
      ax.plot(grid, fits.gao_rl_curve(grid, fit["alpha"], fit["beta"]), color=st["color"], linewidth=0.9,
              linestyle=(0, (1, 1)))
  ax.plot([], [], color="gray", linewidth=0.9, linestyle=(0, (1, 1)), label="Gao RL fit d(alpha - beta ln d)")
  for i, (bon, res) in enumerate(zip(bons, bon_results)):
    key = f"gold_{gold_key}"
    if key not in bon["scores"]:
      continue
    d = np.sqrt(np.maximum(bon["kl_bound"], 0))
    fit = res.get(key)
    base = fit["base"] if fit else bon["scores"][key][0]
    ax.plot(d, bon["scores"][key] - base, "s", color=f"C{3 + i}", markersize=4, label="best-of-n")
    if fit is not None:
      grid = np.linspace(0, d.max(), 100)
      ax.plot(grid, fits.gao_bon_curve(grid, fit["alpha"], fit["beta"]), "--", color=f"C{3 + i}", linewidth=1.2,
              label="Gao BoN fit d(alpha - beta d)")
  ax.axhline(0, color="gray", linewidth=0.8)
  plots.label_axes(ax, "sqrt(KL(pi || pi0)) (sqrt nats)", f"gold {gold_key} reward gain (gold units)",
                   "over-optimisation of the gold reward")
  plots.suptitle(fig, "Gold reward vs sqrt(KL)", "Gao et al. 2022; Bai et al. §4")
  return fig


def fig_best_of_n(bon: dict, fit: dict):
  """Score gain over n = 1 vs the best-of-n KL bound log n - (n-1)/n, PM scores (logits) and gold
  rewards (gold units) on separate panels, each with its Gao BoN fit (cf. Fig 36)."""
  kl = bon["kl_bound"]
  groups = [("PM scores", "PM score gain over n = 1 (logits)",
             {k: v for k, v in bon["scores"].items() if not k.startswith("gold_")}),
            ("gold reward", "gold reward gain over n = 1 (gold units)",
             {k: v for k, v in bon["scores"].items() if k.startswith("gold_")})]
  groups = [g for g in groups if g[2]]
  fig, axes = plots.new_figure(ncols=len(groups), width=4.4, height=3.6)
  for ax, (title, ylabel, scores) in zip(axes, groups):
    for i, (name, s) in enumerate(sorted(scores.items())):
      f = fit.get(name)
      base = f["base"] if f else s[0]
      ax.plot(kl, s - base, "o-", color=f"C{i}", label=name.replace("score_", "").replace("_", " "))
      if f is not None:
        grid = np.linspace(0, kl.max(), 100)
        ax.plot(grid, fits.gao_bon_curve(np.sqrt(grid), f["alpha"], f["beta"]), ":", color=f"C{i}", linewidth=1.0)
    ax.plot([], [], ":", color="gray", label="Gao BoN fit d(alpha - beta d)")
    top = ax.secondary_xaxis("top")
    ticks = _n_ticks(bon["n"], kl)
    top.set_ticks([t for t, _ in ticks], labels=[label for _, label in ticks])
    top.set_xlabel("n (samples per prompt)", fontsize=8)
    top.tick_params(labelsize=7)
    plots.label_axes(ax, "KL bound log n - (n-1)/n (nats)", ylabel, title)
  plots.suptitle(fig, "Best-of-n", "Bai et al. Fig 36")
  return fig


def _n_ticks(ns, kl) -> list[tuple[float, str]]:
  """(KL bound, 'n') top-axis ticks for n = 2, 4, 8, ... only (n = 1 sits at 0 and neighbours crowd)."""
  return [(float(k), f"{int(n)}") for n, k in zip(ns, kl)
          if n >= 2 and math.log2(n) == int(math.log2(n))]


def fig_elo(elos: Sequence[dict]):
  """Elo over RL samples: PM-predicted (174 x delta score) and the gold-labeler MLE with +-stderr (cf. Fig 15)."""
  fig, (ax,) = plots.new_figure(width=4.8, height=3.6)
  for i, e in enumerate(elos):
    tag = os.path.basename(os.path.dirname(e["path"])) or f"run {i}"
    if "elo_pm_predicted" in e:
      ax.plot(e["samples"], e["elo_pm_predicted"], "o--", color=f"C{i}", label=f"{tag}: PM-predicted (174 x dPM)")
    if "elo_gold" in e:
      ax.errorbar(e["samples"], e["elo_gold"], yerr=e.get("elo_gold_stderr"), fmt="s-", color=f"C{i}",
                  capsize=2, label=f"{tag}: gold labeler (MLE)")
  ax.axhline(0, color="gray", linewidth=0.8)
  plots.label_axes(ax, "RL samples", "Elo vs initial policy (Elo points)", "PM-predicted vs gold Elo")
  plots.suptitle(fig, "Elo during RLHF", "Bai et al. Fig 15")
  return fig


def rl_figures(curves, run_results, bons, bon_results, elos, budget) -> tuple[dict, list[str]]:
  """({stem: Figure} for every RL figure the inputs allow, notes naming the ones skipped)."""
  figures, notes = {}, []
  if curves:
    figures["rl_score_vs_sqrt_kl"] = fig_score_vs_sqrt_kl(curves, run_results)
    if any(c["score_test"] for c in curves):
      figures["rl_train_vs_test"] = fig_train_vs_test(curves)
    else:
      notes.append("no test PMs in any PPO run: skipped train vs test (Fig 4 left)")
    if any(t["params"] for r in run_results for t in r["robustness"]["tests"].values()):
      figures["rl_robustness"] = fig_robustness(curves, run_results, budget)
    else:
      notes.append("no test PMs with sizes (pms.json): skipped robustness (Fig 33)")
  else:
    notes.append("no finished PPO runs: skipped the PPO figures (Fig 4, 13, 33)")
  if any("hh" in c["gold"] for c in curves) or any("gold_hh" in b["scores"] for b in bons):
    figures["rl_gold_vs_sqrt_kl"] = fig_gold_vs_sqrt_kl(curves, run_results, bons, bon_results)
  else:
    notes.append("no gold reward (gold/hh) logged: skipped gold vs sqrt(KL)")
  if bons:
    for i, (b, r) in enumerate(zip(bons, bon_results)):
      figures["rl_best_of_n" + (f"_{i}" if len(bons) > 1 else "")] = fig_best_of_n(b, r)
  else:
    notes.append("no bon.json: skipped best-of-n (Fig 36)")
  if elos:
    figures["rl_elo"] = fig_elo(elos)
  else:
    notes.append("no elo.json: skipped Elo (Fig 15)")
  return figures, notes
