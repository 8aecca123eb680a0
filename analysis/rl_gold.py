"""Held-out gold reward of PPO policies, from their snapshots (evals/step_XXXXXX.npz): does RLHF
improve the gold reward, helpfulness on helpful prompts and harmlessness on red-team prompts
(Bai et al. 2022 section 4, Fig 13), and does a reward ensemble of train PMs over-optimise less
than one PM (Coste et al. 2023)?

A PPO run's snapshot at step s holds the policy's replies to the run's fixed held-out eval
prompts after s iterations, with the gold rewards and each prompt's task family (`task`).
Per run, one record: per snapshot

    helpful        mean gold helpful reward on the helpful prompts (every task but "harmful_request")
    harmless       mean gold harmless reward on the red-team prompts (task "harmful_request")
    hh             mean gold hh reward on every eval prompt
    reply_len      mean reply length in tokens (EOS included)
    train_gold_hh  the training rollouts' gold hh before it: the mean of metrics.jsonl's gold/hh
                   over the logged iterations t with (previous snapshot's step) < t <= s; none at
                   step 0, which no iteration precedes

A snapshot without `task` (written before snapshots stored it) has no helpful / harmless.

Statistics (analysis.claims format; intervals are t intervals over PPO seeds,
analysis.fits.seed_values):

    gold_improves_statistic  for every run config of the ppo stage and each PPO seed: the best
                             snapshot is the one of highest train_gold_hh (chosen without the
                             held-out prompts; ties: the earliest; step 0 is never chosen); the
                             gains are helpful(best) - helpful(step 0) and harmless(best) -
                             harmless(step 0). Per config the seed mean and interval of each
                             ("<config>:helpful", "<config>:harmless", and the reply lengths at
                             step 0 and at the best snapshot); value = the worst config's helpful
                             gain (ci_high: that config's), ci_low = the lowest helpful ci_low of
                             any config, harmless / harmless_ci_low the same for harmlessness.
    ensemble_statistic       per PPO seed and ensemble kind (mean, min) of the ppo_ensemble stage:
                             gold hh at the final snapshot of the ensemble run minus that of the
                             single-PM control (ens1) with the same seed; value = the kind of the
                             higher seed mean, with its interval; both kinds as "<kind>",
                             "<kind>_ci_low", "<kind>_ci_high".

Figure rl_gold_heldout: the main config's held-out gold helpful (helpful prompts), gold harmless
(red-team prompts) and mean reply length vs RL samples, seed mean with a +-1 sd band. The ppo and
ppo_ensemble stages are read from their own directories (`run_rl_gold`), so ensemble runs never
enter the ppo stage's fits. Analysis reads run files only (it never imports hh_jax).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Sequence

import numpy as np

from analysis import fits, plots
from analysis.runs import Run, discover, read_npz, split_seed, write_json

JSON_NAME = "rl_gold_analysis.json"
HARMFUL_TASK = "harmful_request"
KINDS = ("mean", "min")


# ----------------------------------------------------------------------------- records


def _mean(x) -> float | None:
  x = np.asarray(x, np.float64)
  return float(x.mean()) if x.size else None


def snapshot_summary(path: str) -> dict:
  """One evals/step_XXXXXX.npz as {step, samples, helpful, harmless, hh, reply_len, n_helpful,
  n_red_team, has_task, has_gold} (module docstring)."""
  arrays = read_npz(path, required=("step", "mask"))
  has_gold = all(f"gold_{k}" in arrays for k in ("helpful", "harmless", "hh"))
  has_task = "task" in arrays
  out = {"step": int(arrays["step"]), "samples": int(arrays["samples"]) if "samples" in arrays else None,
         "reply_len": _mean(arrays["mask"].sum(axis=1)), "hh": None, "helpful": None,
         "harmless": None, "n_helpful": None, "n_red_team": None, "has_task": has_task,
         "has_gold": has_gold}
  if has_gold:
    out["hh"] = _mean(arrays["gold_hh"])
  if has_task:
    red = arrays["task"].astype(str) == HARMFUL_TASK
    out["n_helpful"], out["n_red_team"] = int((~red).sum()), int(red.sum())
    if has_gold:
      out["helpful"] = _mean(arrays["gold_helpful"][~red])
      out["harmless"] = _mean(arrays["gold_harmless"][red])
  return out


def train_gold_windows(records: Sequence[dict], steps: Sequence[int]) -> dict[int, float | None]:
  """{snapshot step s: mean of gold/hh over the metrics records with previous step < record
  step <= s} (None where no record of the window has gold/hh; the first step's window starts
  after it, so step 0 gets None)."""
  out, previous = {}, None
  for s in sorted(steps):
    lo = s if previous is None else previous
    window = [r["gold/hh"] for r in records
              if lo < r.get("step", 0) <= s and r.get("gold/hh") is not None]
    out[s] = _mean(window) if window else None
    previous = s
  return out


def run_record(run: Run) -> dict:
  """One PPO run as {run, config, seed, gold, snapshots: [snapshot_summary + train_gold_hh]}."""
  config, seed = split_seed(run.name)
  paths = sorted(glob.glob(os.path.join(run.dir, "evals", "step_*.npz")))
  snapshots = [snapshot_summary(p) for p in paths]
  windows = train_gold_windows(run.metrics, [s["step"] for s in snapshots])
  for s in snapshots:
    s["train_gold_hh"] = windows[s["step"]]
  gold = any(r.get("gold/hh") is not None for r in run.metrics)
  return {"run": run.name, "config": config,
          "seed": seed if seed is not None else int(run.config.get("seed", 0) or 0),
          "gold": gold and all(s["has_gold"] for s in snapshots),
          "snapshots": sorted(snapshots, key=lambda s: s["step"])}


def best_snapshot(snapshots: Sequence[dict]) -> dict | None:
  """The snapshot after step 0 of highest train_gold_hh (ties: the earliest), or None."""
  candidates = [s for s in snapshots if s["step"] > 0 and s.get("train_gold_hh") is not None]
  return max(candidates, key=lambda s: (s["train_gold_hh"], -s["step"])) if candidates else None


def seed_gains(record: dict) -> dict | None:
  """{best_step, best_samples, helpful, harmless (gains over step 0), reply_len_initial,
  reply_len_best} of one run, or None without a step-0 and a best snapshot."""
  first = next((s for s in record["snapshots"] if s["step"] == 0), None)
  best = best_snapshot(record["snapshots"])
  if first is None or best is None:
    return None
  gain = lambda k: None if best[k] is None or first[k] is None else best[k] - first[k]  # noqa: E731
  return {"best_step": best["step"], "best_samples": best["samples"], "helpful": gain("helpful"),
          "harmless": gain("harmless"), "reply_len_initial": first["reply_len"],
          "reply_len_best": best["reply_len"]}


def _by_config(records: Sequence[dict]) -> dict[str, list[dict]]:
  out: dict[str, list[dict]] = {}
  for r in sorted(records, key=lambda r: (r["config"], r["seed"])):
    out.setdefault(r["config"], []).append(r)
  return out


def lacking(records: Sequence[dict], stage: str, need_task: bool = True) -> str | None:
  """The not-tested reason when some run has no snapshots, or (need_task) snapshots without
  the eval prompts' `task`; None when every run has what the claim reads."""
  none = [r["run"] for r in records if not r["snapshots"]]
  if none:
    return (f"{len(none)} of {len(records)} {stage} runs have no held-out snapshots "
            f"(evals/step_*.npz; snapshot_every = 0), e.g. {none[0]}")
  untasked = [r["run"] for r in records if not all(s["has_task"] for s in r["snapshots"])]
  if need_task and untasked:
    return (f"{len(untasked)} of {len(records)} {stage} runs have snapshots without the eval "
            f"prompts' task (written before snapshots stored it, or not the synthetic world), "
            f"e.g. {untasked[0]}")
  return None


