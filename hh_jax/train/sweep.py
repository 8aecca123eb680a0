"""`hh-jax sweep FILE` and `hh-jax train FILE`: an experiment's runs, run or printed.

    hh-jax sweep experiments/pm_scaling.py --root runs [--preset quick] [--workers 2]
    hh-jax sweep experiments/pm_scaling.py --root runs --print          # one command per run
    hh-jax sweep experiments/pm_scaling.py --root runs --print --json   # resolved configs
    hh-jax train experiments/pm_scaling.py --root runs --run 25k-n4000-s0
    hh-jax train experiments/pm_scaling.py --workdir runs/x --set model_size=400k  # ad hoc
    hh-jax train ... --coordinator H:P --num_processes N --process_id I  # one of N processes
    hh-jax sweep ... --launcher slurm|skypilot      # cluster launchers (hh_jax.launch)
    hh-jax sweep|train|reproduce ... --track tensorboard|wandb|none   (hh_jax.tracking)

Runs are planned by `hh_jax.train.experiment.plan`, the same function `hh-jax reproduce`
uses, so a sweep under `--preset P` trains exactly the runs of the reproduction's stage.
Locally each run is a subprocess (a crash or OOM in one run cannot take the sweep down),
except that small PM runs that differ only in seed share one subprocess and train as one
group (`hh_jax.train.multirun`: `hh-jax train ... --run A --run B`); finished runs (summary.json) are skipped, failures are recorded in
`<root>/<experiment>/failures.jsonl` with the run's log tail, and the sweep goes on.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import dataclasses
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

from experiments.presets import PRESETS
from hh_jax.config import ConfigError, override, parse_overrides
from hh_jax import distributed, paths, tracking
from hh_jax import launch as launch_lib
from hh_jax.metrics import NonFiniteLossError, append_jsonl
from hh_jax.train import experiment as ex
from hh_jax.train import lifecycle, multirun, tasks

# What a user can fix (a bad config, a missing file or run, malformed data, divergence): the
# CLIs print the message and exit 2. HH_JAX_TRACEBACK=1 re-raises them with their traceback.
USER_ERRORS = () if os.environ.get("HH_JAX_TRACEBACK") else (
    ConfigError, KeyError, ValueError, FileNotFoundError, NonFiniteLossError)


def add_plan_args(parser: argparse.ArgumentParser) -> None:
  """The arguments that select planned runs (shared by sweep and train)."""
  parser.add_argument("experiment", help="an experiment file (or the name of one in experiments/)")
  parser.add_argument("--root", default="runs", help="runs land in ROOT/<experiment>/<run>")
  parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                      help="a reproduction preset's axis values and overrides")
  parser.add_argument("--axis", action="append", default=[], metavar="NAME=VALUE",
                      help="an axis value, e.g. seeds=(0,1,2) (Python literal)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config override applied to every run")
  parser.add_argument("--data_dir", default=None, help="TFDS data_dir for every run")
  parser.add_argument("--world-seed", dest="world_seed", type=int, default=0,
                      help="draw the synthetic world, its datasets and every seed from world N "
                           "(experiment.in_world; default 0)")


DEFAULT_TRACK = "tensorboard"


def add_run_args(parser: argparse.ArgumentParser) -> None:
  """How each run is run: --track and the multi-process flags (shared by sweep and train)."""
  parser.add_argument("--track", default=DEFAULT_TRACK, choices=tracking.TRACKERS,
                      help="live tracking from process 0: TensorBoard events in <run>/tensorboard "
                           "(default), Weights & Biases (the .[wandb] extra), or none")
  distributed.add_args(parser)


def run_flags(args) -> list[str]:
  """The flags of `add_run_args` again (those given), for the `hh-jax train` command of each run."""
  track = getattr(args, "track", DEFAULT_TRACK)
  track = [] if track == DEFAULT_TRACK else ["--track", track]
  return track + distributed.flags_of(args)


def parse_axes(items: list[str]) -> dict:
  out = {}
  for key, value in parse_overrides(items).items():
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def planned(args) -> list[ex.PlannedRun]:
  """The runs the arguments select (every `--only` match, or the one `--run`)."""
  preset = PRESETS[args.preset] if args.preset else None
  runs = ex.plan(args.experiment, paths.absolute(args.root), preset, parse_axes(args.axis),
                 parse_overrides(args.set), data_dir=args.data_dir,
                 world_seed=getattr(args, "world_seed", 0))
  only = getattr(args, "only", None)
  return [r for r in runs if not only or re.search(only, r.name)]


def plan_args(args) -> list[str]:
  """The command-line arguments that select the same plan again."""
  out = [args.experiment, "--root", args.root]
  out += ["--preset", args.preset] if args.preset else []
  for flag, items in (("--axis", args.axis), ("--set", args.set)):
    for item in items:
      out += [flag, item]
  out += ["--world-seed", str(args.world_seed)] if getattr(args, "world_seed", 0) else []
  return out + (["--data_dir", args.data_dir] if args.data_dir else [])


def train_command(args, run: ex.PlannedRun | list[ex.PlannedRun]) -> list[str]:
  """`hh-jax train ... --run NAME` of one run (or `--run A --run B ...` of a group)."""
  names = [r.name for r in (run if isinstance(run, list) else [run])]
  return ["hh-jax", "train", *plan_args(args), *run_flags(args),
          *[x for name in names for x in ("--run", name)]]


def _run_one(args, group: list[ex.PlannedRun]) -> list[dict]:
  """One run, or a group of runs (`multirun.plan_groups`), as one subprocess; its output is
  appended to each run's train.log (local or bucket); a record per run (returncode 0 for a
  run that finished even if another member of its group failed)."""
  cmd = [sys.executable, "-m", "hh_jax.cli", *train_command(args, group)[1:], "--no-progress"]
  start = time.time()
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  out = []
  for run in group:
    log = paths.join(run.dir, log_name(args))
    paths.atomic_write(log, (log.read_text() if log.exists() else "") + proc.stdout)
    ok = proc.returncode == 0 or (len(group) > 1 and lifecycle.is_finished(run.dir))
    out.append({"run": run.dir, "returncode": 0 if ok else proc.returncode or 1,
                "seconds": time.time() - start})
  return out


def sweep_groups(args, todo: list[ex.PlannedRun]) -> list[list[ex.PlannedRun]]:
  """The subprocesses of a local sweep: runs that differ only in seed together where
  `multirun.plan_groups` allows (small PMs), every other run alone; multi-process sweeps
  run every run alone."""
  if distributed.flags_of(args):
    return [[r] for r in todo]
  return multirun.plan_groups(todo)


def log_name(args) -> str:
  """train.log; in a multi-process sweep one log per process (each host's sweep writes its own)."""
  if not distributed.flags_of(args):
    return "train.log"
  pid = getattr(args, "process_id", None)
  return f"train.{socket.gethostname() if pid is None else pid}.log"


def _tail(path, n: int = 20) -> str:
  path = paths.as_path(path)
  return "".join(path.read_text().splitlines(keepends=True)[-n:]) if path.exists() else ""


def run_sweep(args, runs: list[ex.PlannedRun], progress: bool = True) -> dict:
  """Run every unfinished run (subprocesses, `args.workers` at a time); counts and failures."""
  todo = [r for r in runs if not lifecycle.is_finished(r.dir)]
  groups = sweep_groups(args, todo)
  if progress:
    print(f"sweep {args.experiment}: {len(runs)} runs, {len(runs) - len(todo)} finished, "
          f"{len(todo)} to run with {args.workers} worker(s)"
          + (f" ({len(groups)} processes: runs that differ only in seed train together)"
             if len(groups) < len(todo) else ""), flush=True)
  failures, done = [], 0
  with cf.ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
    futures = {pool.submit(_run_one, args, g): g for g in groups}
    for fut in cf.as_completed(futures):
      for result, run in zip(fut.result(), futures[fut]):
        done += 1
        if result["returncode"] != 0:
          log_tail = _tail(paths.join(run.dir, log_name(args)))
          failure = {**result, "name": run.name, "log_tail": log_tail}
          failures.append(failure)
          append_jsonl(paths.join(os.path.dirname(run.dir), "failures.jsonl"), failure)
        if progress:
          status = "ok" if result["returncode"] == 0 else f"FAILED (rc {result['returncode']})"
          print(f"[{done}/{len(todo)}] {run.name}: {status} in {result['seconds']:.0f}s",
                flush=True)
  return {"runs": len(runs), "ran": len(todo), "failed": len(failures), "failures": failures}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax sweep", description=__doc__.splitlines()[0])
  add_plan_args(parser)
  add_run_args(parser)
  parser.add_argument("--workers", type=int, default=1)
  parser.add_argument("--print", action="store_true", help="print one command per run and exit")
  parser.add_argument("--json", action="store_true", help="with --print: the resolved configs")
  parser.add_argument("--only", default=None, help="regex on run names")
  add_launcher_args(parser)
  args = parser.parse_args(argv)
  try:
    runs = planned(args)
  except USER_ERRORS as e:
    print(f"hh-jax sweep: {e.args[0] if e.args else e}", file=sys.stderr)
    return 2
  if args.print:
    for run in runs:
      print(json.dumps({"name": run.name, "dir": run.dir, "config": dataclasses.asdict(run.config)})
            if args.json else shlex.join(train_command(args, run)))
    return 0
  if args.launcher != "local":
    return launch(args, runs)
  if distributed.flags_of(args) and args.workers != 1:
    parser.error("a multi-process sweep runs its runs one at a time (--workers 1)")
  result = run_sweep(args, runs)
  print(f"sweep done: {result['ran']} ran, {result['failed']} failed")
  return 1 if result["failed"] else 0


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
  """--launcher and its options (`hh_jax.launch`)."""
  group = parser.add_argument_group("launchers (hh_jax.launch)")
  group.add_argument("--launcher", default="local", choices=launch_lib.LAUNCHERS,
                     help="local subprocesses (default), a SLURM job array through submitit, or "
                          "print a SkyPilot task file (TPU pods, clouds)")
  group.add_argument("--nodes", type=int, default=1, help="slurm/skypilot: nodes per run")
  group.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                     help="a submitit AutoExecutor parameter, e.g. slurm_partition=gpu, "
                          "gpus_per_node=8, timeout_min=240, slurm_array_parallelism=16")
  group.add_argument("--accelerators", default="tpu-v5e-16",
                     help="skypilot: e.g. tpu-v5e-16, H100:8")


