"""RLHF analysis: PM score vs sqrt(KL), train vs test PMs (robustness), over-optimisation of the
gold reward, best-of-n and Elo (paper Figs 4, 13, 15, 33, 36; Gao et al. 2022).

Reads PPO run directories (metrics.jsonl, pms.json), bon.json and elo.json files; fits with
`analysis.fits`. Returned dicts are JSON-able.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from analysis import fits, plots
from analysis.runs import Run, RunFileError, read_json


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
  return {
      "name": run.name, "dir": run.dir,
      "policy": pms.get("policy", {"name": None, "model_size": None, "params": None}),
      "train_pm": pms.get("train", {"name": None, "model_size": None, "params": None}),
      "tests": {n: tests[n] for n in test_names},
      "step": step, "samples": samples, "kl": kl, "sqrt_kl": sqrt_kl,
      "score_train": _column(rows, "ppo/score_train"),
      "score_test": {n: _column(rows, f"ppo/score_test/{n}") for n in test_names},
      "gold": {k: _column(rows, f"gold/{k}") for k in gold_keys},
  }


def rl_curves(runs: Sequence[Run]) -> list[dict[str, Any]]:
  """rl_curve for every PPO run, ordered by policy size then train-PM size then name."""
  curves = [rl_curve(r) for r in runs if r.kind == "ppo"]
  return sorted(curves, key=lambda c: (c["policy"].get("params") or 0, c["train_pm"].get("params") or 0, c["name"]))


def run_label(curve: dict) -> str:
  return f"policy {curve['policy'].get('model_size')}, PM {curve['train_pm'].get('model_size')}"


# ----------------------------------------------------------------------------- fits


def first_half(n: int, fraction: float = 0.5) -> int:
  """Iterations in the first `fraction` of a run (at least 3, when there are 3)."""
  return min(n, max(3, int(math.ceil(n * fraction))))


def score_kl_fit(sqrt_kl, score, fraction: float = 0.5) -> dict[str, float] | None:
  """score = intercept + slope sqrt(KL) over the first `fraction` of iterations (paper §4: linear in sqrt KL).

  Non-finite points are dropped; None if fewer than 3 points or sqrt(KL) does not vary.
  """
  k = first_half(len(sqrt_kl), fraction)
  x, y = np.asarray(sqrt_kl[:k]), np.asarray(score[:k])
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 3 or np.ptp(x[keep]) == 0:
    return None
  return fits.linear_fit(x[keep], y[keep])


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


def robustness(curve: dict, budget: float | None = None) -> dict[str, Any]:
  """Test-PM scores at a fixed RL sample budget, and the train-test gap at the start and at the budget.

  gain = score(budget) - score(first iteration): subtracting each PM's score of the initial
  policy removes its arbitrary offset (paper App B.2 mean-removes scores when comparing PMs).
  gap = score_train - score_test (raw) and gain_gap = train gain - test gain (over-optimisation).
  """
  i = budget_index(curve["samples"], budget)
  train = curve["score_train"]
  tests = {}
  for name, s in curve["score_test"].items():
    tests[name] = {
        "model_size": curve["tests"][name].get("model_size"), "params": curve["tests"][name].get("params"),
        "score": float(s[i]), "gain": float(s[i] - s[0]),
        "gap_start": float(train[0] - s[0]), "gap_end": float(train[i] - s[i]),
        "gain_gap": float((train[i] - train[0]) - (s[i] - s[0])),
    }
  return {"budget": budget, "iteration_index": i, "samples": float(curve["samples"][i]),
          "sqrt_kl": float(curve["sqrt_kl"][i]), "train_score": float(train[i]),
          "train_gain": float(train[i] - train[0]), "tests": tests}


def run_fits(curve: dict, budget: float | None = None, fraction: float = 0.5) -> dict[str, Any]:
  """Every fitted number for one PPO run."""
  return {
      "name": curve["name"], "policy": curve["policy"], "train_pm": curve["train_pm"],
      "n_iterations": len(curve["step"]), "final_samples": float(curve["samples"][-1]),
      "final_sqrt_kl": float(curve["sqrt_kl"][-1]),
      "score_vs_sqrt_kl": {"fraction": fraction, "train": score_kl_fit(curve["sqrt_kl"], curve["score_train"], fraction),
                           "test": {n: score_kl_fit(curve["sqrt_kl"], s, fraction)
                                    for n, s in curve["score_test"].items()}},
      "gold_gao_rl": {k: gold_gao_fit(curve["sqrt_kl"], g) for k, g in curve["gold"].items()},
      "robustness": robustness(curve, budget),
  }


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


# ----------------------------------------------------------------------------- figures


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
      k = first_half(len(c["sqrt_kl"]), res["score_vs_sqrt_kl"]["fraction"])
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


# ----------------------------------------------------------------------------- driver


def _jsonable_bon(bon: dict) -> dict:
  return {"path": bon["path"], "n": bon["n"].tolist(), "kl_bound": bon["kl_bound"].tolist(),
          "scores": {k: v.tolist() for k, v in bon["scores"].items()}, "gold_hh_base": bon["gold_hh_base"]}


def analyze_rl(runs: Sequence[Run], bon_paths: Sequence[str] = (), elo_paths: Sequence[str] = (),
               budget: float | None = None, fraction: float = 0.5) -> tuple[dict, dict, list[str]]:
  """Every RL number and figure: (result JSON dict, {stem: Figure}, notes about skipped pieces)."""
  curves = rl_curves(runs)
  notes: list[str] = []
  results = [run_fits(c, budget, fraction) for c in curves]
  bons = [load_bon(p) for p in bon_paths]
  bon_results = [bon_fits(b) for b in bons]
  elos = [load_elo(p) for p in elo_paths]
  out = {"n_runs": len(curves), "budget": budget, "runs": results,
         "best_of_n": [{**_jsonable_bon(b), "gao_bon": r} for b, r in zip(bons, bon_results)],
         "elo": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in e.items()} for e in elos]}
  figures = {}
  if curves:
    figures["rl_score_vs_sqrt_kl"] = fig_score_vs_sqrt_kl(curves, results)
    if any(c["score_test"] for c in curves):
      figures["rl_train_vs_test"] = fig_train_vs_test(curves)
    else:
      notes.append("no test PMs in any PPO run: skipped train vs test (Fig 4 left)")
    if any(t["params"] for r in results for t in r["robustness"]["tests"].values()):
      figures["rl_robustness"] = fig_robustness(curves, results, budget)
    else:
      notes.append("no test PMs with sizes (pms.json): skipped robustness (Fig 33)")
  else:
    notes.append("no finished PPO runs: skipped the PPO figures (Fig 4, 13, 33)")
  if any("hh" in c["gold"] for c in curves) or any("gold_hh" in b["scores"] for b in bons):
    figures["rl_gold_vs_sqrt_kl"] = fig_gold_vs_sqrt_kl(curves, results, bons, bon_results)
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
  return out, figures, notes


def summary_lines(result: dict) -> list[str]:
  lines = [f"RL: {result['n_runs']} PPO runs, {len(result['best_of_n'])} best-of-n, {len(result['elo'])} Elo files"]
  for r in result["runs"]:
    f = r["score_vs_sqrt_kl"]["train"]
    fit_txt = f"slope={f['slope']:.3f} R^2={f['r2']:.3f}" if f else "no fit"
    rob = r["robustness"]
    gaps = ", ".join(f"{n}: {t['gap_start']:+.2f} -> {t['gap_end']:+.2f}" for n, t in rob["tests"].items())
    lines.append(f"  {r['name']}: train score vs sqrt(KL) {fit_txt}; train-test gap {gaps or 'n/a'}")
    g = r["gold_gao_rl"].get("hh")
    if g:
      lines.append(f"    gold hh Gao RL: alpha={g['alpha']:.3f} beta={g['beta']:.3f} d_peak={g['d_peak']:.2f}")
  for b in result["best_of_n"]:
    g = b["gao_bon"].get("gold_hh")
    if g:
      lines.append(f"  best-of-n {b['path']}: gold Gao BoN alpha={g['alpha']:.3f} beta={g['beta']:.3f}")
  return lines
