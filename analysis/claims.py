"""The statistics the claims of analysis/criteria.toml are judged by, from the analysis outputs.

Each statistic is `fn(inputs, main_run, **params)`: `inputs` holds the loaded analysis files
({"pm_scaling": pm_analysis.json, "pm_mix": pm_analysis.json, "rl": rl_analysis.json,
"rl_gold": rl_gold_analysis.json, ...: analysis.report.ANALYSIS_FILES}, any of them None),
`main_run` names the main PPO run. It returns

    {"values": {name: number}, "counts": {requirement: number}, "per_seed": {seed: number},
     "detail": words}                       or    {"not_tested": reason}

`values` always has "value" (the headline number) and, where there is one, its 95% interval over
independent seeds as "ci_low" / "ci_high" (analysis.fits.seed_interval); `counts` are what the
criteria's `requires` are checked against (seeds, sizes, RL samples, ...). Register a new
statistic with `@statistic("name")` and name it in criteria.toml.
"""

from __future__ import annotations

import collections
import math
import os
from typing import Callable

import numpy as np

from analysis import fits
from analysis import pm as pm_lib
from analysis.runs import split_seed

STATISTICS: dict[str, Callable[..., dict]] = {}


def statistic(name: str):
  """Register `fn` as the statistic `name` of criteria.toml."""
  def register(fn):
    STATISTICS[name] = fn
    return fn
  return register


interval_values = fits.interval_values


def _result(values: dict, counts: dict, per_seed: dict, detail: str) -> dict:
  return {"values": values, "counts": counts, "per_seed": {str(k): v for k, v in per_seed.items()},
          "detail": detail}


# ----------------------------------------------------------------------------- PM statistics


def grid_records(pm: dict | None) -> list[dict] | None:
  """The records of the main scaling family of a pm_analysis.json (None when no PM runs)."""
  if not pm or not pm.get("n_runs"):
    return None
  family = (pm.get("scaling") or {}).get("family")
  return [r for r in pm["table"]["records"] if pm_lib.family_of(r) == family]


def _by_seed(records) -> dict[int, list[dict]]:
  out = collections.defaultdict(list)
  for r in records:
    out[r["seed"]].append(r)
  return dict(sorted(out.items()))


def per_seed_law(records) -> dict[int, dict]:
  """{seed: loglinear_fit of acc = a + b ln P + c ln D on that seed's runs} (seeds whose runs
  cannot fit three coefficients are left out)."""
  out = {}
  for seed, rs in _by_seed(records).items():
    try:
      out[seed] = fits.loglinear_fit([r["accuracy"] for r in rs], [r["params"] for r in rs],
                                     [r["num_train"] for r in rs])
    except ValueError:
      continue
  return out


def _grid_counts(records, n_seeds: int) -> dict:
  return {"seeds": n_seeds, "sizes": len({r["params"] for r in records}),
          "data_sizes": len({r["num_train"] for r in records})}


_NO_PM = {"not_tested": "the pm_scaling stage has no finished PM runs"}


@statistic("pm_law_coefficient")
def pm_law_coefficient(inputs, main_run=None, coefficient: str = "b") -> dict:
  """b (per e-fold of P) or c (per e-fold of D) of each seed's fit acc = a + b ln P + c ln D."""
  records = grid_records(inputs.get("pm_scaling"))
  if not records:
    return _NO_PM
  law = per_seed_law(records)
  per_seed = {s: f[coefficient] for s, f in law.items()}
  si = fits.seed_interval(per_seed.values())
  return _result(interval_values(si), _grid_counts(records, len(law)), per_seed,
                 f"{coefficient} per e-fold, one fit per PM seed over {len(records)} runs")


def _cell_means(records) -> tuple[list, list, list]:
  cells = collections.defaultdict(list)
  for r in records:
    cells[(r["params"], r["num_train"])].append(r["accuracy"])
  keys = sorted(cells)
  return [float(np.mean(cells[k])) for k in keys], [k[0] for k in keys], [k[1] for k in keys]


