"""The held-out policy evaluations (the policy_eval stage's policy_eval.json files): the alignment
tax by policy size (Bai et al. 2022 section 3, Fig 3) and PPO from the context-distilled policy
vs from the plain base LM (appendix A.1; the paper's policies start from the distilled model).

Each policy_eval run holds, for one PPO run (seed k), its initial and final policy evaluated on
the same test prompts: `capability` (greedy exact-answer rate, the unweighted mean over the
helpful task families) and the gold rewards (sampled replies), with the PPO run's policy size
and the kind of its initial policy ("lm": the base LM; "distill": the distilled model).

Statistics (analysis.claims format; intervals are t intervals over PPO seeds, each a paired
difference of runs that share the seed):

    alignment_tax_difference   tax_k(size) = capability(final) - capability(initial) of the
                               base-LM PPO run of that policy size and seed k (the policy
                               against the largest train PM); d_k = tax_k(largest size) -
                               tax_k(smallest size). The paper: small models lose capability
                               under RLHF, larger ones do not (or gain), so d > 0.
    cd_gold_gain               g_k = gold hh of the final policy of PPO from distillation run k
                               minus that of PPO from the base LM with seed k (same policy size,
                               PM, prompts, hyperparameters); init_k = the same difference of the
                               initial policies (the distilled model vs the base LM).

Analysis reads run directories only (it never imports hh_jax).
"""

from __future__ import annotations

import collections
import os
from typing import Sequence

import numpy as np

from analysis import fits, plots
from analysis.runs import Run, RunFileError, discover, read_json, split_seed, write_json

JSON_NAME = "policy_eval_analysis.json"
_REQUIRED = ("initial", "final", "ppo_run", "init_kind", "policy_params")


def eval_record(run: Run) -> dict:
  """One policy_eval run as {config, seed, params, init_kind, initial, final}."""
  path = run.path("policy_eval.json")
  result = read_json(path)
  missing = [k for k in _REQUIRED if k not in result]
  if missing:
    raise RunFileError(f"{path}: policy_eval.json is missing field(s) {missing}")
  config, seed = split_seed(result["ppo_run"])
  return {"run": run.name, "config": config, "seed": seed, "params": int(result["policy_params"]),
          "init_kind": result["init_kind"], "initial": result["initial"], "final": result["final"]}


def _base_runs(records: Sequence[dict]) -> dict[int, dict[int, dict]]:
  """params -> seed -> record, of the PPO runs from the base LM."""
  out: dict[int, dict[int, dict]] = collections.defaultdict(dict)
  for r in records:
    if r["init_kind"] != "distill" and r["seed"] is not None:
      out[r["params"]][r["seed"]] = r
  return dict(sorted(out.items()))


def tax_table(records: Sequence[dict]) -> list[dict]:
  """Per policy size (base-LM PPO runs): capability before and after RLHF and the tax, each
  with its interval over seeds."""
  rows = []
  for params, by_seed in _base_runs(records).items():
    before = {s: r["initial"]["capability"] for s, r in by_seed.items()}
    after = {s: r["final"]["capability"] for s, r in by_seed.items()}
    tax = {s: after[s] - before[s] for s in by_seed}
    rows.append({"params": params, "seeds": sorted(by_seed),
                 "capability_initial": fits.seed_interval(before.values()),
                 "capability_final": fits.seed_interval(after.values()),
                 "tax": fits.seed_interval(tax.values()), "tax_per_seed": tax,
                 "gold_hh_initial": fits.seed_interval(r["initial"]["gold_hh"] for r in by_seed.values()),
                 "gold_hh_final": fits.seed_interval(r["final"]["gold_hh"] for r in by_seed.values())})
  return rows


def cd_table(records: Sequence[dict]) -> dict | None:
  """Per seed, PPO from the distilled model vs PPO from the base LM at the distilled model's
  policy size: the gold hh (and helpful, harmless) of the initial and final policies."""
  cd = {r["seed"]: r for r in records if r["init_kind"] == "distill" and r["seed"] is not None}
  if not cd:
    return None
  params = next(iter(cd.values()))["params"]
  base = _base_runs(records).get(params, {})
  seeds = sorted(set(cd) & set(base))
  out = {"params": params, "seeds": seeds, "per_seed": {}}
  for s in seeds:
    out["per_seed"][s] = {
        f"{which}_{k}": cd[s][which][f"gold_{k}"] - base[s][which][f"gold_{k}"]
        for which in ("initial", "final") for k in ("hh", "helpful", "harmless")}
    out["per_seed"][s].update({f"{name}_{which}_gold_hh": run[which]["gold_hh"]
                               for name, run in (("cd", cd[s]), ("base", base[s]))
                               for which in ("initial", "final")})
  for key in ("initial_hh", "final_hh", "initial_helpful", "final_helpful", "initial_harmless",
              "final_harmless"):
    out[key] = fits.seed_interval(v[key] for v in out["per_seed"].values())
  return out


# ----------------------------------------------------------------------------- statistics


