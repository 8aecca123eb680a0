"""Experiments as files, and sweeps over them.

An experiment file defines `get_config()` (a RunConfig or PPOConfig) and `get_sweep()`
(a list of override dicts, e.g. {"model_size": "100k", "data.num_train_pairs": 4000,
"seed": 1}). Each run's directory is `<workdir>/<run name>`, the name built from its
overrides. String values may use `{workdir}` (the sweep's workdir) and `{root}` (its
parent), so a PPO sweep can point at PM runs of an earlier stage.

    hh-jax sweep experiments/pm_scaling.py --workdir runs/pm_scaling [--workers 2]
    hh-jax sweep experiments/pm_scaling.py --workdir runs/pm_scaling --print   # for a cluster
    hh-jax train experiments/pm_scaling.py --workdir runs/x --set model_size=400k

Locally each run is a subprocess (a crash or OOM in one run cannot take the sweep down);
finished runs (summary.json) are skipped, failures are recorded in
`<workdir>/failures.jsonl` with the run's log tail, and the sweep goes on.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any


def load_experiment(path: str):
  """Import an experiment file as a module (it must define get_config and get_sweep)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"experiment file {path} not found")
  name = "hh_jax_experiment_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for fn in ("get_config", "get_sweep"):
    if not hasattr(module, fn):
      raise AttributeError(f"{path} does not define {fn}()")
  return module


def run_name(overrides: dict[str, Any]) -> str:
  """A directory name from the overrides: {"model_size": "1k", "seed": 0} -> "model_size=1k,seed=0"."""
  if not overrides:
    return "default"
  parts = []
  for key, value in overrides.items():
    short = key.split(".")[-1]
    if isinstance(value, (tuple, list)):
      text = len(value)                       # e.g. test_pms=4
    elif isinstance(value, str) and "/" in value:
      text = os.path.basename(os.path.normpath(value))
    else:
      text = value
    parts.append(f"{short}={text}")
  return re.sub(r"[^\w.,=+-]", "_", ",".join(parts))


def format_paths(overrides: dict[str, Any], workdir: str) -> dict[str, Any]:
  root = os.path.dirname(os.path.abspath(workdir))
  fmt = lambda v: v.format(workdir=os.path.abspath(workdir), root=root) if isinstance(v, str) else v  # noqa: E731
  out = {}
  for key, value in overrides.items():
    out[key] = tuple(fmt(v) for v in value) if isinstance(value, (tuple, list)) else fmt(value)
  return out


def _override_args(overrides: dict[str, Any]) -> list[str]:
  args = []
  for key, value in overrides.items():
    if isinstance(value, (tuple, list)):
      value = repr(tuple(value))
    args += ["--set", f"{key}={value}"]
  return args


def train_command(experiment: str, run_dir: str, overrides: dict[str, Any]) -> list[str]:
  return ["hh-jax", "train", experiment, "--workdir", run_dir, *_override_args(overrides)]


def _run_one(experiment: str, run_dir: str, overrides: dict[str, Any], extra_env: dict) -> dict:
  os.makedirs(run_dir, exist_ok=True)
  cmd = [sys.executable, "-m", "hh_jax.cli", *train_command(experiment, run_dir, overrides)[1:],
         "--no-progress"]
  start = time.time()
  with open(os.path.join(run_dir, "train.log"), "a") as log:
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra_env})
  return {"run": run_dir, "returncode": proc.returncode, "seconds": time.time() - start}


def _tail(path: str, n: int = 20) -> str:
  try:
    with open(path) as f:
      return "".join(f.readlines()[-n:])
  except FileNotFoundError:
    return ""


def run_sweep(experiment: str, workdir: str, *, workers: int = 1, only: str | None = None,
              extra_overrides: dict[str, Any] | None = None, progress: bool = True) -> dict:
  """Run every unfinished run of the experiment's sweep; return counts and failures."""
  module = load_experiment(experiment)
  runs = []
  for overrides in module.get_sweep():
    overrides = format_paths({**overrides, **(extra_overrides or {})}, workdir)
    name = run_name({k: v for k, v in overrides.items() if k not in (extra_overrides or {})})
    if only and not re.search(only, name):
      continue
    runs.append((os.path.join(workdir, name), overrides))
  todo = [(d, o) for d, o in runs if not os.path.exists(os.path.join(d, "summary.json"))]
  os.makedirs(workdir, exist_ok=True)
  if progress:
    print(f"sweep {experiment}: {len(runs)} runs, {len(runs) - len(todo)} finished, "
          f"{len(todo)} to run with {workers} worker(s) -> {workdir}", flush=True)
  env: dict[str, str] = {}
  failures, done = [], 0
  with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    futures = {pool.submit(_run_one, experiment, d, o, env): (d, o) for d, o in todo}
    for fut in cf.as_completed(futures):
      result = fut.result()
      done += 1
      if result["returncode"] != 0:
        d, o = futures[fut]
        log_tail = _tail(os.path.join(d, "train.log"))
        failure = {**result, "overrides": o, "log_tail": log_tail}
        failures.append(failure)
        with open(os.path.join(workdir, "failures.jsonl"), "a") as f:
          f.write(json.dumps(failure) + "\n")
      if progress:
        status = "ok" if result["returncode"] == 0 else f"FAILED (rc {result['returncode']})"
        print(f"[{done}/{len(todo)}] {os.path.basename(result['run'])}: {status} "
              f"in {result['seconds']:.0f}s", flush=True)
  return {"runs": len(runs), "ran": len(todo), "failed": len(failures), "failures": failures}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax sweep", description=__doc__.splitlines()[0])
  parser.add_argument("experiment")
  parser.add_argument("--workdir", default=None, help="default: runs/<experiment name>")
  parser.add_argument("--workers", type=int, default=1)
  parser.add_argument("--print", action="store_true", help="print one command per run and exit")
  parser.add_argument("--only", default=None, help="regex on run names")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override applied to every run")
  args = parser.parse_args(argv)
  from hh_jax.config import parse_overrides
  workdir = args.workdir or os.path.join("runs", os.path.splitext(os.path.basename(args.experiment))[0])
  extra = parse_overrides(args.set)
  if args.print:
    module = load_experiment(args.experiment)
    for overrides in module.get_sweep():
      overrides = format_paths({**overrides, **extra}, workdir)
      name = run_name({k: v for k, v in overrides.items() if k not in extra})
      if args.only and not re.search(args.only, name):
        continue
      print(shlex.join(train_command(args.experiment, os.path.join(workdir, name), overrides)))
    return 0
  result = run_sweep(args.experiment, workdir, workers=args.workers, only=args.only,
                     extra_overrides=extra)
  print(f"sweep done: {result['ran']} ran, {result['failed']} failed "
        f"(see {os.path.join(workdir, 'failures.jsonl')})" if result["failed"] else
        f"sweep done: {result['ran']} ran, 0 failed")
  return 1 if result["failed"] else 0
