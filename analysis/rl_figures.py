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


def _policy_colors(curves):
  sizes = []
  for c in curves:
    if c["policy"].get("model_size") not in sizes:
      sizes.append(c["policy"].get("model_size"))
  return plots.size_colors(sizes)


def _largest_test(curve: dict) -> str | None:
  if not curve["tests"]:
    return None
  return max(curve["tests"], key=lambda n: (curve["tests"][n].get("params") or 0, n))


def fig_score_vs_sqrt_kl(curves: Sequence[dict], run_results: Sequence[dict]):
  """PM score vs sqrt(KL), per run, with the first-half linear fit dashed; train PM and largest
  test PM side by side (cf. Fig 4 right, 13)."""
  has_test = any(c["score_test"] for c in curves)
  fig, axes = plots.new_figure(ncols=2 if has_test else 1)
  colors = _policy_colors(curves)
  linestyles = ["-", "-.", ":", (0, (5, 1))]
  pm_sizes = []
  for c in curves:
    if c["train_pm"].get("params") not in pm_sizes:
      pm_sizes.append(c["train_pm"].get("params"))
  for c, res in zip(curves, run_results):
    color = colors[c["policy"].get("model_size")]
    ls = linestyles[pm_sizes.index(c["train_pm"].get("params")) % len(linestyles)]
    axes[0].plot(c["sqrt_kl"], c["score_train"], linestyle=ls, color=color, label=run_label(c))
    fit = res["score_vs_sqrt_kl"]["train"]
    if fit is not None:
      k = fit["iterations"]
      x = np.array([np.nanmin(c["sqrt_kl"][:k]), np.nanmax(c["sqrt_kl"][:k])])
      axes[0].plot(x, fit["intercept"] + fit["slope"] * x, "--", color="black", linewidth=0.9, alpha=0.7)
    if has_test and (name := _largest_test(c)) is not None:
      axes[1].plot(c["sqrt_kl"], c["score_test"][name], linestyle=ls, color=color, label=run_label(c))
  axes[0].plot([], [], "--", color="black", linewidth=0.9, label="linear fit (first half of run)")
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
  per run (cf. Fig 4 left)."""
  curves = [c for c in curves if c["score_test"]][:max_panels]
  ncols = min(4, len(curves))
  nrows = int(math.ceil(len(curves) / ncols))
  fig, axes = plots.new_figure(ncols=ncols, nrows=nrows, width=3.6, height=3.0)
  for ax, c in zip(axes, curves):
    x = c["samples"]
    ax.plot(x, c["score_train"] - c["score_train"][0], color="black", linewidth=2.0,
            label=f"train PM {c['train_pm'].get('model_size') or ''}")
    names = sorted(c["tests"], key=lambda n: (c["tests"][n].get("params") or 0, n))
    colors = plots.size_colors(names)
    for n in names:
      s = c["score_test"][n]
      ax.plot(x, s - s[0], color=colors[n], label=f"test PM {c['tests'][n].get('model_size') or n}")
    ax.set_xscale("log")
    plots.label_axes(ax, "RL samples", "PM score gain over initial policy (logits)", run_label(c))
  for ax in axes[len(curves):]:
    ax.set_visible(False)
  plots.suptitle(fig, "Train vs test PM score during PPO", "Bai et al. Fig 4 left")
  return fig


def fig_robustness(curves: Sequence[dict], run_results: Sequence[dict], budget: float | None):
  """Test-PM score gain at a fixed RL budget vs test-PM size (log x), one line per run (cf. Fig 33)."""
  fig, (ax,) = plots.new_figure(width=4.8, height=3.6)
  colors = _policy_colors(curves)
  for c, res in zip(curves, run_results):
    tests = [t for t in res["robustness"]["tests"].values() if t["params"]]
    tests.sort(key=lambda t: t["params"])
    ax.plot([t["params"] for t in tests], [t["gain"] for t in tests], "o-",
            color=colors[c["policy"].get("model_size")], label=run_label(c))
  ax.set_xscale("log")
  where = f"at {plots.format_count(budget)} RL samples" if budget else "at the last iteration"
  plots.label_axes(ax, "test PM non-embedding parameters", "test PM score gain (logits)", where)
  plots.suptitle(fig, "Robustness: test-PM score vs test-PM size", "Bai et al. Fig 33")
  return fig


def fig_gold_vs_sqrt_kl(curves: Sequence[dict], run_results: Sequence[dict], bons: Sequence[dict],
                        bon_results: Sequence[dict], gold_key: str = "hh"):
  """Gold reward gain vs sqrt(KL): PPO curves with the Gao RL fit d(alpha - beta ln d), and best-of-n
  points with the Gao BoN fit d(alpha - beta d) (cf. Gao et al. 2022)."""
  fig, (ax,) = plots.new_figure(width=4.8, height=3.6)
  colors = _policy_colors(curves)
  for c, res in zip(curves, run_results):
    if gold_key not in c["gold"]:
      continue
    color = colors[c["policy"].get("model_size")]
    g = c["gold"][gold_key]
    ax.plot(c["sqrt_kl"], g - g[0], "o", color=color, markersize=2.5, alpha=0.6, label=f"PPO: {run_label(c)}")
    fit = res["gold_gao_rl"].get(gold_key)
    if fit is not None:
      d = np.linspace(0, np.nanmax(c["sqrt_kl"]), 100)
      ax.plot(d, fits.gao_rl_curve(d, fit["alpha"], fit["beta"]), "--", color=color, linewidth=1.2,
              label=f"Gao RL fit: alpha={fit['alpha']:.3f}, beta={fit['beta']:.3f}")
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
      ax.plot(grid, fits.gao_bon_curve(grid, fit["alpha"], fit["beta"]), ":", color=f"C{3 + i}", linewidth=1.4,
              label=f"Gao BoN fit: alpha={fit['alpha']:.3f}, beta={fit['beta']:.3f}")
  ax.axhline(0, color="gray", linewidth=0.8)
  plots.label_axes(ax, "sqrt(KL(pi || pi0)) (sqrt nats)", f"gold {gold_key} reward gain over initial policy",
                   "over-optimisation of the gold reward")
  plots.suptitle(fig, "Gold reward vs sqrt(KL)", "Gao et al. 2022; Bai et al. §4")
  return fig


def fig_best_of_n(bon: dict, fit: dict):
  """Score gain over n = 1 vs the best-of-n KL bound log n - (n-1)/n, for each scorer (cf. Fig 36)."""
  fig, (ax,) = plots.new_figure(width=4.8, height=3.6)
  kl = bon["kl_bound"]
  for i, (name, s) in enumerate(sorted(bon["scores"].items())):
    f = fit.get(name)
    base = f["base"] if f else s[0]
    ax.plot(kl, s - base, "o-", color=f"C{i}", label=name.replace("score_", "").replace("_", " "))
    if f is not None:
      grid = np.linspace(0, kl.max(), 100)
      ax.plot(grid, fits.gao_bon_curve(np.sqrt(grid), f["alpha"], f["beta"]), ":", color=f"C{i}", linewidth=1.0)
  ax.plot([], [], ":", color="gray", label="Gao BoN fit d(alpha - beta d)")
  top = ax.secondary_xaxis("top")
  top.set_ticks(kl[1:] if len(kl) > 1 else kl, labels=[f"{int(n)}" for n in (bon["n"][1:] if len(kl) > 1 else bon["n"])])
  top.set_xlabel("n (samples per prompt)", fontsize=8)
  top.tick_params(labelsize=7)
  plots.label_axes(ax, "KL bound log n - (n-1)/n (nats)", "score gain over n = 1 (logits / gold units)")
  plots.suptitle(fig, "Best-of-n", "Bai et al. Fig 36")
  return fig


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
