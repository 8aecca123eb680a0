"""The reproduction report: each claim of the paper beside our measurement, judged by the
criteria frozen before the runs (analysis/criteria.toml; analysis.criteria, analysis.claims).

Reads only what the analysis stage wrote under a results root,

    criteria.toml                         the frozen criteria (freeze_criteria; the packaged file if none)
    figures/pm_scaling/pm_analysis.json   PM scaling records, law and calibration
    figures/pm_mix/pm_analysis.json       the helpful / harmless mix sweep
    figures/rl/rl_analysis.json           PPO fits, gain gaps, robustness, best-of-n, Elo
    figures/rl_gold/rl_gold_analysis.json the PPO and ppo_ensemble runs' held-out gold snapshots

and writes, under the same root:

    numbers.json   every number in the report; `claims`: [{id, claim, paper, criterion, test,
                   requires, budget, verdict, held, reason, ours, ci, values, counts, per_seed,
                   detail, paper_faithful}], `criteria` (path, sha256, frozen), `paper_faithful`
    report.md      the claims table (criterion beside each verdict, a paper-faithful column),
                   what did not hold, what was not tested and why, every statistic, the PM
                   accuracies beside the shortcut baselines, the figures
    report.html    the same page with the figures inline

A verdict is "held", "not held" or "not tested"; the held sentence counts only tested claims.
`results_table` is the markdown claims table of report.md (`legacy_results_table` for a
numbers.json from before the criteria file); `sync_readme` puts it between the README's
`<!-- results:start -->` and `<!-- results:end -->` lines.
"""

from __future__ import annotations

import base64
import difflib
import html
import math
import os
import re
from typing import Any

from analysis import claims as claims_lib
from analysis import fits
from analysis import criteria as criteria_lib
from analysis.criteria import freeze_criteria, load_criteria  # noqa: F401 (the reproduction's entry points)
from analysis.runs import read_json, write_json

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
    ("ood/ood_auroc_vs_layer", "OOD detection of harmful requests: AUROC by layer and size (cf. Fig 22, 39)"),
    ("ood/ood_auroc_vs_k", "Few-shot outlier exposure: AUROC vs harmful examples k (cf. Fig 23)"),
    ("pm_weighting/pm_lambda_tradeoff", "Helpful / harmless accuracy vs lambda by PM size (cf. Fig 27)"),
    ("pm_weighting/pm_mix_sensitivity", "Accuracy vs % helpful data by PM size (cf. Fig 26)"),
    ("gao/gao_coefficients_vs_pm_size", "Gao et al. over-optimisation coefficients vs train-PM size"),
    ("policy_eval/alignment_tax", "Capability before and after RLHF by policy size (cf. Fig 3)"),
    ("online/online_vs_static", "Online RLHF rounds vs the static baseline, gold (cf. section 4.5)"),
    ("online/online_gold_vs_sqrt_kl",
     "Online RLHF: gold and PM score vs sqrt(KL), one line per round (cf. Fig 1 right)"),
    ("policy_eval/context_distillation", "PPO from the context-distilled vs the base LM, gold (cf. App A.1)"),
    ("rl_gold/rl_gold_heldout", "Held-out gold helpful, harmless and reply length during PPO (cf. Fig 13)"),
)

ANALYSIS_FILES = {"pm_scaling": "pm_scaling/pm_analysis.json", "pm_mix": "pm_mix/pm_analysis.json",
                  "rl": "rl/rl_analysis.json", "ood": "ood/ood_analysis.json",
                  "pm_lambda": "pm_lambda/pm_analysis.json",
                  "policy_eval": "policy_eval/policy_eval_analysis.json",
                  "online": "online/online_analysis.json",
                  "rl_gold": "rl_gold/rl_gold_analysis.json"}  # under <root>/figures

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


class ResultsBlockError(ValueError):
  """The README lacks a well-formed results block (see results_block)."""


def _load(path: str) -> dict | None:
  return read_json(path) if os.path.exists(path) else None


