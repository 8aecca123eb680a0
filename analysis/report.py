"""The reproduction report: each claim of the paper beside our measurement.

Reads only what the analysis stage wrote under a results root,

    figures/pm_scaling/pm_analysis.json   PM scaling law and calibration
    figures/pm_mix/pm_analysis.json       the helpful / harmless mix sweep
    figures/rl/rl_analysis.json           PPO fits, train/test gain gaps, robustness, best-of-n, Elo

and writes, under the same root:

    numbers.json   every number in the report; `claims`: [{id, claim, paper, ours, ci, held, detail}]
    report.md      the claims table, the figures, and what did not hold at this scale
    report.html    the same page with the figures inline

`results_table` is the markdown claims table of report.md; `sync_readme` puts it between the
README's `<!-- results:start -->` and `<!-- results:end -->` lines.
"""

from __future__ import annotations

import base64
import difflib
import html
import math
import os
import re
from typing import Any

import numpy as np

from analysis.runs import read_json, write_json

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

ANALYSIS_FILES = {"pm_scaling": "pm_scaling/pm_analysis.json", "pm_mix": "pm_mix/pm_analysis.json",
                  "rl": "rl/rl_analysis.json"}  # under <root>/figures

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


class ResultsBlockError(ValueError):
  """The README lacks a well-formed results block (see results_block)."""


def _load(path: str) -> dict | None:
  return read_json(path) if os.path.exists(path) else None


def _claim(cid, claim, paper, ours, ci, held, detail="") -> dict:
  return {"id": cid, "claim": claim, "paper": paper, "ours": ours, "ci": ci,
          "held": bool(held) if held is not None else False, "detail": detail}


def _num(x) -> float | None:
  """x as a finite float, else None."""
  try:
    x = float(x)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


def _ci95(estimate, stderr) -> list[float] | None:
  """[estimate - 1.96 stderr, estimate + 1.96 stderr] (normal 95% interval); None if either is missing."""
  estimate, stderr = _num(estimate), _num(stderr)
  if estimate is None or stderr is None:
    return None
  return [estimate - 1.96 * stderr, estimate + 1.96 * stderr]


# ----------------------------------------------------------------------------- PM claims


def _scaling_claims(pm: dict | None) -> list[dict]:
  """Accuracy per e-fold of parameters (b) and of data (c), and the joint law's R^2 (Fig 7, 32)."""
  fit = (((pm or {}).get("scaling") or {}).get("metrics") or {}).get("accuracy")
  if not fit:
    return [_claim(cid, "PM scaling", "Fig 7", None, None, False, "no PM scaling fit")
            for cid in ("pm_accuracy_vs_params", "pm_accuracy_vs_data", "pm_loglinear_fit")]
  f, ci = fit["fit"], fit["ci95"]
  # The law is about a PM's expected accuracy at (P, D): the claim is judged on the fit to
  # the seed means of the cells; the run-level R^2 (capped by seed-to-seed noise) is beside it.
  fc = fit.get("fit_cells") or f
  r2_cells = _num(fc.get("r2"))
  b_above_0 = bool(ci.get("b")) and ci["b"][0] > 0
  c_above_0 = bool(ci.get("c")) and ci["c"][0] > 0
  return [
      _claim("pm_accuracy_vs_params", "PM accuracy rises log-linearly with model size",
             "+0.007 accuracy per e-fold of parameters (helpful-only fit; Fig 7, 32)",
             f["b"], ci.get("b"), b_above_0,
             f"b = d acc / d ln P over {fit['n_runs']} runs; 95% bootstrap CI over seeds"),
      _claim("pm_accuracy_vs_data", "PM accuracy rises log-linearly with the number of comparisons",
             "+0.015 accuracy per e-fold of comparisons (helpful-only fit; Fig 7, 32)",
             f["c"], ci.get("c"), c_above_0, "c = d acc / d ln D"),
      _claim("pm_loglinear_fit", "acc = a + b ln P + c ln D describes the whole grid",
             "acc = 0.72 + 0.007 ln(P/1e11) + 0.015 ln(D/8e4)",
             r2_cells, ci.get("r2_cells", ci.get("r2")),
             r2_cells is not None and r2_cells >= 0.9 and f["b"] > 0 and f["c"] > 0 and b_above_0 and c_above_0,
             f"R^2 of the joint fit to the seed means of the {fit.get('n_cells')} (P, D) cells "
             f"(held if >= 0.9 with b and c CIs above 0); over the {fit['n_runs']} single runs "
             f"R^2 = {f['r2']:.3f}; a={f['a']:.3f}, b={f['b']:.4f}, c={f['c']:.4f}"),
  ]


