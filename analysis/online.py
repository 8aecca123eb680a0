"""Iterated online RLHF vs the static baseline at the same label budget (Bai et al. 2022 section
4.5), from the online_eval runs (their online_vs_static.json files; hh_jax.train.online_eval).

Each online_eval run compares, for one PPO seed k, the final policy of the online run (R rounds
of gold-labelled comparisons from the latest policy, PM and PPO retrained from the base LM) with
the static run's (one PM on the same number of scripted-policy comparisons, one PPO run), on the
same held-out prompts, by the gold labeller:

    win_k      = mean_i sigmoid(beta (R_online,i - R_static,i))   (expected gold win rate)
    elo_k      = 400 log10(win_k / (1 - win_k))                     (its Elo difference)
    gold_diff_k = mean gold(online) - mean gold(static)

Statistic `online_vs_static_statistic` (analysis.claims format): value = mean_k elo_k with its
95% t interval over PPO seeds (analysis.fits.seed_interval); also win_rate (its interval) and
gold_diff (its interval); counts: seeds, rounds (the fewest rounds of any seed's online run).
It reads inputs["online"], the dict `run_online` writes to <out_dir>/online_analysis.json.
Figures: held-out gold of each round's policy vs the comparisons in its PM's pool (online, seed
mean +- sd), beside the static policy at its pool size and the base LM; and the PMs' test
accuracy the same way. And, from the online_rlhf runs' PPO sub-runs (<online_root>/<run>/
round-<r>/ppo), gold hh of the training rollouts and the round's own PM score against
sqrt(KL) over PPO iterations, one line per round (seed mean +- sd) beside the static run's:
does a PM retrained on the latest policy's samples let the policy go further in KL before the
gold turns down (Bai et al. 2022 Fig 1 right, section 4.5)? Analysis reads run files only (it
never imports hh_jax).
"""

from __future__ import annotations

import collections
import os
from typing import Sequence

import numpy as np

from analysis import fits, plots, rl
from analysis.runs import RunFileError, discover, load_run, read_json, split_seed, write_json

JSON_NAME = "online_analysis.json"
RESULT = "online_vs_static.json"
_REQUIRED = ("win_rate", "elo_diff", "gold", "rounds", "static_pool", "online_run")


def eval_record(run_dir: str, name: str, config_seed=None) -> dict:
  """One online_eval run as {run, config, seed, win_rate, elo_diff, gold_diff, gold, rounds,
  static_rounds, static_pool, online_run, static_run}; the seed is the online run's -s<k>
  suffix (else the config's)."""
  path = os.path.join(run_dir, RESULT)
  result = read_json(path)
  missing = [k for k in _REQUIRED if k not in result]
  if missing:
    raise RunFileError(f"{path}: {RESULT} is missing field(s) {missing}")
  config, seed = split_seed(result["online_run"])
  return {"run": name, "config": config, "seed": seed if seed is not None else config_seed,
          "win_rate": result["win_rate"], "elo_diff": result["elo_diff"],
          "gold_diff": result.get("gold_diff"), "gold": result["gold"], "rounds": result["rounds"],
          "static_rounds": result.get("static_rounds") or [], "static_pool": result["static_pool"],
          "online_run": result["online_run"], "static_run": result.get("static_run")}


def main_group(records: Sequence[dict]) -> tuple[str, dict[int, dict]] | None:
  """(config, {seed: record}) of the online config with the most seeds (ties: by name)."""
  groups: dict[str, dict[int, dict]] = collections.defaultdict(dict)
  for r in records:
    if r["seed"] is not None:
      groups[r["config"]][int(r["seed"])] = r
  return max(groups.items(), key=lambda kv: (len(kv[1]), kv[0])) if groups else None