@statistic("pm_law_r2")
def pm_law_r2(inputs, main_run=None) -> dict:
  """R^2 of acc = a + b ln P + c ln D fitted to the seed means of the (P, D) cells, beside the
  per-seed intervals of b and c; its interval is the stored seed bootstrap of that R^2."""
  pm = inputs.get("pm_scaling")
  records = grid_records(pm)
  if not records:
    return _NO_PM
  law = per_seed_law(records)
  values = {"value": None, "ci_low": None, "ci_high": None}
  try:
    values["value"] = fits.loglinear_fit(*_cell_means(records))["r2"]
  except ValueError:
    pass
  boot = (((pm.get("scaling") or {}).get("metrics") or {}).get("accuracy") or {}).get("ci95", {})
  if boot.get("r2_cells"):
    values["ci_low"], values["ci_high"] = boot["r2_cells"]
  for name in "bc":
    values.update(interval_values(fits.seed_interval([f[name] for f in law.values()]), name))
  return _result(values, _grid_counts(records, len(law)), {s: f["r2"] for s, f in law.items()},
                 "R^2 over the cell means; per_seed: each seed's own R^2")


@statistic("pm_upper_half_slope")
def pm_upper_half_slope(inputs, main_run=None, min_params: int = 20_000) -> dict:
  """b = d acc / d ln P over the sizes >= min_params, one straight-line fit per seed, at the
  largest ("value") and second-largest ("second") data size."""
  records = grid_records(inputs.get("pm_scaling"))
  if not records:
    return _NO_PM
  upper = [r for r in records if r["params"] >= min_params]
  data_sizes = sorted({r["num_train"] for r in upper}, reverse=True)[:2]
  values, n_seeds, per_seed = {}, [], {}
  for prefix, d in zip(("", "second"), data_sizes):
    slopes = {}
    for seed, rs in _by_seed(r for r in upper if r["num_train"] == d).items():
      if len({r["params"] for r in rs}) >= 2:
        slopes[seed] = fits.linear_fit(np.log([r["params"] for r in rs]), [r["accuracy"] for r in rs])["slope"]
    values.update(interval_values(fits.seed_interval(slopes.values()), prefix))
    values[f"{prefix or 'value'}_data_size"] = d
    n_seeds.append(len(slopes))
    per_seed.update({f"{d}/{s}": v for s, v in slopes.items()})
  counts = {"seeds": min(n_seeds) if n_seeds else 0, "sizes": len({r["params"] for r in upper}),
            "data_sizes": len(data_sizes)}
  return _result(values, counts, per_seed,
                 f"sizes with >= {min_params} non-embedding parameters; value: the largest data size")


def _top_cell(records) -> list[dict]:
  top = max(r["params"] for r in records)
  top_d = max(r["num_train"] for r in records if r["params"] == top)
  return [r for r in records if r["params"] == top and r["num_train"] == top_d]


@statistic("pm_baseline_margin")
def pm_baseline_margin(inputs, main_run=None) -> dict:
  """margin = accuracy - max(shorter reply, distinct tokens, bag of words) of each seed of the
  largest PM at its largest data size, beside the mean accuracy, baselines and Bayes ceiling."""
  records = grid_records(inputs.get("pm_scaling"))
  if not records:
    return _NO_PM
  cell = _top_cell(records)
  margins, best = {}, []
  for r in cell:
    present = [r.get(b) for b in pm_lib.BASELINES if r.get(b) is not None]
    if present:
      margins[r["seed"]] = r["accuracy"] - max(present)
      best.append(max(present))
  values = interval_values(fits.seed_interval(margins.values()))
  values["accuracy"] = float(np.mean([r["accuracy"] for r in cell]))
  ceilings = [r["bayes_ceiling"] for r in cell if r.get("bayes_ceiling") is not None]
  values["bayes_ceiling"] = float(np.mean(ceilings)) if ceilings else None
  values["best_baseline"] = float(np.mean(best)) if best else None
  for b in pm_lib.BASELINES:
    xs = [r[b] for r in cell if r.get(b) is not None]
    values[b] = float(np.mean(xs)) if xs else None
  counts = {"seeds": len(margins),
            "baselines": min(sum(r.get(b) is not None for b in pm_lib.BASELINES) for r in cell)}
  return _result(values, counts, margins,
                 f"{cell[0]['model_size']} PM at {cell[0]['num_train']} pairs")


