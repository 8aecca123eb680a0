"""Gao et al. (2022) over-optimisation coefficients as functions of the train-PM size.

The PPO robustness family (experiments/ppo.py: the main policy size against the train PM of
every size, each config with every PPO seed; run names policy-<P>-pm-<S>-s<k>) gives, per
train-PM size S and PPO seed k, a gold-vs-sqrt(KL) curve. analysis.rl fits each run with the
Gao RL form (`gold_gao_rl` of rl_analysis.json)

    gold(d) - gold(0) = d (alpha - beta ln d),    d = sqrt(KL(pi || pi0)),

so alpha is the initial gold slope and beta the over-optimisation (the peak is at
d* = exp(alpha / beta - 1)). Gao et al. find beta falls as the reward model grows (a larger RM
is exploited later). The best-of-n form gold(d) - gold(0) = d (alpha - beta d) is fitted by
analysis.rl to best-of-n runs (`gao_bon`); best-of-n (experiments/best_of_n.py) ranks by the
largest train PM only, so that form has one PM size and is shown as a single point, not a
function of size.

Table (`coefficient_table`): per train-PM size, alpha and beta of each form as a 95% t interval
over PPO seeds (analysis.fits.seed_interval). Statistic (`gao_beta_vs_pm_size_statistic`,
analysis.claims format): per PPO seed k,

    diff_k = beta_k(largest train PM) - beta_k(smallest train PM)     (paired by seed),

value = mean_k diff_k with its t interval; alpha_diff the same for alpha; beta_slope the
per-seed slope of beta in ln(train-PM params) over every size. Analysis reads the
rl_analysis.json dict only (it never imports hh_jax).
"""

from __future__ import annotations

import collections
import math
import os
import re

import numpy as np

from analysis import fits, plots
from analysis.runs import read_json, split_seed, write_json

JSON_NAME = "gao_analysis.json"
_ROBUSTNESS = re.compile(r"^policy-(?P<policy>[^-/]+)-pm-(?P<pm>[^-/]+)$")


# ----------------------------------------------------------------------------- the family


def parse_config(config: str) -> tuple[str, str, str] | None:
  """'ppo/policy-100k-pm-6k' -> ('ppo', '100k', '6k'): (directory, policy size, train-PM size) of
  a robustness config; None for any other run (distilled, ensemble, pretrained policies)."""
  m = _ROBUSTNESS.match(os.path.basename(config))
  return (os.path.dirname(config), m["policy"], m["pm"]) if m else None


def _config_of(entry: dict) -> str:
  return entry.get("config") or split_seed(entry["name"])[0]


def robustness_runs(rl: dict | None, main_run: str | None = None) -> list[dict]:
  """The rl_analysis.json run entries of the robustness family: the configs policy-<P>-pm-<S>
  in the directory, and of the policy size, of the main run's config (main_run without its
  seed, matched by base name; of several, the least nested directory: a paper-faithful variant
  under the root is not the main run); without a match, the (directory, policy size) with the
  most train-PM sizes."""
  parsed = [(r, p) for r in (rl or {}).get("runs") or [] if (p := parse_config(_config_of(r)))]
  if not parsed:
    return []
  want = os.path.basename(split_seed(main_run)[0]) if main_run else None
  matches = [p for r, p in parsed if os.path.basename(_config_of(r)) == want]
  main = min(matches, key=lambda p: p[0].count("/") + bool(p[0])) if matches else None
  if main is None:
    sizes = collections.defaultdict(set)
    for _, (d, policy, pm) in parsed:
      sizes[(d, policy)].add(pm)
    main = max(sizes, key=lambda k: len(sizes[k]))
  return [r for r, p in parsed if p[:2] == tuple(main[:2])]


def _seed(entry: dict) -> int:
  seed = entry.get("seed")
  return int(seed) if seed is not None else (split_seed(entry["name"])[1] or 0)


def per_seed_coefficients(runs, gold: str = "hh") -> dict[tuple, dict[int, dict]]:
  """{(params, model_size): {seed: {"alpha", "beta"}}} of the Gao RL fits of `gold` (runs whose
  fit is missing, or whose train PM has no parameter count, are left out)."""
  out: dict[tuple, dict[int, dict]] = collections.defaultdict(dict)
  for r in runs:
    pm = r.get("train_pm") or {}
    fit = (r.get("gold_gao_rl") or {}).get(gold)
    if fit and pm.get("params") and all(_finite(fit.get(k)) for k in ("alpha", "beta")):
      key = (int(pm["params"]), pm.get("model_size") or parse_config(_config_of(r))[2])
      out[key][_seed(r)] = {"alpha": float(fit["alpha"]), "beta": float(fit["beta"])}
  return dict(sorted(out.items()))