def online_vs_static_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic (module docstring): per PPO seed, the gold Elo of the online final
  policy minus the static one ("value", interval over seeds), the win rate and the gold gap."""
  group = main_group((inputs.get("online") or {}).get("runs") or [])
  if group is None:
    return {"not_tested": "the online_eval stage did not run"}
  config, seeds = group
  elo = {s: r["elo_diff"] for s, r in sorted(seeds.items())}
  values = {**fits.seed_values(elo.values()),
            **fits.seed_values([r["win_rate"] for r in seeds.values()], "win_rate"),
            **fits.seed_values([r["gold_diff"] for r in seeds.values()], "gold_diff")}
  counts = {"seeds": len(seeds), "rounds": min(len(r["rounds"]) for r in seeds.values())}
  return {"values": values, "counts": counts, "per_seed": {str(s): v for s, v in elo.items()},
          "detail": (f"{config}: gold-labeller Elo of the online final policy minus the static "
                     f"policy at the same label budget ({seeds[min(seeds)]['static_pool']} "
                     "comparisons), one value per PPO seed")}


def round_table(seeds: dict[int, dict]) -> dict:
  """Per round (over seeds): pool size, held-out gold of the round's policy, PM test accuracy;
  and the static run's (its pool, gold, PM accuracy) and the base LM's gold."""
  n = min(len(r["rounds"]) for r in seeds.values())
  recs = list(seeds.values())
  rows = [{"round": k, "pool": recs[0]["rounds"][k]["pool"],
           "gold": fits.seed_interval(r["gold"].get(f"round-{k}") for r in recs),
           "pm_accuracy": fits.seed_interval(r["rounds"][k].get("pm_accuracy") for r in recs)}
          for k in range(n)]
  static_acc = [r["static_rounds"][-1].get("pm_accuracy") for r in recs if r["static_rounds"]]
  return {"rounds": rows, "static": {"pool": recs[0]["static_pool"],
                                     "gold": fits.seed_interval(r["gold"]["static"] for r in recs),
                                     "pm_accuracy": fits.seed_interval(static_acc)},
          "base_gold": fits.seed_interval(r["gold"].get("base") for r in recs)}


def _sd(si: dict) -> float:
  return si["sd"] if si["sd"] is not None else np.nan


def _nan(x) -> float:
  return np.nan if x is None else float(x)


def fig_online(table: dict):
  """Gold hh of each round's policy and its PM's test accuracy vs the comparisons in the pool:
  online rounds (seed mean +- sd), the static baseline at its pool size, the base LM's gold."""
  fig, axes = plots.new_figure(ncols=2, width=4.0)
  rows, static = table["rounds"], table["static"]
  x = [r["pool"] for r in rows]
  for ax, key, ylabel in ((axes[0], "gold", "held-out gold hh reward (mean)"),
                          (axes[1], "pm_accuracy", "PM accuracy (hh_synth test pairs)")):
    plots.errorbar_line(ax, x, [_nan(r[key]["mean"]) for r in rows], [_sd(r[key]) for r in rows],
                        "online: round r (seed mean ± sd)", "C0")
    ax.errorbar([static["pool"]], [_nan(static[key]["mean"])],
                yerr=[np.nan_to_num(_sd(static[key]))], fmt="s", color="C3", capsize=3,
                label="static: same label budget")
    if key == "gold" and table["base_gold"]["mean"] is not None:
      ax.axhline(table["base_gold"]["mean"], color="0.5", linestyle=":", label="base LM")
    plots.label_axes(ax, "comparisons in the PM's pool", ylabel,
                     "gold of the policy" if key == "gold" else "PM accuracy", legend=False)
  plots.figure_legend(fig, axes, ncol=3)
  plots.suptitle(fig, "Iterated online RLHF vs static data", "Bai et al. 2022 Sec 4.5")
  return fig


def round_curves(online_root: str, seeds: dict[int, dict]) -> tuple[dict, list[str]]:
  """Each PPO sub-run of the main group's online and static runs as arrays over iterations:
  ({"round-<r>" | "static": [{"seed", "sqrt_kl", "gold_hh", "score_train"} per seed]}, notes).
  A sub-run that has not finished is a note, not an error."""
  curves: dict[str, list[dict]] = collections.defaultdict(list)
  notes = []
  for seed, rec in sorted(seeds.items()):
    subs = [(f"round-{k}", rec["online_run"], k) for k in range(len(rec["rounds"]))]
    if rec.get("static_run"):
      subs.append(("static", rec["static_run"], 0))
    for label, run, k in subs:
      d = os.path.join(online_root, run, f"round-{k}", "ppo")
      if not os.path.exists(os.path.join(d, "summary.json")):
        notes.append(f"{d}: no finished PPO sub-run; left out of the per-round curves")
        continue
      c = rl.rl_curve(load_run(d, f"{run}/round-{k}/ppo"))
      if "hh" not in c["gold"]:
        raise RunFileError(f"{os.path.join(d, 'metrics.jsonl')}: no 'gold/hh' in any line")
      curves[label].append({"seed": seed, "sqrt_kl": c["sqrt_kl"], "gold_hh": c["gold"]["hh"],
                            "score_train": c["score_train"]})
  return dict(curves), notes