@statistic("pm_ece")
def pm_ece(inputs, main_run=None) -> dict:
  """The expected calibration error of each seed's largest PM (pm_analysis.json calibration.by_run)."""
  pm = inputs.get("pm_scaling")
  if not grid_records(pm):
    return _NO_PM
  by_run = ((pm or {}).get("calibration") or {}).get("by_run")
  if not by_run:
    return {"not_tested": "no per-run calibration (eval_scores.npz of the largest PM)"}
  per_seed = {r["seed"]: r["ece"] for r in by_run}
  return _result(interval_values(fits.seed_interval(per_seed.values())), {"seeds": len(per_seed)},
                 per_seed, f"ECE of {len(by_run)} run(s) of the largest PM")


_mix_group = pm_lib.mix_group


def _tension_of_seed(rs) -> dict | None:
  fracs = sorted({r["helpful_fraction"] for r in rs})
  lo, hi = fracs[0], fracs[-1]
  mids = [r for r in rs if lo < r["helpful_fraction"] < hi]

  def mean_of(rows, prefix):
    xs = [pm_lib._group_accuracy(r, prefix) for r in rows]
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None

  pairs = [(pm_lib._group_accuracy(r, "helpful"), pm_lib._group_accuracy(r, "harmless")) for r in mids]
  worst = [min(p) for p in pairs if None not in p]
  out = {"helpful_only_on_harmless": mean_of([r for r in rs if r["helpful_fraction"] == hi], "harmless"),
         "harmless_only_on_helpful": mean_of([r for r in rs if r["helpful_fraction"] == lo], "helpful"),
         "mixed_worst": min(worst) if worst else None}
  return out if len(fracs) >= 3 and None not in out.values() else None


@statistic("mix_tension")
def mix_tension(inputs, main_run=None) -> dict:
  """Per seed of the mix sweep: the helpful-only PM's harmless accuracy ("value"), the
  harmless-only PM's helpful accuracy, and the worst accuracy of an intermediate mix."""
  mix = inputs.get("pm_mix")
  group = _mix_group((mix or {}).get("table", {}).get("records", [])) if mix and mix.get("n_runs") else []
  if not group:
    return {"not_tested": "the pm_mix stage has no runs over helpful fractions"}
  per_seed = {s: t for s, rs in _by_seed(group).items() if (t := _tension_of_seed(rs))}
  values = {}
  for i, key in enumerate(("helpful_only_on_harmless", "harmless_only_on_helpful", "mixed_worst")):
    values.update(interval_values(fits.seed_interval(t[key] for t in per_seed.values()), "" if i == 0 else key))
  counts = {"seeds": len(per_seed), "fractions": len({r["helpful_fraction"] for r in group})}
  return _result(values, counts, {s: t["helpful_only_on_harmless"] for s, t in per_seed.items()},
                 f"{len(group)} runs at {group[0]['num_train']} pairs; value: helpful-only on harmless")


# ----------------------------------------------------------------------------- RL statistics


def run_config(entry: dict) -> tuple[str, int]:
  """(config name without the seed, seed) of an rl_analysis.json run entry."""
  config, seed = split_seed(entry["name"])
  return entry.get("config", config), entry.get("seed", seed if seed is not None else 0)


def main_runs(rl: dict | None, main_run: str | None) -> list[dict]:
  """The seeds of the main PPO config (the config whose name matches main_run without its seed;
  the first run's config when main_run is None or matches none)."""
  runs = (rl or {}).get("runs") or []
  if not runs:
    return []
  want = os.path.basename(split_seed(main_run)[0]) if main_run else None
  configs = [run_config(r)[0] for r in runs]
  chosen = next((c for c in configs if os.path.basename(c) == want), configs[0])
  return [r for r, c in zip(runs, configs) if c == chosen]


_NO_PPO = {"not_tested": "the ppo stage has no finished runs"}