def _calibration_claim(pm: dict | None) -> dict:
  """Expected calibration error of the largest PM's score gaps (Fig 9); held if ECE < 0.05."""
  calib = (pm or {}).get("calibration")
  if not calib:
    return _claim("pm_calibration", "PM calibration", "Fig 9", None, None, False, "no scores")
  ece = _num(calib["pooled"].get("ece"))
  return _claim(
      "pm_calibration", "PM score gaps are calibrated: P(chosen preferred) = 1/(1+e^-gap)",
      "well calibrated on helpful data, slightly under-confident on the HH mix (Fig 9)",
      ece, None, ece is not None and ece < 0.05,
      f"expected calibration error over {calib.get('n_pairs')} test pairs (held if < 0.05)")


def _tension_claim(mix: dict | None) -> dict:
  """Helpful-only PM on harmless pairs and harmless-only PM on helpful pairs both < 0.5, every
  intermediate mix > 0.5 on both (Fig 19)."""
  rows = (mix or {}).get("mix") or []
  if not rows:
    return _claim("helpful_harmless_tension", "helpful/harmless tension", "Fig 19", None, None,
                  False, "no mix sweep")
  by_frac: dict[float, list[dict]] = {}
  for r in rows:
    by_frac.setdefault(r["helpful_fraction"], []).append(r)
  lo, hi = min(by_frac), max(by_frac)
  help_only_on_harm = float(np.mean([r["harmless"] for r in by_frac[hi]]))
  harm_only_on_help = float(np.mean([r["helpful"] for r in by_frac[lo]]))
  mids = [r for f, rs in by_frac.items() if lo < f < hi for r in rs]
  mix_min = float(min(min(r["helpful"], r["harmless"]) for r in mids)) if mids else None
  held = help_only_on_harm < 0.5 and harm_only_on_help < 0.5 and (mix_min or 0) > 0.5
  return _claim(
      "helpful_harmless_tension",
      "A PM trained on helpful data only is below chance on harmless pairs (and vice versa); "
      "a mix is above chance on both",
      "well below chance on the other distribution (Fig 19)",
      {"helpful_only_on_harmless": help_only_on_harm, "harmless_only_on_helpful": harm_only_on_help,
       "mixed_worst": mix_min}, None, held,
      f"{len(rows)} (size, fraction) cells")


def pm_claims(pm: dict | None, mix: dict | None) -> list[dict]:
  """The PM claims from pm_scaling's and pm_mix's pm_analysis.json (either may be None)."""
  return _scaling_claims(pm) + [_calibration_claim(pm), _tension_claim(mix)]


# ----------------------------------------------------------------------------- RL claims


def main_run(rl: dict, name: str | None) -> dict | None:
  """The rl_analysis.json entry of the PPO run whose directory is called `name` (the first run
  when `name` is None or matches none)."""
  runs = rl.get("runs") or []
  for r in runs:
    if name and os.path.basename(r["name"]) == os.path.basename(name):
      return r
  return runs[0] if runs else None


def _sqrt_kl_claim(main: dict) -> dict:
  """Train-PM score linear in sqrt(KL) over the first half of the main run: R^2 >= 0.95, slope > 0."""
  f = main["score_vs_sqrt_kl"]["train"] or {}
  slope, r2 = _num(f.get("slope")), _num(f.get("r2"))
  return _claim(
      "rl_reward_linear_in_sqrt_kl", "During PPO the PM score rises linearly in sqrt(KL)",
      "roughly linear for much of training, parallel across policy sizes (Fig 4, 13)",
      {"slope": slope, "r2": r2}, _ci95(slope, f.get("slope_stderr")),
      r2 is not None and r2 >= 0.95 and (slope or 0) > 0,
      f"{main['name']}: linear fit over the first half of training")