SMOOTH = 5   # iterations per running mean in fig_round_curves (a round's KL is noisy at 64 rollouts)


def fig_round_curves(curves: dict, window: int = SMOOTH):
  """Gain over its first iteration of the PPO rollouts' gold hh (left, gold units) and of the
  round's own train-PM score (right, PM logits: each round's PM has its own offset) vs
  sqrt(KL from the base LM): per seed a running mean over `window` iterations of both, then one
  line per online round (seed mean +- sd, colour from early to late) and the static run
  (dashed)."""
  fig, axes = plots.new_figure(ncols=2, width=4.0)
  rounds = sorted((k for k in curves if k.startswith("round-")), key=lambda k: int(k[6:]))
  colors = plots.size_colors(rounds)
  styles = [(k, f"online round {k[6:]}", colors[k], "-") for k in rounds]
  if "static" in curves:
    styles.append(("static", "static: same label budget", "C3", "--"))
  for ax, key, ylabel, title in ((axes[0], "gold_hh", "gold hh gain of the rollouts", "gold"),
                                 (axes[1], "score_train", "train-PM score gain (its round's PM)",
                                  "PM score")):
    for k, label, color, linestyle in styles:
      xs = [plots.running_mean(c["sqrt_kl"], window) for c in curves[k]]
      ys = [plots.running_mean(np.asarray(c[key]) - c[key][0], window) for c in curves[k]]
      plots.seed_band(ax, xs, ys, color, label, linestyle=linestyle)
    plots.label_axes(ax, "sqrt(KL(policy || base LM)), nats^0.5", ylabel, title, legend=False)
  plots.figure_legend(fig, axes, ncol=min(len(styles), 4))
  plots.suptitle(fig, f"Online RLHF: each round's PPO run vs sqrt(KL), {window}-iteration means",
                 "Bai et al. 2022 Fig 1 right, Sec 4.5")
  return fig


def analyze_online(records: Sequence[dict], online_root: str | None = None
                   ) -> tuple[dict, dict, list[str]]:
  """(result, {stem: Figure}, notes) of the online_eval records; with online_root (the
  online_rlhf stage's directory) also the per-round PPO curves and their figure."""
  result = {"runs": list(records), "statistic": online_vs_static_statistic({"online": {"runs": records}})}
  group = main_group(records)
  if group is None:
    return result, {}, ["no online_eval runs: nothing to compare"]
  result["config"], result["table"] = group[0], round_table(group[1])
  figures, notes = {"online_vs_static": fig_online(result["table"])}, []
  if online_root is not None:
    curves, notes = round_curves(online_root, group[1])
    result["round_curves"] = curves
    if curves:
      figures["online_gold_vs_sqrt_kl"] = fig_round_curves(curves)
  return result, figures, notes


def run_online(root: str, out_dir: str, online_root: str | None = None) -> dict:
  """analyze_online of the finished online_eval runs under root (e.g. <results>/online_eval)
  and, with online_root (e.g. <results>/online_rlhf), their online runs' per-round PPO curves;
  writes <out_dir>/online_analysis.json and the figures; returns {"result", "notes", "files"}.
  A missing root is a note, not an error."""
  records, notes = [], []
  if os.path.isdir(root):
    records = [eval_record(run.dir, run.name, run.config.get("seed"))
               for run in discover(root).runs if run.has(RESULT)]
  else:
    notes.append(f"{root} is not a directory: the online_eval stage has not run")
  result, figures, more = analyze_online(records, online_root)
  os.makedirs(out_dir, exist_ok=True)
  files = [p for stem, fig in figures.items() for p in plots.save(fig, out_dir, stem)]
  path = os.path.join(out_dir, JSON_NAME)
  write_json(path, {**result, "notes": notes + more})
  return {"result": result, "notes": notes + more, "files": files + [path]}
