"""The reproduction report: each claim of the paper beside our measurement.

Reads only what the analysis stage wrote (`figures/*/pm_analysis.json`,
`figures/rl/rl_analysis.json`) and writes, under the results root:

    numbers.json   every number in the report; `claims`: [{id, claim, paper, ours, ci, held}]
    report.md      the claims table, the figures, and what did not hold at this scale
    report.html    the same page with the figures inline
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from typing import Any

import numpy as np

from hh_jax.metrics import read_jsonl

CLAIM_IDS = ("pm_accuracy_vs_params", "pm_accuracy_vs_data", "pm_loglinear_fit", "pm_calibration",
             "helpful_harmless_tension", "rl_reward_linear_in_sqrt_kl", "train_test_pm_divergence",
             "larger_pm_more_robust", "best_of_n", "elo")

FIGURES = (  # (relative path stem, caption)
    ("pm_scaling/pm_accuracy_vs_data", "PM accuracy vs comparisons, one line per size (cf. Fig 7 left, 31, 32)"),
    ("pm_scaling/pm_accuracy_vs_params", "PM accuracy vs parameters, one line per data size (cf. Fig 7 right)"),
    ("pm_scaling/pm_calibration", "Calibration: binned score gap vs accuracy (cf. Fig 9)"),
    ("pm_scaling/pm_accuracy_by_turn", "Accuracy by dialogue turn (cf. Fig 8)"),
    ("pm_mix/pm_mix_tension", "% helpful data vs helpful / harmless accuracy (cf. Fig 19, 26)"),
    ("rl/rl_score_vs_sqrt_kl", "PM score vs sqrt(KL) during PPO (cf. Fig 4 right, 13)"),
    ("rl/rl_train_vs_test", "Train vs test PM score over RL samples (cf. Fig 4 left)"),
    ("rl/rl_robustness", "Test-PM score at a fixed budget vs test-PM size (cf. Fig 33)"),
    ("rl/rl_gold_vs_sqrt_kl", "Gold reward vs sqrt(KL) with Gao et al. fits (over-optimisation)"),
    ("rl/rl_best_of_n", "Best-of-N: score vs KL bound log n - (n-1)/n (cf. Fig 36)"),
    ("rl/rl_elo", "Elo during RL: PM-predicted vs gold-labeller (cf. Fig 15)"),
)


def _load(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _claim(cid, claim, paper, ours, ci, held, detail="") -> dict:
  return {"id": cid, "claim": claim, "paper": paper, "ours": ours, "ci": ci,
          "held": bool(held) if held is not None else False, "detail": detail}


def _num(x) -> float | None:
  try:
    x = float(x)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


def pm_claims(pm: dict | None, mix: dict | None) -> list[dict]:
  out = []
  fit = (((pm or {}).get("scaling") or {}).get("metrics") or {}).get("accuracy")
  if fit:
    f, ci = fit["fit"], fit["ci95"]
    out.append(_claim(
        "pm_accuracy_vs_params", "PM accuracy rises log-linearly with model size",
        "+0.007 accuracy per e-fold of parameters (helpful-only fit; Fig 7, 32)",
        f["b"], ci.get("b"), ci.get("b") and ci["b"][0] > 0,
        f"b = d acc / d ln P over {fit['n_runs']} runs; 95% bootstrap CI over seeds"))
    out.append(_claim(
        "pm_accuracy_vs_data", "PM accuracy rises log-linearly with the number of comparisons",
        "+0.015 accuracy per e-fold of comparisons (helpful-only fit; Fig 7, 32)",
        f["c"], ci.get("c"), ci.get("c") and ci["c"][0] > 0, "c = d acc / d ln D"))
    # The law is about a PM's expected accuracy at (P, D): the claim is judged on the fit to
    # the seed means of the cells; the run-level R^2 (capped by seed-to-seed noise) is beside it.
    fc = fit.get("fit_cells") or f
    r2_cells = _num(fc.get("r2"))
    out.append(_claim(
        "pm_loglinear_fit", "acc = a + b ln P + c ln D describes the whole grid",
        "acc = 0.72 + 0.007 ln(P/1e11) + 0.015 ln(D/8e4)",
        r2_cells, ci.get("r2_cells", ci.get("r2")),
        r2_cells is not None and r2_cells >= 0.9 and f["b"] > 0 and f["c"] > 0
        and bool(ci.get("b")) and ci["b"][0] > 0 and bool(ci.get("c")) and ci["c"][0] > 0,
        f"R^2 of the joint fit to the seed means of the {fit.get('n_cells')} (P, D) cells "
        f"(held if >= 0.9 with b and c CIs above 0); over the {fit['n_runs']} single runs "
        f"R^2 = {f['r2']:.3f}; a={f['a']:.3f}, b={f['b']:.4f}, c={f['c']:.4f}"))
  else:
    for cid in ("pm_accuracy_vs_params", "pm_accuracy_vs_data", "pm_loglinear_fit"):
      out.append(_claim(cid, "PM scaling", "Fig 7", None, None, False, "no PM scaling fit"))
  calib = (pm or {}).get("calibration")
  if calib:
    ece = _num(calib["pooled"].get("ece"))
    out.append(_claim(
        "pm_calibration", "PM score gaps are calibrated: P(chosen preferred) = 1/(1+e^-gap)",
        "well calibrated on helpful data, slightly under-confident on the HH mix (Fig 9)",
        ece, None, ece is not None and ece < 0.05,
        f"expected calibration error over {calib.get('n_pairs')} test pairs (held if < 0.05)"))
  else:
    out.append(_claim("pm_calibration", "PM calibration", "Fig 9", None, None, False, "no scores"))
  rows = (mix or {}).get("mix") or []
  if rows:
    by_frac = {}
    for r in rows:
      by_frac.setdefault(r["helpful_fraction"], []).append(r)
    lo, hi = min(by_frac), max(by_frac)
    help_only_on_harm = float(np.mean([r["harmless"] for r in by_frac[hi]]))
    harm_only_on_help = float(np.mean([r["helpful"] for r in by_frac[lo]]))
    mids = [r for f, rs in by_frac.items() if lo < f < hi for r in rs]
    mix_min = float(min(min(r["helpful"], r["harmless"]) for r in mids)) if mids else None
    held = help_only_on_harm < 0.5 and harm_only_on_help < 0.5 and (mix_min or 0) > 0.5
    out.append(_claim(
        "helpful_harmless_tension",
        "A PM trained on helpful data only is below chance on harmless pairs (and vice versa); "
        "a mix is above chance on both",
        "well below chance on the other distribution (Fig 19)",
        {"helpful_only_on_harmless": help_only_on_harm, "harmless_only_on_helpful": harm_only_on_help,
         "mixed_worst": mix_min}, None, held,
        f"{len(rows)} (size, fraction) cells"))
  else:
    out.append(_claim("helpful_harmless_tension", "helpful/harmless tension", "Fig 19", None, None,
                      False, "no mix sweep"))
  return out


def _main_run(rl: dict, main_name: str | None) -> dict | None:
  runs = rl.get("runs") or []
  for r in runs:
    if main_name and os.path.basename(r["name"]) == main_name:
      return r
  return runs[0] if runs else None


def _gain_gaps(root: str, run_name: str, window: int = 5) -> dict:
  """Per test PM: the train-minus-test score gain gap early (20% of training) and at the end,
  read from the PPO run's metrics.jsonl."""
  path = os.path.join(root, "ppo", run_name, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  records = read_jsonl(path)
  train = np.array([r["ppo/score_train"] for r in records])
  names = sorted(k[len("ppo/score_test/"):] for k in records[0] if k.startswith("ppo/score_test/"))
  n = len(records)
  early = max(window, n // 5)

  def at(x, i):
    return float(np.mean(x[max(0, i - window // 2): i + window // 2 + 1]))

  out = {}
  for name in names:
    test = np.array([r[f"ppo/score_test/{name}"] for r in records])
    gap = (train - train[0]) - (test - test[0])
    out[name] = {"early": at(gap, early), "end": at(gap, n - 1 - window // 2)}
  return out


def rl_claims(rl: dict | None, main_name: str | None, root: str | None = None) -> list[dict]:
  out = []
  main = _main_run(rl or {}, main_name)
  if main:
    f = main["score_vs_sqrt_kl"]["train"]
    slope, r2 = _num(f.get("slope")), _num(f.get("r2"))
    se = _num(f.get("slope_stderr"))
    ci = [slope - 1.96 * se, slope + 1.96 * se] if slope is not None and se is not None else None
    out.append(_claim(
        "rl_reward_linear_in_sqrt_kl", "During PPO the PM score rises linearly in sqrt(KL)",
        "roughly linear for much of training, parallel across policy sizes (Fig 4, 13)",
        {"slope": slope, "r2": r2}, ci, r2 is not None and r2 >= 0.95 and (slope or 0) > 0,
        f"{main['name']}: linear fit over the first half of training"))
    gaps = _gain_gaps(root, os.path.basename(main["name"])) if root else {}
    if gaps:
      held = all(g["end"] > 0 and g["early"] < 0.5 * g["end"] for g in gaps.values())
      out.append(_claim(
          "train_test_pm_divergence",
          "Train- and test-PM scores agree early in RL, then the train PM pulls ahead",
          "agree up to ~150k RL samples, then diverge with the train PM higher (Fig 4 left)",
          gaps, None, held,
          "gain gap = (train-PM gain) - (test-PM gain) since the first iteration, averaged over "
          "5 iterations, at 20% of training (early) and at the end"))
    else:
      out.append(_claim("train_test_pm_divergence", "train vs test PM", "Fig 4", None, None, False,
                        "no test PMs"))
    out.append(_robustness_claim(rl))
  else:
    for cid in ("rl_reward_linear_in_sqrt_kl", "train_test_pm_divergence", "larger_pm_more_robust"):
      out.append(_claim(cid, "PPO", "Fig 4", None, None, False, "no PPO runs"))
  bons = (rl or {}).get("best_of_n") or []
  if bons:
    b = bons[0]
    train = np.asarray(b["scores"]["score_train"], float)
    gold = np.asarray(b["scores"].get("gold_hh", []), float)
    held = bool(np.all(np.diff(train) > 0)) and (len(gold) == 0 or gold[-1] > gold[0])
    out.append(_claim(
        "best_of_n", "Best-of-n sampling raises the PM score smoothly, with KL = log n - (n-1)/n",
        "best-of-k Elo rises over k = 1..64; online RLHF ~ best-of-64 (Fig 36)",
        {"n_max": b["n"][-1], "kl_bound": b["kl_bound"][-1], "train_gain": float(train[-1] - train[0]),
         "gold_gain": float(gold[-1] - gold[0]) if len(gold) else None}, None, held,
        "expected best-of-n score selected by the train PM (unbiased order-statistic estimator)"))
  else:
    out.append(_claim("best_of_n", "best-of-n", "Fig 36", None, None, False, "no bon.json"))
  elos = (rl or {}).get("elo") or []
  if elos:
    e = elos[0]
    gold = np.asarray(e["elo_gold"], float)
    err = np.asarray(e["elo_gold_stderr"], float)
    pred = np.asarray(e["elo_pm_predicted"], float)
    peak = int(np.argmax(gold - 1.96 * err))
    overestimates = bool(np.all(pred[1:] > gold[1:]))
    out.append(_claim(
        "elo", "RLHF raises Elo; PM-predicted Elo (174 x delta PM) overestimates the human Elo",
        "PM-predicted Elo overestimates crowdworker Elo (Fig 15 right, 35)",
        {"gold_elo_peak": float(gold[peak]), "gold_elo_final": float(gold[-1]),
         "pm_predicted_elo_final": float(pred[-1]), "peak_at_samples": e["samples"][peak]},
        [float(gold[peak] - 1.96 * err[peak]), float(gold[peak] + 1.96 * err[peak])],
        gold[peak] - 1.96 * err[peak] > 0 and overestimates,
        "gold-labeller Elo by maximum likelihood, anchored at the initial policy; held if the "
        "peak gold Elo is above 0 (95% CI) and the PM-predicted Elo is above the gold Elo at "
        "every later snapshot"))
  else:
    out.append(_claim("elo", "Elo", "Fig 15", None, None, False, "no elo.json"))
  return out


def _robustness_claim(rl: dict) -> dict:
  """Across PPO runs of one policy against train PMs of several sizes, scored by test PMs
  of several sizes: does the test-PM gain at the budget grow with the test PM's size?"""
  points = []
  for r in rl.get("runs") or []:
    for t in r["robustness"]["tests"].values():
      if t.get("params"):
        points.append((math.log(t["params"]), t["gain"]))
  if len({p for p, _ in points}) < 2:
    return _claim("larger_pm_more_robust", "larger PMs are more robust", "Fig 33", None, None, False,
                  "needs test PMs of >= 2 sizes")
  x, y = np.array(points).T
  slope, intercept = np.polyfit(x, y, 1)
  resid = y - (slope * x + intercept)
  se = float(np.sqrt(resid.var() * len(x) / max(len(x) - 2, 1) / max(((x - x.mean()) ** 2).sum(), 1e-12)))
  return _claim(
      "larger_pm_more_robust",
      "Scored by larger test PMs, RL gains more: larger PMs are more robust",
      "test-PM score at 200k samples rises with test-PM size (Fig 33)",
      {"slope_gain_per_ln_params": float(slope)}, [float(slope - 1.96 * se), float(slope + 1.96 * se)],
      slope - 1.96 * se > 0, f"{len(points)} (run, test PM) points at the fixed budget")


def _fmt(v: Any) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, dict):
    return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
  if isinstance(v, (list, tuple)):
    return "[" + ", ".join(_fmt(x) for x in v) + "]"
  return str(v)


def write_report(root: str, preset=None) -> dict:
  """numbers.json, report.md and report.html under `root` (see the module docstring)."""
  fig_dir = os.path.join(root, "figures")
  pm = _load(os.path.join(fig_dir, "pm_scaling", "pm_analysis.json"))
  mix = _load(os.path.join(fig_dir, "pm_mix", "pm_analysis.json"))
  rl = _load(os.path.join(fig_dir, "rl", "rl_analysis.json"))
  main_name = None
  if preset is not None:
    main_name = f"policy-{preset.policy_size}-pm-{preset.half_sizes[-1]}"
  claims = pm_claims(pm, mix) + rl_claims(rl, main_name, root)
  numbers = {"preset": getattr(preset, "name", None), "claims": claims,
             "pm_scaling": pm, "pm_mix": mix, "rl": rl}
  with open(os.path.join(root, "numbers.json"), "w") as f:
    json.dump(numbers, f, indent=2, default=_json_default)

  held = [c for c in claims if c["held"]]
  failed = [c for c in claims if not c["held"]]
  lines = [f"# hh-jax reproduction report ({getattr(preset, 'name', 'custom')})", "",
           f"{len(held)} of {len(claims)} claims of Bai et al. 2022 held at this scale.", "",
           "| claim | paper | ours | 95% CI | held |", "|---|---|---|---|---|"]
  for c in claims:
    lines.append(f"| **{c['id']}**: {c['claim']} | {c['paper']} | {_fmt(c['ours'])} | "
                 f"{_fmt(c['ci'])} | {'yes' if c['held'] else '**no**'} |")
  lines += ["", "## Did not hold at this scale", ""]
  lines += [f"- **{c['id']}**: {c['detail'] or c['claim']} (ours: {_fmt(c['ours'])})" for c in failed] \
      or ["- every claim held"]
  lines += ["", "## Figures", ""]
  for stem, caption in FIGURES:
    png = os.path.join(fig_dir, stem + ".png")
    if os.path.exists(png):
      lines += [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]
  with open(os.path.join(root, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  _write_html(root, lines)
  return numbers


def _write_html(root: str, md_lines: list[str]) -> None:
  """A self-contained page: the table as HTML, the figures inline as base64 PNGs."""
  out = ["<!doctype html><meta charset='utf-8'><title>hh-jax report</title>",
         "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px}</style>"]
  in_table = False
  for line in md_lines:
    if line.startswith("|"):
      cells = [c.strip() for c in line.strip("|").split("|")]
      if set("".join(cells)) <= {"-"}:
        continue
      if not in_table:
        out.append("<table>")
        in_table = True
      out.append("<tr>" + "".join(f"<td>{html.escape(c).replace('**', '')}</td>" for c in cells) + "</tr>")
      continue
    if in_table:
      out.append("</table>")
      in_table = False
    if line.startswith("!["):
      path = os.path.join(root, line[line.rindex("(") + 1:-1])
      with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
      out.append(f"<img style='max-width:100%' src='data:image/png;base64,{data}'>")
    elif line.startswith("#"):
      level = len(line) - len(line.lstrip("#"))
      out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
    elif line:
      out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
  with open(os.path.join(root, "report.html"), "w") as f:
    f.write("\n".join(out))


def _json_default(o):
  if isinstance(o, np.generic):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  raise TypeError(f"not JSON serialisable: {type(o)}")