def _divergence_claim(main: dict) -> dict:
  """Per test PM, the gain gap of `analysis.rl.gain_gaps`: held if at every test PM the end gap
  is > 0 and the early gap is below half of it."""
  gaps = main.get("gain_gaps") or {}
  if not gaps:
    return _claim("train_test_pm_divergence", "train vs test PM", "Fig 4", None, None, False,
                  "no test PMs")
  ends = {n: _num(g.get("end")) for n, g in gaps.items()}
  earlies = {n: _num(g.get("early")) for n, g in gaps.items()}
  held = all(ends[n] is not None and earlies[n] is not None and ends[n] > 0 and earlies[n] < 0.5 * ends[n]
             for n in gaps)
  return _claim(
      "train_test_pm_divergence",
      "Train- and test-PM scores agree early in RL, then the train PM pulls ahead",
      "agree up to ~150k RL samples, then diverge with the train PM higher (Fig 4 left)",
      gaps, None, held,
      "gain gap = (train-PM gain) - (test-PM gain) since the first iteration, averaged over "
      "5 iterations, at 20% of training (early) and at the end")


def _robustness_claim(rl: dict) -> dict:
  """The slope of test-PM gain vs ln(test-PM params) across runs (`analysis.rl.robustness_fit`):
  held if its 95% interval is above 0."""
  fit = rl.get("robustness_fit")
  if not fit:
    return _claim("larger_pm_more_robust", "larger PMs are more robust", "Fig 33", None, None, False,
                  "needs test PMs of >= 2 sizes")
  slope = _num(fit.get("slope"))
  ci = _ci95(slope, fit.get("slope_stderr"))
  return _claim(
      "larger_pm_more_robust",
      "Scored by larger test PMs, RL gains more: larger PMs are more robust",
      "test-PM score at 200k samples rises with test-PM size (Fig 33)",
      {"slope_gain_per_ln_params": slope}, ci, ci is not None and ci[0] > 0,
      f"{fit.get('n_points')} (run, test PM) points at the fixed budget")


def _best_of_n_claim(rl: dict) -> dict:
  """Train-PM score strictly rising in n, and the gold score at the largest n above n = 1 (Fig 36)."""
  bons = rl.get("best_of_n") or []
  if not bons:
    return _claim("best_of_n", "best-of-n", "Fig 36", None, None, False, "no bon.json")
  b = bons[0]
  train = np.asarray(b["scores"]["score_train"], float)
  gold = np.asarray(b["scores"].get("gold_hh", []), float)
  held = bool(np.all(np.diff(train) > 0)) and (len(gold) == 0 or gold[-1] > gold[0])
  return _claim(
      "best_of_n", "Best-of-n sampling raises the PM score smoothly, with KL = log n - (n-1)/n",
      "best-of-k Elo rises over k = 1..64; online RLHF ~ best-of-64 (Fig 36)",
      {"n_max": b["n"][-1], "kl_bound": b["kl_bound"][-1], "train_gain": float(train[-1] - train[0]),
       "gold_gain": float(gold[-1] - gold[0]) if len(gold) else None}, None, held,
      "expected best-of-n score selected by the train PM (unbiased order-statistic estimator)")