def _min_samples(runs) -> float:
  return min(r["final_samples"] for r in runs) if runs else 0


@statistic("rl_sqrt_kl")
def rl_sqrt_kl(inputs, main_run=None) -> dict:
  """Per seed of the main config: R^2 ("value") and slope of train score = i + s sqrt(KL) over
  the first half of training."""
  runs = main_runs(inputs.get("rl"), main_run)
  if not runs:
    return _NO_PPO
  fitted = {run_config(r)[1]: f for r in runs if (f := r["score_vs_sqrt_kl"]["train"])}
  values = interval_values(fits.seed_interval(f["r2"] for f in fitted.values()))
  values.update(interval_values(fits.seed_interval(f["slope"] for f in fitted.values()), "slope"))
  return _result(values, {"seeds": len(fitted), "rl_samples": _min_samples(runs)},
                 {s: f["r2"] for s, f in fitted.items()}, f"{run_config(runs[0])[0]}: value is R^2")


@statistic("rl_divergence")
def rl_divergence(inputs, main_run=None) -> dict:
  """Per seed of the main config: the standardised gain gap against the test PM of the train
  PM's size, at the end ("value") and at 20% of training ("early")."""
  runs = main_runs(inputs.get("rl"), main_run)
  if not runs:
    return _NO_PPO
  end, early, test_name = {}, {}, None
  for r in runs:
    size = (r.get("train_pm") or {}).get("model_size")
    same = [n for n, t in r["robustness"]["tests"].items() if size is not None and t.get("model_size") == size]
    gaps = (r.get("gain_gaps_std") or {}).get(same[0]) if same else None
    if gaps:
      test_name = same[0]
      end[run_config(r)[1]], early[run_config(r)[1]] = gaps["end"], gaps["early"]
  values = interval_values(fits.seed_interval(end.values()))
  values.update(interval_values(fits.seed_interval(early.values()), "early"))
  counts = {"seeds": len(end), "rl_samples": _min_samples(runs), "same_size_test_pm": int(bool(end))}
  return _result(values, counts, end, f"{run_config(runs[0])[0]} vs {test_name}; value: end gap "
                 "(std units of the initial policy's scores)")


@statistic("rl_robustness")
def rl_robustness(inputs, main_run=None) -> dict:
  """Per seed, over the runs of the main policy size: slope of the standardised test-PM gain in
  ln(test-PM params) (gain = intercept + slope ln P_test, one fit per seed)."""
  main = main_runs(inputs.get("rl"), main_run)
  if not main:
    return _NO_PPO
  policy = (main[0].get("policy") or {}).get("model_size")
  runs = [r for r in inputs["rl"]["runs"] if (r.get("policy") or {}).get("model_size") == policy]
  points = collections.defaultdict(list)
  for r in runs:
    for t in r["robustness"]["tests"].values():
      if t.get("params") and t.get("gain_std") is not None and math.isfinite(t["gain_std"]):
        points[run_config(r)[1]].append((math.log(t["params"]), t["gain_std"]))
  slopes = {s: fits.linear_fit(*np.array(p).T)["slope"] for s, p in points.items() if len({x for x, _ in p}) >= 2}
  sizes = {t["params"] for r in runs for t in r["robustness"]["tests"].values() if t.get("params")}
  counts = {"seeds": len(slopes), "rl_samples": _min_samples(runs), "test_pm_sizes": len(sizes)}
  return _result(interval_values(fits.seed_interval(slopes.values())), counts, slopes,
                 f"policy {policy}, {len(runs)} runs; gain in std units per e-fold of test-PM parameters")


def _by_file_config(entries) -> dict[str, dict[int, dict]]:
  """{config: {seed: entry}} of bon.json / elo.json entries (named by their run directory)."""
  out = collections.defaultdict(dict)
  for e in entries:
    config, seed = split_seed(os.path.basename(os.path.dirname(e["path"])))
    out[config][seed if seed is not None else 0] = e
  return out


def _largest_group(entries) -> tuple[str, dict[int, dict]] | None:
  groups = _by_file_config(entries)
  return max(groups.items(), key=lambda kv: (len(kv[1]), kv[0])) if groups else None


