"""`hh-jax analyze`: fits, paper-style figures and the report, from run directories.

    hh-jax analyze {pm,rl,all} ROOT --out DIR    fits and figures: <out>/pm_analysis.json or
                                                 <out>/rl_analysis.json, a PNG and a PDF per figure
    hh-jax analyze report ROOT [--preset NAME] [--main-run NAME] [--paper-root ROOT2]
                                                 numbers.json, report.md, report.html from
                                                 ROOT/figures/{pm_scaling,pm_mix,rl}/*_analysis.json,
                                                 judged by ROOT/criteria.toml (analysis/criteria.toml
                                                 when not frozen); ROOT2's verdicts in a second column
    hh-jax analyze readme-table [--numbers docs/worlds/v4/laptop/laptop-ws0/numbers.json] [--readme README.md] [--check]
                                                 the README's claims table from numbers.json

Pieces that are missing (no mix sweep, no bon.json, unfinished runs) are skipped with a
printed note.
"""

from __future__ import annotations

import argparse
import os
import sys

from analysis import plots, report, worlds
from analysis import pm as pm_lib
from analysis import rl as rl_lib
from analysis.criteria import CriteriaChangedError, CriteriaError
from analysis.runs import RunFileError, discover, find_files, write_json


def _save_all(figures: dict, out_dir: str) -> list[str]:
  written = []
  for stem, fig in figures.items():
    written += plots.save(fig, out_dir, stem)
  return written


def _write(found, result: dict, figures: dict, notes: list, out_dir: str, json_name: str) -> dict:
  """Save the figures and the result JSON; return {"result", "figures", "notes", "files", "skipped"}."""
  result["skipped_unfinished"] = found.skipped
  notes = notes + [f"figure {stem}: {p}" for stem, fig in figures.items() for p in plots.layout_problems(fig)]
  os.makedirs(out_dir, exist_ok=True)
  files = _save_all(figures, out_dir)
  json_path = os.path.join(out_dir, json_name)
  write_json(json_path, result)
  return {"result": result, "figures": figures, "notes": notes, "files": files + [json_path],
          "skipped": found.skipped}


def run_pm(root: str, out_dir: str, n_boot: int = 1000, seed: int = 0) -> dict:
  """PM analysis of every finished PM run under root; returns {"result", "figures", "notes", "files"}."""
  found = discover(root)
  result, figures, notes = pm_lib.analyze_pm(found.runs, n_boot=n_boot, seed=seed)
  return _write(found, result, figures, notes, out_dir, "pm_analysis.json")


RL_STAGES = ("ppo", "best_of_n", "elo")


def _in_stages(root: str, path: str) -> bool:
  """Whether path (under root) lies in one of RL_STAGES' directories of root."""
  return os.path.relpath(path, root).split(os.sep)[0] in RL_STAGES


def run_rl(root: str, out_dir: str, budget: float | None = None) -> dict:
  """RL analysis of every finished PPO run, bon.json and elo.json under root. In a reproduction
  root (one with a ppo/ directory) only its ppo, best_of_n and elo stages are read: PPO from
  the distilled model, an ensemble reward, or a paper-faithful variant under the root are other
  studies, and would otherwise enter the main config's seeds and the robustness fits."""
  found = discover(root)
  runs, bon, elo = found.runs, find_files(root, "bon.json"), find_files(root, "elo.json")
  if os.path.isdir(os.path.join(root, "ppo")):
    runs = [r for r in runs if _in_stages(root, r.dir)]
    bon, elo = [p for p in bon if _in_stages(root, p)], [p for p in elo if _in_stages(root, p)]
  result, figures, notes = rl_lib.analyze_rl(runs, bon, elo, budget=budget)
  return _write(found, result, figures, notes, out_dir, "rl_analysis.json")