# ----------------------------------------------------------------------------- statistics


def gold_table(records: Sequence[dict]) -> dict[str, dict]:
  """{config: {seeds, per_seed: {seed: seed_gains}, helpful, harmless, reply_len_initial,
  reply_len_best (seed_values of each)}} of the ppo stage's run records."""
  table = {}
  for config, runs in _by_config(records).items():
    per_seed = {r["seed"]: g for r in runs if (g := seed_gains(r)) is not None}
    row = {"seeds": sorted(per_seed), "per_seed": per_seed}
    for key in ("helpful", "harmless", "reply_len_initial", "reply_len_best"):
      row[key] = fits.seed_values([g[key] for g in per_seed.values()])
    table[config] = row
  return table


def worst(table: dict, key: str) -> tuple[dict, str | None]:
  """({key, key_ci_low, key_ci_high}, config): the lowest seed mean of any config (with that
  config's ci_high) and the lowest ci_low of any config (None if a config has none)."""
  means = {c: r[key]["value"] for c, r in table.items()}
  lows = [r[key]["ci_low"] for r in table.values()]
  if not means or None in means.values():
    return {key: None, f"{key}_ci_low": None, f"{key}_ci_high": None}, None
  config = min(means, key=means.get)
  return ({key: means[config], f"{key}_ci_low": None if None in lows else min(lows),
           f"{key}_ci_high": table[config][key]["ci_high"]}, config)