def _finite(x) -> bool:
  return x is not None and math.isfinite(x)


def bon_coefficients(rl: dict | None, policy: str | None, gold: str = "hh") -> dict[str, dict[int, dict]]:
  """{train-PM size: {seed: {"alpha", "beta"}}} of the best-of-n form fits of gold_<gold>, from
  best-of-n runs named policy-<policy>-pm-<S>-s<k> (the directory of their bon.json), of the
  least nested stage directory that has any (not a paper-faithful variant below the root)."""
  stages: dict[str, dict] = collections.defaultdict(lambda: collections.defaultdict(dict))
  for b in (rl or {}).get("best_of_n") or []:
    run_dir = os.path.dirname(b.get("path", ""))
    config, seed = split_seed(os.path.basename(run_dir))
    parsed = parse_config(config)
    fit = (b.get("gao_bon") or {}).get(f"gold_{gold}")
    if parsed and parsed[1] == policy and fit and all(_finite(fit.get(k)) for k in ("alpha", "beta")):
      stages[os.path.dirname(run_dir)][parsed[2]][seed if seed is not None else 0] = {
          "alpha": float(fit["alpha"]), "beta": float(fit["beta"])}
  return dict(stages[min(stages, key=lambda d: (d.count(os.sep), d))]) if stages else {}


def _form_row(by_seed: dict[int, dict]) -> dict:
  """alpha and beta of one form over seeds: {"alpha": seed_interval, "beta": ..., "per_seed"}."""
  return {"alpha": fits.seed_interval(v["alpha"] for v in by_seed.values()),
          "beta": fits.seed_interval(v["beta"] for v in by_seed.values()),
          "per_seed": {str(s): v for s, v in sorted(by_seed.items())}}


def coefficient_table(rl: dict | None, main_run: str | None = None, gold: str = "hh") -> list[dict]:
  """Per train-PM size (ascending params): {"params", "model_size", "seeds", "rl": _form_row,
  "bon": _form_row or None (best-of-n exists for that PM size)}."""
  runs = robustness_runs(rl, main_run)
  if not runs:
    return []
  policy = parse_config(_config_of(runs[0]))[1]
  bon = bon_coefficients(rl, policy, gold)
  return [{"params": params, "model_size": size, "seeds": sorted(by_seed),
           "rl": _form_row(by_seed), "bon": _form_row(bon[size]) if size in bon else None}
          for (params, size), by_seed in per_seed_coefficients(runs, gold).items()]


# ----------------------------------------------------------------------------- the statistic


def _slopes(table: list[dict], coefficient: str) -> dict[str, float]:
  """Per seed: the slope of `coefficient` in ln(train-PM params) over every size with that seed."""
  points = collections.defaultdict(list)
  for row in table:
    for seed, v in row["rl"]["per_seed"].items():
      points[seed].append((math.log(row["params"]), v[coefficient]))
  return {s: fits.linear_fit(*np.array(p).T)["slope"] for s, p in points.items()
          if len({x for x, _ in p}) >= 2}


def gao_beta_vs_pm_size_statistic(inputs: dict, main_run=None, gold: str = "hh") -> dict:
  """analysis.claims statistic gao_beta_difference (module docstring): beta of the largest
  minus the smallest train PM, paired by PPO seed ("value"), the same for alpha ("alpha_diff"),
  and the per-seed slope of beta in ln(params) ("beta_slope")."""
  table = coefficient_table(inputs.get("rl"), main_run, gold)
  if len(table) < 2:
    return {"not_tested": f"the PPO robustness family has {len(table)} train-PM size(s) with a "
                          f"Gao fit of gold {gold}; the claim needs 2"}
  small, large = table[0]["rl"]["per_seed"], table[-1]["rl"]["per_seed"]
  paired = sorted(set(small) & set(large), key=int)
  if len(paired) < 2:
    return {"not_tested": f"{len(paired)} PPO seed(s) ran both the smallest and the largest train "
                          "PM; an interval over seeds needs 2"}
  diff = {s: large[s]["beta"] - small[s]["beta"] for s in paired}
  values = {**fits.seed_values(diff.values()),
            **fits.seed_values([large[s]["alpha"] - small[s]["alpha"] for s in paired], "alpha_diff"),
            **fits.seed_values(_slopes(table, "beta").values(), "beta_slope")}
  for name, row in (("small", table[0]), ("large", table[-1])):
    values.update({f"{c}_{name}": row["rl"][c]["mean"] for c in ("alpha", "beta")})
  runs = robustness_runs(inputs.get("rl"), main_run)
  counts = {"seeds": len(paired), "sizes": len(table),
            "rl_samples": min(r.get("final_samples", 0) for r in runs)}
  return {"values": values, "counts": counts, "per_seed": {str(s): v for s, v in diff.items()},
          "detail": (f"gold {gold}, Gao RL form d (alpha - beta ln d): beta of the "
                     f"{table[-1]['model_size']} train PM minus the {table[0]['model_size']} "
                     "one, paired by PPO seed")}