def _num(x) -> float | None:
  """x as a finite float, else None."""
  try:
    x = float(x)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------- claims


def judge_claims(criteria: dict, inputs: dict, main_run: str | None = None) -> list[dict]:
  """Every claim of the criteria, judged on one root's analysis outputs: one dict per claim with
  the criteria's fields, the statistic's values, counts and per-seed numbers, and
  verdict ("held" / "not held" / "not tested"), reason, ours (= values["value"]), ci, held."""
  out = []
  for spec in criteria["claims"]:
    stat = claims_lib.compute(spec, inputs, main_run)
    verdict, reason = criteria_lib.judge(spec, stat)
    values = stat.get("values", {})
    ci = [values.get("ci_low"), values.get("ci_high")]
    out.append({
        "id": spec["id"], "claim": spec["claim"], "paper": spec["paper"], "criterion": spec["criterion"],
        "test": spec["test"], "requires": spec["requires"], "budget": spec["budget"],
        "verdict": verdict, "held": verdict == "held", "reason": reason,
        "ours": _num(values.get("value")), "ci": ci if None not in map(_num, ci) else None,
        "values": values, "counts": stat.get("counts", {}), "per_seed": stat.get("per_seed", {}),
        "detail": stat.get("detail") or stat.get("not_tested", "")})
  return out


def paper_faithful_column(claims: list[dict], paper_claims: list[dict] | None) -> None:
  """Put each claim's paper-faithful verdict beside it (in place): {"verdict", "reason", "ours",
  "ci"} from the same claim judged on the paper-faithful root, or verdict "not run"."""
  by_id = {c["id"]: c for c in paper_claims or []}
  for c in claims:
    p = by_id.get(c["id"])
    c["paper_faithful"] = ({"verdict": "not run", "reason": "no paper-faithful run", "ours": None, "ci": None}
                           if p is None else {k: p[k] for k in ("verdict", "reason", "ours", "ci", "values")})


def load_inputs(root: str) -> dict:
  """The analysis outputs under <root>/figures (each None when absent)."""
  fig_dir = os.path.join(root, "figures")
  return {k: _load(os.path.join(fig_dir, rel)) for k, rel in ANALYSIS_FILES.items()}


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
  """(value, interval) as text, a float and its interval rounded to `interval_decimals` (at most
  4 significant digits of the value, for intervals of (near) zero width)."""
  places = interval_decimals(ci)
  if places is None or not isinstance(v, (int, float)) or isinstance(v, bool):
    return format_value(v), format_value(ci)
  if v and math.isfinite(v):  # a (near-)zero-width interval: no more than 4 significant digits
    places = min(places, max(0, 3 - int(math.floor(math.log10(abs(v))))))
  return _fixed(v, places), f"[{_fixed(ci[0], places)}, {_fixed(ci[1], places)}]"


def _fixed(x: float, places: int) -> str:
  """x to `places` decimals, a value that rounds to zero shown without a sign ("0.000", not
  "-0.000": the sign of a number below the interval's resolution is not known)."""
  text = f"{x:.{places}f}"
  return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_number(x: Any) -> str:
  """A number without an interval: 3 significant digits (integers as they are); None -> 'n/a'."""
  if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
    return "n/a" if x is None else str(x)
  if isinstance(x, int) or (math.isfinite(x) and x == round(x) and abs(x) >= 1):
    return f"{int(round(x))}"
  return f"{x:.3g}"


def estimate_cells(v: Any, ci) -> tuple[str, str]:
  """(value, interval) cells: rounded to `interval_decimals` when there is an interval, else
  3 significant digits and 'n/a'."""
  if interval_decimals(ci) is not None and isinstance(v, (int, float)):
    return format_estimate(v, ci)
  return format_number(v), "n/a"


def _row(cells) -> str:
  return "| " + " | ".join(_cell(str(x)) for x in cells) + " |"