def _elo_claim(rl: dict) -> dict:
  """Peak gold Elo above 0 (95% CI) and PM-predicted Elo above gold Elo after the first snapshot (Fig 15)."""
  elos = rl.get("elo") or []
  if not elos:
    return _claim("elo", "Elo", "Fig 15", None, None, False, "no elo.json")
  e = elos[0]
  gold = np.asarray(e["elo_gold"], float)
  err = np.asarray(e["elo_gold_stderr"], float)
  pred = np.asarray(e["elo_pm_predicted"], float)
  peak = int(np.argmax(gold - 1.96 * err))
  overestimates = bool(np.all(pred[1:] > gold[1:]))
  return _claim(
      "elo", "RLHF raises Elo; PM-predicted Elo (174 x delta PM) overestimates the human Elo",
      "PM-predicted Elo overestimates crowdworker Elo (Fig 15 right, 35)",
      {"gold_elo_peak": float(gold[peak]), "gold_elo_final": float(gold[-1]),
       "pm_predicted_elo_final": float(pred[-1]), "peak_at_samples": e["samples"][peak]},
      _ci95(gold[peak], err[peak]), gold[peak] - 1.96 * err[peak] > 0 and overestimates,
      "gold-labeller Elo by maximum likelihood, anchored at the initial policy; held if the "
      "peak gold Elo is above 0 (95% CI) and the PM-predicted Elo is above the gold Elo at "
      "every later snapshot")


def rl_claims(rl: dict | None, main_name: str | None = None) -> list[dict]:
  """The RL claims from rl_analysis.json (None: every RL claim not held); `main_name` picks the
  PPO run of the per-run claims (see main_run)."""
  rl = rl or {}
  main = main_run(rl, main_name)
  if main:
    out = [_sqrt_kl_claim(main), _divergence_claim(main), _robustness_claim(rl)]
  else:
    out = [_claim(cid, "PPO", "Fig 4", None, None, False, "no PPO runs")
           for cid in ("rl_reward_linear_in_sqrt_kl", "train_test_pm_divergence", "larger_pm_more_robust")]
  return out + [_best_of_n_claim(rl), _elo_claim(rl)]


# ----------------------------------------------------------------------------- tables and pages


def format_value(v: Any) -> str:
  """A number or a (nested) dict / list of them as short text: floats to 4 significant digits."""
  if v is None:
    return "n/a"
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, dict):
    return ", ".join(f"{k} ({format_value(x)})" if isinstance(x, dict) else f"{k}={format_value(x)}"
                     for k, x in v.items())
  if isinstance(v, (list, tuple)):
    return "[" + ", ".join(format_value(x) for x in v) + "]"
  return str(v)


def _cell(text: str) -> str:
  return text.replace("|", "\\|")


def interval_decimals(ci) -> int | None:
  """Decimal places an interval supports: those of its width's second significant digit
  (width 0.0019 -> 4), so a value is shown no more precisely than it is known."""
  if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(isinstance(x, (int, float)) for x in ci):
    return None
  width = abs(ci[1] - ci[0])
  if not math.isfinite(width) or width == 0:
    return None
  return max(0, 1 - int(math.floor(math.log10(width))))


def format_estimate(v: Any, ci) -> tuple[str, str]:
  """(value, interval) as text, a float and its interval rounded to `interval_decimals`."""
  places = interval_decimals(ci)
  if places is None or not isinstance(v, (int, float)) or isinstance(v, bool):
    return format_value(v), format_value(ci)
  fmt = lambda x: f"{x:.{places}f}"  # noqa: E731
  return fmt(v), f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def results_table(numbers: dict) -> str:
  """The markdown claims table of numbers.json: claim | paper | ours | 95% CI | held, one row per
  claim; a single estimate with an interval is rounded to the precision the interval supports."""
  lines = ["| claim | paper | ours | 95% CI | held |", "|---|---|---|---|---|"]
  for c in numbers["claims"]:
    ours, ci = format_estimate(c["ours"], c["ci"])
    cells = [f"**{c['id']}**: {c['claim']}", c["paper"], ours, ci, "yes" if c["held"] else "**no**"]
    lines.append("| " + " | ".join(_cell(str(x)) for x in cells) + " |")
  return "\n".join(lines)


def held_sentence(numbers: dict) -> str:
  claims = numbers["claims"]
  return f"{sum(c['held'] for c in claims)} of {len(claims)} claims of Bai et al. 2022 held at this scale."