# ----------------------------------------------------------------------------- figure and driver


def _sd(si: dict) -> float:
  return si["sd"] if si["sd"] is not None else np.nan


def fig_gao_coefficients(table: list[dict], gold: str = "hh"):
  """alpha and beta vs train-PM parameters (log x): the RL-form seed mean +- 1 sd over PPO seeds,
  each seed's value, and the best-of-n form where it exists (cf. Gao et al. 2022 Fig 3)."""
  fig, axes = plots.new_figure(ncols=2, width=4.0)
  x = [r["params"] for r in table]
  for ax, c in zip(axes, ("alpha", "beta")):
    plots.errorbar_line(ax, x, [r["rl"][c]["mean"] for r in table], [_sd(r["rl"][c]) for r in table],
                        "RL form d(α − β ln d): seed mean ± sd", "C0")
    seeds = [(r["params"], v[c]) for r in table for v in r["rl"]["per_seed"].values()]
    ax.scatter(*zip(*seeds), s=10, color="C0", alpha=0.45, label="RL form: one PPO seed")
    bon = [r for r in table if r["bon"]]
    if bon:
      ax.errorbar([r["params"] for r in bon], [r["bon"][c]["mean"] for r in bon],
                  yerr=[np.nan_to_num(_sd(r["bon"][c])) for r in bon], fmt="s", color="C3",
                  capsize=3, label="best-of-n form d(α − β d): seed mean ± sd")
    ax.axhline(0.0, color="0.5", linewidth=0.7)
    plots.log_ticks(ax, x)
    symbol, title = ("α", "α: the initial gold slope") if c == "alpha" else ("β", "β: over-optimisation")
    plots.label_axes(ax, "train-PM parameters (non-embedding)", f"{symbol} (gold {gold} per √nat)",
                     title, legend=False)
  plots.figure_legend(fig, axes, ncol=2)
  plots.suptitle(fig, f"Over-optimisation coefficients vs PM size (gold {gold})", "Gao et al. 2022 Fig 3")
  return fig


def analyze_gao(rl: dict | None, main_run: str | None = None) -> tuple[dict, dict, list[str]]:
  """(result, {stem: Figure}, notes): the coefficient table of every gold key, the statistic
  (gold hh) and the figure of gold hh."""
  golds = sorted({k for r in robustness_runs(rl, main_run) for k in (r.get("gold_gao_rl") or {})})
  tables = {g: coefficient_table(rl, main_run, g) for g in golds}
  result = {"tables": tables, "statistic": gao_beta_vs_pm_size_statistic({"rl": rl}, main_run),
            "bon_per_pm_size": any(r["bon"] for t in tables.values() for r in t)}
  notes = [] if result["bon_per_pm_size"] else [
      "no best-of-n runs of the robustness policy: the best-of-n form is not shown"]
  hh = tables.get("hh") or []
  if len(hh) >= 1:
    figures = {"gao_coefficients_vs_pm_size": fig_gao_coefficients(hh)}
  else:
    figures, notes = {}, notes + ["no PPO robustness runs with a gold hh fit: figure skipped"]
  return result, figures, notes


def run_gao(rl_analysis_json_path: str, out_dir: str, main_run: str | None = None) -> dict:
  """analyze_gao of an rl_analysis.json (analysis.rl); writes <out_dir>/JSON_NAME and the figure;
  returns {"result", "notes", "files"}. A missing file is a note, not an error."""
  rl = read_json(rl_analysis_json_path) if os.path.exists(rl_analysis_json_path) else None
  result, figures, notes = analyze_gao(rl, main_run)
  if rl is None:
    notes.insert(0, f"{rl_analysis_json_path} not found: the RL analysis has not run")
  os.makedirs(out_dir, exist_ok=True)
  files = [p for stem, fig in figures.items() for p in plots.save(fig, out_dir, stem)]
  path = os.path.join(out_dir, JSON_NAME)
  write_json(path, {**result, "notes": notes})
  return {"result": result, "notes": notes, "files": files + [path]}