def legacy_results_table(numbers: dict) -> str:
  """The claims table of a numbers.json written before the criteria file (claims with `held`
  only): claim | paper | ours | 95% CI | held."""
  lines = ["| claim | paper | ours | 95% CI | held |", "|---|---|---|---|---|"]
  for c in numbers["claims"]:
    ours, ci = format_estimate(c["ours"], c["ci"])
    lines.append(_row([f"**{c['id']}**: {c['claim']}", c["paper"], ours, ci, "yes" if c["held"] else "**no**"]))
  return "\n".join(lines)


def verdict_text(verdict: str, reason: str = "") -> str:
  """'held', '**not held**', or 'not tested: <reason>' (a reason is part of a not-tested verdict)."""
  if verdict == "not held":
    return "**not held**"
  return f"{verdict}: {reason}" if verdict == "not tested" and reason else verdict


def results_table(numbers: dict) -> str:
  """The markdown claims table of numbers.json, one row per claim and one value per cell:
  claim | paper | ours | 95% CI | criterion | verdict | paper-faithful. `ours` is the claim's
  headline statistic, rounded to the precision its interval over seeds supports. A numbers.json
  from before the criteria file gets `legacy_results_table`."""
  if not any("verdict" in c for c in numbers["claims"]):
    return legacy_results_table(numbers)
  lines = ["| claim | paper | ours | 95% CI | criterion | verdict | paper-faithful |",
           "|---|---|---|---|---|---|---|"]
  for c in numbers["claims"]:
    ours, ci = estimate_cells(c["ours"], c["ci"])
    pf = c.get("paper_faithful") or {"verdict": "not run"}
    lines.append(_row([f"**{c['id']}**: {c['claim']}", c["paper"], ours, ci, c["criterion"],
                       verdict_text(c["verdict"], c["reason"]), verdict_text(pf["verdict"])]))
  return "\n".join(lines)


def verdict_counts(claims: list[dict]) -> dict[str, int]:
  """{"held", "not held", "not tested"}: how many claims have each verdict."""
  return {v: sum(c.get("verdict") == v for c in claims) for v in criteria_lib.VERDICTS}


def held_sentence(numbers: dict, claims: list[dict] | None = None) -> str:
  """'X of Y tested claims of Bai et al. 2022 held at this scale; Z not tested.' (a not-tested
  claim is not counted as failed)."""
  claims = numbers["claims"] if claims is None else claims
  if not any("verdict" in c for c in claims):
    return f"{sum(c['held'] for c in claims)} of {len(claims)} claims of Bai et al. 2022 held at this scale."
  n = verdict_counts(claims)
  tested = n["held"] + n["not held"]
  return (f"{n['held']} of {tested} tested claims of Bai et al. 2022 held at this scale; "
          f"{n['not tested']} not tested.")


def _value_rows(values: dict) -> list[tuple[str, Any, Any]]:
  """(name, estimate, [lo, hi] or None) for each named value, its _ci_low/_ci_high folded in."""
  rows = []
  for k, v in values.items():
    if k.endswith(("_ci_low", "_ci_high")) or k in ("ci_low", "ci_high"):
      continue
    lo, hi = (values.get("ci_low"), values.get("ci_high")) if k == "value" else \
        (values.get(f"{k}_ci_low"), values.get(f"{k}_ci_high"))
    rows.append((k, v, [lo, hi] if lo is not None and hi is not None else None))
  return rows


def statistics_table(claims: list[dict]) -> list[str]:
  """Every named value of every claim's statistic: claim | value | ours | 95% CI | seeds |
  paper-faithful | its 95% CI."""
  lines = ["| claim | value | ours | 95% CI | seeds | paper-faithful | paper-faithful 95% CI |",
           "|---|---|---|---|---|---|---|"]
  for c in claims:
    pf_values = ((c.get("paper_faithful") or {}).get("values")) or {}
    pf_rows = {k: (v, ci) for k, v, ci in _value_rows(pf_values)}
    for k, v, ci in _value_rows(c["values"]):
      ours, ours_ci = estimate_cells(v, ci)
      pf, pf_ci = estimate_cells(*pf_rows[k]) if k in pf_rows else ("not run", "n/a")
      lines.append(_row([c["id"], k, ours, ours_ci, format_number(c["counts"].get("seeds")), pf, pf_ci]))
  return lines