def _print_summary(name: str, out: dict, lines: list[str]) -> None:
  for line in lines:
    print(line)
  for d in out["skipped"]:
    print(f"  skipped unfinished run (no summary.json): {d}")
  for note in out["notes"]:
    print(f"  note: {note}")
  print(f"  {name}: wrote {len(out['files'])} files to {os.path.dirname(out['files'][-1])}")


def _fit_parser(sub, name: str, help_text: str) -> None:
  p = sub.add_parser(name, help=help_text)
  p.add_argument("root", help="results root holding run directories (searched recursively)")
  p.add_argument("--out", required=True, help="output directory for figures and JSON")
  p.add_argument("--n_boot", type=int, default=1000, help="bootstrap replicates for the scaling-law CIs")
  p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
  p.add_argument("--budget", type=float, default=None,
                 help="RL sample budget for the robustness plot (default: each run's last iteration)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="hh-jax analyze", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="what", required=True, metavar="{pm,rl,all,report,worlds,readme-table}")
  _fit_parser(sub, "pm", "PM scaling, calibration, mix and turn analysis")
  _fit_parser(sub, "rl", "PPO, best-of-n and Elo analysis")
  _fit_parser(sub, "all", "pm and rl into one output directory")
  p = sub.add_parser("report", help="numbers.json, report.md, report.html from ROOT/figures/*")
  p.add_argument("root", help="results root whose figures/ holds the analysis outputs")
  p.add_argument("--preset", default=None, help="preset name for the title and numbers.json")
  p.add_argument("--main-run", default=None, dest="main_run",
                 help="basename of the main PPO run directory (default: the first run)")
  p.add_argument("--paper-root", default=None, dest="paper_root",
                 help="results root of the paper-faithful variant: its verdicts fill the "
                      "report's second column (default: 'not run')")
  p = sub.add_parser("worlds", help="claims side by side over the results roots of several world seeds")
  p.add_argument("roots", nargs="+", help="results roots, each with a numbers.json")
  p.add_argument("--out", default=None, help="also write the markdown table to this file")
  p = sub.add_parser("readme-table", help="the README's results block from numbers.json")
  p.add_argument("--numbers", default=os.path.join("docs", "worlds", "v4", "laptop", "laptop-ws0",
                                                    "numbers.json"))
  p.add_argument("--readme", default="README.md")
  p.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if they differ")
  return parser


def _fit(args) -> None:
  if args.what in ("pm", "all"):
    out = run_pm(args.root, args.out, n_boot=args.n_boot, seed=args.seed)
    _print_summary("pm", out, pm_lib.summary_lines(out["result"]))
  if args.what in ("rl", "all"):
    out = run_rl(args.root, args.out, budget=args.budget)
    _print_summary("rl", out, rl_lib.summary_lines(out["result"]))


def _write_report(args) -> None:
  numbers = report.write_report(args.root, args.preset, args.main_run, args.paper_root)
  print(report.held_sentence(numbers))
  print(f"  report: wrote numbers.json, report.md, report.html to {args.root}")


def _worlds_table(args) -> None:
  table = worlds.worlds_table(worlds.load_numbers(args.roots))
  print(table)
  if args.out:
    with open(args.out, "w") as f:
      f.write(table + "\n")


def _readme_table(args) -> int:
  diff = report.sync_readme(args.numbers, args.readme, check=args.check)
  if args.check and diff:
    print(diff, end="")
    print(f"hh-jax analyze: {args.readme} results block differs from {args.numbers}; "
          "run `hh-jax analyze readme-table` to update it", file=sys.stderr)
    return 1
  print(f"{args.readme}: results block {'up to date' if not diff else 'updated'}")
  return 0


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    if args.what == "report":
      _write_report(args)
    elif args.what == "readme-table":
      return _readme_table(args)
    elif args.what == "worlds":
      _worlds_table(args)
    else:
      _fit(args)
  except (RunFileError, FileNotFoundError, ValueError, report.ResultsBlockError, CriteriaError, CriteriaChangedError) as e:
    print(f"hh-jax analyze: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
