"""`hh-jax analyze {pm,rl,all} ROOT --out DIR`: fits and paper-style figures from run directories.

Writes `<out>/pm_analysis.json` / `<out>/rl_analysis.json` (every fitted number), a PNG and
a PDF per figure, and prints a short summary. Pieces that are missing (no mix sweep, no
bon.json, unfinished runs) are skipped with a printed note.

    hh-jax analyze all results/quick --out results/quick/analysis
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

import numpy as np

from analysis import plots
from analysis import pm as pm_lib
from analysis import rl as rl_lib
from analysis.runs import RunFileError, discover, find_files


def to_json(x: Any) -> Any:
  """Numpy -> Python, tuple -> list, NaN/inf -> None (strict JSON), non-string keys -> strings."""
  if isinstance(x, dict):
    return {str(k): to_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_json(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_json(x.tolist())
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def write_json(path: str, obj: Any) -> None:
  with open(path, "w") as f:
    json.dump(to_json(obj), f, indent=2, allow_nan=False)


def _save_all(figures: dict, out_dir: str) -> list[str]:
  written = []
  for stem, fig in figures.items():
    written += plots.save(fig, out_dir, stem)
  return written


def _write(found, result: dict, figures: dict, notes: list, out_dir: str, json_name: str) -> dict:
  """Save the figures and the result JSON; return {"result", "figures", "notes", "files", "skipped"}."""
  result["skipped_unfinished"] = found.skipped
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


def run_rl(root: str, out_dir: str, budget: float | None = None) -> dict:
  """RL analysis of every finished PPO run, bon.json and elo.json under root."""
  found = discover(root)
  result, figures, notes = rl_lib.analyze_rl(found.runs, find_files(root, "bon.json"),
                                             find_files(root, "elo.json"), budget=budget)
  return _write(found, result, figures, notes, out_dir, "rl_analysis.json")


def _report(name: str, out: dict, lines: list[str]) -> None:
  for line in lines:
    print(line)
  for d in out["skipped"]:
    print(f"  skipped unfinished run (no summary.json): {d}")
  for note in out["notes"]:
    print(f"  note: {note}")
  print(f"  {name}: wrote {len(out['files'])} files to {os.path.dirname(out['files'][-1])}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="hh-jax analyze", description=__doc__.splitlines()[0])
  parser.add_argument("what", choices=("pm", "rl", "all"), help="which analysis")
  parser.add_argument("root", help="results root holding run directories (searched recursively)")
  parser.add_argument("--out", required=True, help="output directory for figures and JSON")
  parser.add_argument("--n_boot", type=int, default=1000, help="bootstrap replicates for the scaling-law CIs")
  parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
  parser.add_argument("--budget", type=float, default=None,
                      help="RL sample budget for the robustness plot (default: each run's last iteration)")
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    if args.what in ("pm", "all"):
      out = run_pm(args.root, args.out, n_boot=args.n_boot, seed=args.seed)
      _report("pm", out, pm_lib.summary_lines(out["result"]))
    if args.what in ("rl", "all"):
      out = run_rl(args.root, args.out, budget=args.budget)
      _report("rl", out, rl_lib.summary_lines(out["result"]))
  except (RunFileError, FileNotFoundError) as e:
    print(f"hh-jax analyze: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