def baselines_table(pm: dict | None) -> list[str]:
  """Each cell of the main PM grid beside the shortcut baselines and the Bayes ceiling:
  size | pairs | seeds | accuracy | 95% CI | shorter reply | distinct tokens | bag of words | Bayes
  ceiling. The accuracy's interval is mean -+ t(0.975, k-1) sd / sqrt(k) over its k seeds."""
  if not pm or not pm.get("n_runs"):
    return ["no PM scaling runs"]
  family = pm["scaling"]["family"]
  lines = ["| PM size | pairs | seeds | accuracy | 95% CI | shorter reply | distinct tokens | "
           "bag of words | Bayes ceiling |", "|---|---|---|---|---|---|---|---|---|"]
  for cell in (c for c in pm["table"]["cells"] if c["family"] == family):
    n, sd = cell["n_seeds"], _num(cell.get("accuracy_std"))
    half = fits.t975(n - 1) * sd / math.sqrt(n) if n > 1 and sd is not None else None
    mean = cell["accuracy_mean"]
    acc, ci = estimate_cells(mean, [mean - half, mean + half] if half else None)
    others = [cell.get(f"{k}_mean") for k in ("shorter_baseline", "distinct_baseline", "bow_baseline",
                                              "bayes_ceiling")]
    lines.append(_row([cell["model_size"], cell["num_train"], n, acc, ci,
                       *(f"{x:.3f}" if x is not None else "n/a" for x in others)]))
  return lines


def _criteria_line(criteria: dict) -> str:
  where = ("frozen in `criteria.toml` before the runs" if criteria.get("frozen")
           else "not frozen in this root: the packaged `analysis/criteria.toml`")
  return f"Criteria: {where} (sha256 `{criteria.get('sha256', '?')[:16]}`)."


def report_lines(numbers: dict, fig_dir: str) -> list[str]:
  """report.md: title, the held sentences, the claims table, what did not hold and what was not
  tested (with the reasons), every statistic, the PM accuracies beside the baselines, the figures."""
  claims = numbers["claims"]
  lines = [f"# hh-jax reproduction report ({numbers['preset'] or 'custom'})", "", held_sentence(numbers), ""]
  if (numbers.get("paper_faithful") or {}).get("claims"):
    lines += [f"Paper-faithful variant: {held_sentence(numbers, numbers['paper_faithful']['claims'])}", ""]
  if numbers.get("criteria"):
    lines += [_criteria_line(numbers["criteria"]), ""]
  lines += [results_table(numbers), "", "## Did not hold", ""]
  lines += [f"- **{c['id']}**: {c['criterion']} ({c['reason']})" for c in claims
            if c["verdict"] == "not held"] or ["- every tested claim held"]
  lines += ["", "## Not tested", ""]
  lines += [f"- **{c['id']}**: {c['reason']} (needs: {c['budget']})" for c in claims
            if c["verdict"] == "not tested"] or ["- every claim was tested"]
  lines += ["", "## Every statistic", "", *statistics_table(claims), "",
            "## PM accuracy beside the shortcut baselines", "", *baselines_table(numbers.get("pm_scaling")),
            "", "## Figures", ""]
  for stem, caption in FIGURES:
    if os.path.exists(os.path.join(fig_dir, stem + ".png")):
      lines += [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]
  return "\n".join(lines).split("\n")