def gold_improves_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of rl_gold_improves (module docstring)."""
  records = ((inputs.get("rl_gold") or {}).get("ppo") or {}).get("runs") or []
  if not records:
    return {"not_tested": "the ppo stage has no finished runs"}
  if (reason := lacking(records, "ppo")) is not None:
    return {"not_tested": reason}
  table = gold_table(records)
  (helpful, worst_config), (harmless, _) = worst(table, "helpful"), worst(table, "harmless")
  values = {"value": helpful["helpful"], "ci_low": helpful["helpful_ci_low"],
            "ci_high": helpful["helpful_ci_high"], **harmless}
  for config, row in table.items():
    for key in ("helpful", "harmless", "reply_len_initial", "reply_len_best"):
      name = f"{config}:{key}"
      values.update({name: row[key]["value"], f"{name}_ci_low": row[key]["ci_low"],
                     f"{name}_ci_high": row[key]["ci_high"]})
  counts = {"seeds": min(len(r["seeds"]) for r in table.values()),
            "gold": int(all(r["gold"] for r in records)),
            "red_team_prompts": min(s["n_red_team"] for r in records for s in r["snapshots"]),
            "configs": len(table)}
  return {"values": values, "counts": counts,
          "per_seed": {f"{c}/{s}": g["helpful"] for c, row in table.items()
                       for s, g in row["per_seed"].items()},
          "detail": (f"{len(table)} ppo configs; per seed the snapshot of highest training-rollout "
                     f"gold hh vs step 0, on the held-out prompts; value: the worst config's "
                     f"helpful gain ({worst_config})")}


_ENS = re.compile(r"-ens(?P<k>\d+)(?:-(?P<kind>mean|min))?$")


def ensemble_kind(config: str) -> str | None:
  """"single" for policy-<P>-ens1, "mean" / "min" for policy-<P>-ens<K>-<kind>, else None."""
  m = _ENS.search(config)
  if m is None:
    return None
  return "single" if m["kind"] is None and m["k"] == "1" else m["kind"]


def _final_hh(record: dict) -> float | None:
  return record["snapshots"][-1]["hh"] if record["snapshots"] else None


def ensemble_table(records: Sequence[dict]) -> dict:
  """{"single": {seed: final hh}, "<kind>": {seed: final hh}, "diff": {kind: {seed: kind minus
  single}}, "steps": final snapshot steps} of the ppo_ensemble stage's run records."""
  finals: dict[str, dict[int, float]] = {}
  for r in records:
    kind = ensemble_kind(r["config"])
    if kind is not None and _final_hh(r) is not None:
      finals.setdefault(kind, {})[r["seed"]] = _final_hh(r)
  single = finals.get("single", {})
  diff = {k: {s: v - single[s] for s, v in sorted(finals[k].items()) if s in single}
          for k in KINDS if k in finals}
  return {**finals, "diff": diff,
          "steps": sorted({r["snapshots"][-1]["step"] for r in records if r["snapshots"]})}