def launch(args, runs: list[ex.PlannedRun]) -> int:
  """A cluster launcher: submit the unfinished runs to SLURM, or print a SkyPilot task (whose
  sweep skips the finished runs itself)."""
  if args.launcher == "slurm":
    try:
      launch_lib.launch_slurm(args, [r for r in runs if not lifecycle.is_finished(r.dir)])
    except RuntimeError as e:                   # e.g. no sbatch/srun here
      print(f"hh-jax sweep: {e}", file=sys.stderr)
      return 2
    return 0
  command = ["hh-jax", "sweep", *plan_args(args), *run_flags(args)]
  command += ["--only", args.only] if args.only else []
  print(launch_lib.skypilot_task(f"hh-jax-{ex.experiment_name(args.experiment)}", command,
                                 args.accelerators, args.nodes), end="")
  return 0


def train_main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax train", description="one run of an experiment")
  add_plan_args(parser)
  add_run_args(parser)
  parser.add_argument("--run", action="append", default=None,
                      help="the planned run of this name; several --run: runs that differ only "
                           "in seed, trained as one group (hh_jax.train.multirun)")
  parser.add_argument("--workdir", default=None,
                      help="instead of --run: the file's base config (with --set) in this directory")
  parser.add_argument("--no-progress", action="store_true")
  parser.add_argument("--allow-resume-changes", action="store_true",
                      help=f"continue a stopped run with new values of {lifecycle.RESUME_SAFE_FIELDS}")
  args = parser.parse_args(argv)
  if (args.run is None) == (args.workdir is None):
    parser.error("give exactly one of --run NAME and --workdir DIR")
  distributed.initialize_from_args(args)
  try:
    if args.run is not None:
      by_name = {r.name: r for r in planned(args)}
      missing = [name for name in args.run if name not in by_name]
      if missing:
        raise ex.ExperimentError(f"{args.experiment} has no run {missing[0]!r}")
      cfgs, run_dirs = [by_name[n].config for n in args.run], [by_name[n].dir for n in args.run]
    else:
      cfg = override(ex.load_experiment(args.experiment).get_config(), parse_overrides(args.set))
      cfgs = [ex.with_field(cfg, "data_dir", args.data_dir) if args.data_dir else cfg]
      run_dirs = [args.workdir]
    if len(cfgs) > 1 and not args.allow_resume_changes:
      summaries = multirun.run_group(cfgs, run_dirs, progress=not args.no_progress,
                                     track=args.track)
    else:
      summaries = [tasks.run_config(cfg, run_dir, progress=not args.no_progress,
                                    allow_changes=args.allow_resume_changes, track=args.track)
                   for cfg, run_dir in zip(cfgs, run_dirs)]
  except USER_ERRORS as e:
    print(f"hh-jax train: {e.args[0] if e.args else e}", file=sys.stderr)
    return 2
  for summary in summaries:
    keys = [k for k in summary if k.startswith(("eval/accuracy", "eval/lm_loss", "ppo/score", "ppo/kl"))]
    print(" ".join(f"{k}={summary[k]:.4f}" for k in keys[:6] if isinstance(summary[k], float)))
  return 0