def _paper_claims(criteria: dict, paper_root: str | None, main_run: str | None) -> list[dict] | None:
  """The claims judged on the paper-faithful root (None when it has no analysis outputs); its
  criteria must be the same file (CriteriaChangedError otherwise)."""
  if not paper_root or not os.path.isdir(os.path.join(paper_root, "figures")):
    return None
  theirs = load_criteria(paper_root)
  if theirs["sha256"] != criteria["sha256"]:
    raise criteria_lib.CriteriaChangedError(
        f"{paper_root} is judged by criteria {theirs['path']} (sha256 {theirs['sha256'][:12]}), "
        f"not those of the main root ({criteria['sha256'][:12]}): one column, one criteria file")
  return judge_claims(criteria, load_inputs(paper_root), main_run)


def write_report(root: str, preset_name: str | None = None, main_run: str | None = None,
                 paper_root: str | None = None) -> dict:
  """numbers.json, report.md and report.html under `root` from its analysis outputs, every claim
  judged by the criteria frozen in root (`load_criteria`).

  main_run: the basename of the main PPO run directory (e.g. "policy-100k-pm-100k", with or
  without its seed suffix), whose config the per-run RL claims use; None: the first run's.
  paper_root: the results root of the paper-faithful variant, judged by the same criteria into
  the "paper-faithful" column ("not run" when None or not analysed). Returns numbers.
  """
  criteria = load_criteria(root)
  inputs = load_inputs(root)
  claims = judge_claims(criteria, inputs, main_run)
  paper_claims = _paper_claims(criteria, paper_root, main_run)
  paper_faithful_column(claims, paper_claims)
  numbers = {"preset": preset_name,
             "criteria": {k: criteria[k] for k in ("path", "sha256", "frozen", "version")},
             "claims": claims,
             "paper_faithful": None if paper_claims is None else {"root": os.path.abspath(paper_root),
                                                                  "claims": paper_claims},
             **inputs}
  write_json(os.path.join(root, "numbers.json"), numbers)
  lines = report_lines(numbers, os.path.join(root, "figures"))
  with open(os.path.join(root, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(root, "report.html"), "w") as f:
    f.write(html_page(root, lines))
  return numbers


def _table_row(line: str) -> list[str]:
  return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _inline(text: str) -> str:
  """Markdown inline marks as HTML: **bold** and `code`, the rest escaped."""
  text = html.escape(text)
  text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
  return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def html_page(root: str, md_lines: list[str]) -> str:
  """A self-contained page from report.md's lines: tables as HTML (first row a header), lists,
  headings, and the figures inline as base64 PNGs."""
  out = ["<!doctype html><meta charset='utf-8'><title>hh-jax report</title>",
         "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px;"
         "vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;white-space:nowrap}</style>"]
  state = None  # "table", "header" (a table before its first row) or "list"
  for line in md_lines:
    kind = "table" if line.startswith("|") else "list" if line.startswith("- ") else None
    if state and (kind is None or (kind == "list") != (state == "list")):
      out.append("</ul>" if state == "list" else "</table>")
      state = None
    if kind == "table":
      cells = _table_row(line)
      if set("".join(cells)) <= {"-"}:
        continue
      tag = "th" if state is None else "td"
      state = "table"
      if tag == "th":
        out.append("<table>")
      out.append("<tr>" + "".join(
          f"<{tag}{_num_class(c, tag)}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
    elif kind == "list":
      if state is None:
        out.append("<ul>")
        state = "list"
      out.append(f"<li>{_inline(line[2:])}</li>")
    elif line.startswith("!["):
      with open(os.path.join(root, line[line.rindex("(") + 1:-1]), "rb") as f:
        data = base64.b64encode(f.read()).decode()
      out.append(f"<img style='max-width:100%' src='data:image/png;base64,{data}'>")
    elif line.startswith("#"):
      level = len(line) - len(line.lstrip("#"))
      out.append(f"<h{level}>{_inline(line.lstrip('# '))}</h{level}>")
    elif line:
      out.append(f"<p>{_inline(line)}</p>")
  if state:
    out.append("</ul>" if state == "list" else "</table>")
  return "\n".join(out)


def _num_class(cell: str, tag: str) -> str:
  return " class='num'" if tag == "td" and re.fullmatch(r"[-\[\]0-9., ]+", cell) else ""


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