def report_lines(numbers: dict, fig_dir: str) -> list[str]:
  """report.md: title, the held sentence, the claims table, the failed claims, the figures present."""
  failed = [c for c in numbers["claims"] if not c["held"]]
  lines = [f"# hh-jax reproduction report ({numbers['preset'] or 'custom'})", "", held_sentence(numbers), "",
           results_table(numbers), "", "## Did not hold at this scale", ""]
  lines += [f"- **{c['id']}**: {c['detail'] or c['claim']} (ours: {format_value(c['ours'])})" for c in failed] \
      or ["- every claim held"]
  lines += ["", "## Figures", ""]
  for stem, caption in FIGURES:
    if os.path.exists(os.path.join(fig_dir, stem + ".png")):
      lines += [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]
  return "\n".join(lines).split("\n")


def write_report(root: str, preset_name: str | None = None, main_run: str | None = None) -> dict:
  """numbers.json, report.md and report.html under `root` from its analysis outputs.

  main_run: the basename of the main PPO run directory (e.g. "policy-100k-pm-100k"), whose
  fits the per-run RL claims use; None: the first run in rl_analysis.json. Returns numbers.
  """
  fig_dir = os.path.join(root, "figures")
  loaded = {k: _load(os.path.join(fig_dir, rel)) for k, rel in ANALYSIS_FILES.items()}
  claims = pm_claims(loaded["pm_scaling"], loaded["pm_mix"]) + rl_claims(loaded["rl"], main_run)
  numbers = {"preset": preset_name, "claims": claims, **loaded}
  write_json(os.path.join(root, "numbers.json"), numbers)
  lines = report_lines(numbers, fig_dir)
  with open(os.path.join(root, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(root, "report.html"), "w") as f:
    f.write(html_page(root, lines))
  return numbers


def _table_row(line: str) -> list[str]:
  return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def html_page(root: str, md_lines: list[str]) -> str:
  """A self-contained page from report.md's lines: the table as HTML, the figures inline as base64 PNGs."""
  out = ["<!doctype html><meta charset='utf-8'><title>hh-jax report</title>",
         "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px}</style>"]
  in_table = False
  for line in md_lines:
    if line.startswith("|"):
      cells = _table_row(line)
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
      with open(os.path.join(root, line[line.rindex("(") + 1:-1]), "rb") as f:
        data = base64.b64encode(f.read()).decode()
      out.append(f"<img style='max-width:100%' src='data:image/png;base64,{data}'>")
    elif line.startswith("#"):
      level = len(line) - len(line.lstrip("#"))
      out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
    elif line:
      out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
  return "\n".join(out)


# ----------------------------------------------------------------------------- README


def results_block(text: str) -> str:
  """The text strictly between the README_START and README_END lines, stripped.

  Raises ResultsBlockError unless each marker is on a line of its own, once, start before end.
  """
  lines = text.split("\n")
  starts = [i for i, l in enumerate(lines) if l.strip() == README_START]
  ends = [i for i, l in enumerate(lines) if l.strip() == README_END]
  if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
    raise ResultsBlockError(f"need one {README_START!r} line followed by one {README_END!r} line "
                     f"(found {len(starts)} and {len(ends)})")
  return "\n".join(lines[starts[0] + 1:ends[0]]).strip()


def fill_results_block(text: str, table: str) -> str:
  """`text` with the lines between README_START and README_END replaced by `table` (blank line each side)."""
  results_block(text)  # checks the markers
  lines = text.split("\n")
  start = next(i for i, l in enumerate(lines) if l.strip() == README_START)
  end = next(i for i, l in enumerate(lines) if l.strip() == README_END)
  return "\n".join(lines[:start + 1] + ["", table.strip(), ""] + lines[end:])


def sync_readme(numbers_path: str, readme_path: str, check: bool = False) -> str:
  """Put results_table(numbers.json) in the README's results block; return the unified diff of the
  README ('' when it already matched). check=True only returns the diff, writing nothing."""
  table = results_table(read_json(numbers_path))
  with open(readme_path) as f:
    old = f.read()
  try:
    new = fill_results_block(old, table)
  except ResultsBlockError as e:
    raise ResultsBlockError(f"{readme_path}: {e}") from None
  diff = "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                      readme_path, f"{readme_path} (from {numbers_path})"))
  if diff and not check:
    with open(readme_path, "w") as f:
      f.write(new)
  return diff