@statistic("bon_gold_gain")
def bon_gold_gain(inputs, main_run=None) -> dict:
  """Per best-of-n seed: gold hh reward of the best of n_max minus that of n = 1."""
  group = _largest_group((inputs.get("rl") or {}).get("best_of_n") or [])
  if group is None:
    return {"not_tested": "the best_of_n stage did not run"}
  config, seeds = group
  gains = {s: e["scores"]["gold_hh"][-1] - e["scores"]["gold_hh"][0] for s, e in seeds.items()
           if len(e["scores"].get("gold_hh") or []) >= 2}
  counts = {"seeds": len(gains), "n_max": min(e["n"][-1] for e in seeds.values()),
            "gold": int(len(gains) == len(seeds) and bool(gains))}
  return _result(interval_values(fits.seed_interval(gains.values())), counts, gains,
                 f"{config}: gold gain from n = 1 to n max")


@statistic("elo_gain")
def elo_gain(inputs, main_run=None) -> dict:
  """Per seed of the main run's Elo: the gold Elo at the snapshot of the seed-mean gold peak
  ("value"), and the mean over later snapshots of PM-predicted minus gold Elo ("overestimate")."""
  group = _largest_group((inputs.get("rl") or {}).get("elo") or [])
  if group is None:
    return {"not_tested": "the elo stage did not run"}
  config, seeds = group
  golds = {s: np.asarray(e["elo_gold"], float) for s, e in seeds.items() if e.get("elo_gold") is not None}
  n = min((len(g) for g in golds.values()), default=0)
  counts = {"seeds": len(golds), "snapshots": n, "gold": int(bool(golds))}
  if n < 2:
    return _result({"value": None}, counts, {}, f"{config}: fewer than 2 snapshots")
  peak = int(np.argmax(np.mean([g[:n] for g in golds.values()], axis=0)))
  at_peak = {s: float(g[peak]) for s, g in golds.items()}
  over = {s: float(np.mean(np.asarray(seeds[s]["elo_pm_predicted"], float)[1:n] - g[1:n]))
          for s, g in golds.items() if seeds[s].get("elo_pm_predicted") is not None}
  values = interval_values(fits.seed_interval(at_peak.values()))
  values.update(interval_values(fits.seed_interval(over.values()), "overestimate"))
  values["peak_at_samples"] = float(seeds[next(iter(golds))]["samples"][peak])
  return _result(values, counts, at_peak, f"{config}: gold Elo at snapshot {peak}")


def compute(spec: dict, inputs: dict, main_run: str | None) -> dict:
  """The statistic of one criteria.toml claim (KeyError naming an unknown statistic)."""
  if spec["statistic"] not in STATISTICS:
    raise KeyError(f"criteria claim {spec['id']!r}: unknown statistic {spec['statistic']!r} "
                   f"(known: {sorted(STATISTICS)})")
  return STATISTICS[spec["statistic"]](inputs, main_run, **spec.get("params", {}))


def _register_stage_statistics() -> None:
  """The statistics of the ood, pm_lambda, policy_eval, online and held-out gold analyses live
  beside them."""
  from analysis import gao, online, ood, pm_weighting, policy_evals, rl_gold
  STATISTICS.update({"gao_beta_difference": gao.gao_beta_vs_pm_size_statistic,
                     "ood_middle_gap": ood.middle_gap_statistic,
                     "ood_exposure_gain": ood.exposure_gain_statistic,
                     "lambda_slope_difference": pm_weighting.lambda_slope_statistic,
                     "mix_spread_difference": pm_weighting.mix_sensitivity_statistic,
                     "alignment_tax_difference": policy_evals.alignment_tax_statistic,
                     "cd_gold_gain": policy_evals.cd_gold_statistic,
                     "online_vs_static": online.online_vs_static_statistic,
                     "rl_gold_gain": rl_gold.gold_improves_statistic,
                     "ensemble_gold_difference": rl_gold.ensemble_statistic})


_register_stage_statistics()