def ensemble_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of ensemble_reduces_overoptimisation (module docstring)."""
  records = ((inputs.get("rl_gold") or {}).get("ppo_ensemble") or {}).get("runs") or []
  if not records:
    return {"not_tested": "the ppo_ensemble stage did not run"}
  if (reason := lacking(records, "ppo_ensemble", need_task=False)) is not None:
    return {"not_tested": reason}
  table = ensemble_table(records)
  if not table["diff"]:
    return {"not_tested": "no ensemble run with a single-PM (ens1) control of the same seed"}
  values = {}
  for kind, per_seed in table["diff"].items():
    values.update(fits.seed_values(per_seed.values(), kind))
  better = max(table["diff"], key=lambda k: values[k] if values[k] is not None else -np.inf)
  values = {"value": values[better], "ci_low": values[f"{better}_ci_low"],
            "ci_high": values[f"{better}_ci_high"], **values,
            "single_gold_hh": fits.seed_interval(table.get("single", {}).values())["mean"]}
  counts = {"seeds": len(table["diff"][better]), "gold": int(all(r["gold"] for r in records)),
            "kinds": len(table["diff"])}
  return {"values": values, "counts": counts,
          "per_seed": {f"{k}/{s}": v for k, d in table["diff"].items() for s, v in d.items()},
          "detail": (f"held-out gold hh at the final snapshot (step {table['steps']}), ensemble "
                     f"run minus the single-PM control of the same seed; value: the better kind "
                     f"({better}) of {sorted(table['diff'])}")}


# ----------------------------------------------------------------------------- figure and files


def fig_heldout(records: Sequence[dict], config: str):
  """Held-out gold helpful (helpful prompts), gold harmless (red-team prompts) and mean reply
  length vs RL samples of one config's seeds, seed mean with a +-1 sd band (cf. Bai et al. Fig 13)."""
  fig, axes = plots.new_figure(ncols=3, width=3.6)
  panels = (("helpful", "gold helpful (helpful prompts)", "helpfulness", "C0"),
            ("harmless", "gold harmless (red-team prompts)", "harmlessness", "C3"),
            ("reply_len", "mean reply length (tokens)", "reply length", "C2"))
  n = len(records)
  label = f"{config}: seed mean ({n} seeds, band +-1 sd)" if n > 1 else f"{config} (1 seed)"
  best = [(b["samples"], b) for r in records if (b := best_snapshot(r["snapshots"])) is not None]
  for ax, (key, ylabel, title, color) in zip(axes, panels):
    xs = [[s["samples"] for s in r["snapshots"]] for r in records]
    ys = [[np.nan if s[key] is None else s[key] for s in r["snapshots"]] for r in records]
    plots.seed_band(ax, xs, ys, color, label, marker="o")
    ax.scatter([x for x, _ in best], [np.nan if b[key] is None else b[key] for _, b in best],
               marker="*", s=60, color="black", zorder=3,
               label="each seed's best snapshot (by training-rollout gold)")
    plots.label_axes(ax, "RL samples", ylabel, title, legend=False)
  plots.figure_legend(fig, axes, ncol=3)
  plots.suptitle(fig, "Held-out gold reward during PPO", "Bai et al. Fig 13")
  return fig


def _records(stage_dir: str) -> list[dict]:
  if not os.path.isdir(stage_dir):
    return []
  return [run_record(r) for r in discover(stage_dir).runs if r.kind == "ppo"]


def main_config(records: Sequence[dict], main_run: str | None) -> str | None:
  """The config of main_run (with or without its seed); else the config with the most seeds."""
  groups = _by_config(records)
  want = split_seed(os.path.basename(main_run))[0] if main_run else None
  if want in groups:
    return want
  return max(groups, key=lambda c: (len(groups[c]), c)) if groups else None


def run_rl_gold(root: str, out_dir: str, main_run: str | None = None) -> dict:
  """The held-out gold of <root>/ppo and <root>/ppo_ensemble (each read on its own); writes
  <out_dir>/rl_gold_analysis.json and the figure; returns {"result", "notes", "files"}."""
  ppo, ens = _records(os.path.join(root, "ppo")), _records(os.path.join(root, "ppo_ensemble"))
  result = {"ppo": {"runs": ppo}, "ppo_ensemble": {"runs": ens}, "main_config": main_config(ppo, main_run)}
  result["gold_table"] = gold_table(ppo) if ppo and lacking(ppo, "ppo") is None else None
  result["ensemble_table"] = ensemble_table(ens) if ens else None
  notes, figures = [], {}
  main = [r for r in ppo if r["config"] == result["main_config"] and r["snapshots"]]
  if main and all(s["has_task"] for r in main for s in r["snapshots"]):
    figures["rl_gold_heldout"] = fig_heldout(main, result["main_config"])
  else:
    notes.append("no main-config PPO run with held-out snapshots that name their prompts' task: "
                 "figure rl_gold_heldout skipped")
  notes += [f"figure {stem}: {p}" for stem, fig in figures.items() for p in plots.layout_problems(fig)]
  os.makedirs(out_dir, exist_ok=True)
  files = [p for stem, fig in figures.items() for p in plots.save(fig, out_dir, stem)]
  path = os.path.join(out_dir, JSON_NAME)
  write_json(path, {**result, "notes": notes})
  return {"result": result, "notes": notes, "files": files + [path]}