def alignment_tax_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of alignment_tax_by_size (module docstring)."""
  rows = (inputs.get("policy_eval") or {}).get("tax") or []
  if len(rows) < 2:
    return {"not_tested": f"the policy_eval stage has {len(rows)} policy size(s) of base-LM PPO "
                          "runs; the claim needs 2"}
  small, large = rows[0], rows[-1]
  per = {s: large["tax_per_seed"][s] - small["tax_per_seed"][s]
         for s in large["tax_per_seed"] if s in small["tax_per_seed"]}
  si = fits.seed_interval(per.values())
  values = {**fits.interval_values(si), "tax_small": small["tax"]["mean"], "tax_large": large["tax"]["mean"]}
  return {"values": values, "counts": {"seeds": len(per), "sizes": len(rows)},
          "per_seed": {str(k): v for k, v in per.items()},
          "detail": (f"capability after minus before RLHF: {plots.format_count(large['params'])} "
                     f"policy minus {plots.format_count(small['params'])} policy, paired by PPO seed")}


def cd_gold_statistic(inputs: dict, main_run=None) -> dict:
  """analysis.claims statistic of context_distillation_init (module docstring)."""
  cd = (inputs.get("policy_eval") or {}).get("context_distillation")
  if not cd or not cd["seeds"]:
    return {"not_tested": "no PPO run from a context-distilled policy with a base-LM twin"}
  values = {**fits.interval_values(cd["final_hh"]), **fits.interval_values(cd["initial_hh"], "init")}
  return {"values": values, "counts": {"seeds": len(cd["seeds"])},
          "per_seed": {str(k): v["final_hh"] for k, v in cd["per_seed"].items()},
          "detail": (f"{plots.format_count(cd['params'])} policy: gold hh of PPO from the "
                     "distilled model minus PPO from the base LM (final policies; init = the "
                     "initial policies), paired by seed, on held-out prompts")}


# ----------------------------------------------------------------------------- figures


def fig_alignment_tax(rows: Sequence[dict]):
  """Capability (exact answers) vs policy size, before and after RLHF (cf. Fig 3)."""
  fig, (ax,) = plots.new_figure(width=5.0)
  x = [r["params"] for r in rows]
  for key, label, style in (("capability_initial", "base LM (before RLHF)", "--"),
                            ("capability_final", "after RLHF (PPO)", "-")):
    mean = [r[key]["mean"] for r in rows]
    sd = [r[key]["sd"] if r[key]["sd"] is not None else np.nan for r in rows]
    plots.errorbar_line(ax, x, mean, sd, label, "C0" if style == "-" else "C1", linestyle=style)
  plots.log_ticks(ax, x)
  plots.label_axes(ax, "policy parameters (non-embedding)", "exact-answer rate (greedy)",
                   "Capability before and after RLHF")
  plots.suptitle(fig, "Alignment tax by policy size", "Bai et al. Fig 3")
  return fig


def fig_context_distillation(cd: dict):
  """Gold hh of the initial and final policies, PPO from the base LM vs from the distilled model."""
  fig, (ax,) = plots.new_figure(width=5.0)
  per = cd["per_seed"].values()
  for i, (name, label) in enumerate((("base", "from the base LM"), ("cd", "from the distilled model"))):
    for j, which in enumerate(("initial", "final")):
      ys = [v[f"{name}_{which}_gold_hh"] for v in per]
      x = j + (i - 0.5) * 0.25
      ax.errorbar([x], [np.mean(ys)], yerr=[np.std(ys, ddof=1) if len(ys) > 1 else 0.0],
                  fmt="o", color=f"C{i}", capsize=3, label=label if j == 0 else None)
      ax.scatter([x] * len(ys), ys, s=8, color=f"C{i}", alpha=0.5)
  ax.set_xticks([0, 1])
  ax.set_xticklabels(["initial policy", "after PPO"])
  plots.label_axes(ax, "", "gold hh reward (held-out prompts)", "PPO initialisation")
  plots.suptitle(fig, "Context distillation as the initial policy", "Bai et al. App A.1")
  return fig


def analyze_policy_evals(runs: Sequence[Run]) -> tuple[dict, dict, list[str]]:
  """(result, {name: Figure}, notes) from the finished policy_eval runs among `runs`."""
  records = [eval_record(r) for r in runs if r.kind == "policy_eval" and r.has("policy_eval.json")]
  if not records:
    return {"tax": [], "context_distillation": None}, {}, ["no policy_eval runs: skipped"]
  result = {"tax": tax_table(records), "context_distillation": cd_table(records),
            "runs": [{k: r[k] for k in ("run", "config", "seed", "params", "init_kind")}
                     | {"initial": r["initial"], "final": r["final"]} for r in records]}
  figures, notes = {}, []
  if result["tax"]:
    figures["alignment_tax"] = fig_alignment_tax(result["tax"])
  if result["context_distillation"] and result["context_distillation"]["seeds"]:
    figures["context_distillation"] = fig_context_distillation(result["context_distillation"])
  else:
    notes.append("no PPO run from a distilled policy with a base-LM twin: figure skipped")
  return result, figures, notes


def run_policy_evals(root: str, out_dir: str) -> dict:
  """analyze_policy_evals over the finished runs under root; writes <out_dir>/JSON_NAME and the
  figures; returns {"result", "notes", "files"}."""
  found = discover(root)
  result, figures, notes = analyze_policy_evals(found.runs)
  os.makedirs(out_dir, exist_ok=True)
  files = [p for stem, fig in figures.items() for p in plots.save(fig, out_dir, stem)]
  path = os.path.join(out_dir, JSON_NAME)
  write_json(path, result)
  return {"result": result, "notes": notes, "files": files + [path]}
