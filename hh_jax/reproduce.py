"""`hh-jax reproduce`: the paper's central claims end to end, with a report beside the paper.

    hh-jax reproduce                     # --preset laptop: the full CPU-scale study
    hh-jax reproduce --preset quick      # every stage and figure, smaller grids

Stages: `data` (prepare every TFDS dataset the runs read), then each experiment of the
preset in order (experiments/presets.py: base_lm, pm_scaling, pm_mix, pm_halves, ppo,
best_of_n, elo, ppo_ensemble, ...), then `analysis` (fits and figures, analysis/ reading run directories only)
and `report` (report.md, report.html, numbers.json). Each experiment stage trains exactly the
runs of `hh-jax sweep experiments/<stage>.py --root <out> --preset <preset>`; finished runs
are skipped and a killed run resumes from its checkpoint.

Everything lands in `results/<preset>/`; with `--world-seed N` (N > 0: another draw of the
synthetic world, its datasets and every model, data and PPO seed) in `results/<preset>-wsN/`,
so the runs of several worlds sit side by side.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import sys
import time

import jax
import tensorflow_datasets as tfds

from analysis import cli as analysis_cli
from analysis import criteria, gao, online, pm_weighting, policy_evals, report, rl_gold
from analysis import ood as ood_analysis
from experiments import ppo as ppo_experiment
from experiments.presets import (PAPER_FAITHFUL_DIR, PRESETS, paper_faithful,
                                 with_pretrained_ladder)
from hh_jax import tracking
from hh_jax.data import pipeline
from hh_jax.train import experiment as ex
from hh_jax.train import lifecycle
from hh_jax.train.sweep import DEFAULT_TRACK, USER_ERRORS


def use_compilation_cache(default_dir: str) -> None:
  """JAX's persistent compilation cache for this process and its workers ($JAX_COMPILATION_CACHE_DIR
  if set, else default_dir): a run whose step was compiled by an earlier run of the same shapes
  (PM seeds, a resumed reproduction) loads it instead of compiling again."""
  path = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", default_dir)
  jax.config.update("jax_compilation_cache_dir", path)


def default_out(preset_name: str, world_seed: int = 0) -> str:
  """results/<preset> for world 0, results/<preset>-ws<N> for world N."""
  return os.path.join("results", preset_name + (f"-ws{world_seed}" if world_seed else ""))


def link_base_lms(root: str) -> str:
  """<root>/paper-faithful, its base_lm a link to <root>/base_lm (the variant reuses the base LMs)."""
  base = os.path.abspath(os.path.join(root, "base_lm"))
  if not os.path.isdir(base):
    raise FileNotFoundError(f"{base}: --paper-faithful reuses the base LMs of {root}; run "
                            f"`hh-jax reproduce` with the same --preset/--out first (its base_lm "
                            f"stage at least)")
  variant = os.path.join(root, PAPER_FAITHFUL_DIR)
  os.makedirs(variant, exist_ok=True)
  link = os.path.join(variant, "base_lm")
  if not os.path.lexists(link):
    os.symlink(os.path.join("..", "base_lm"), link)
  return variant


def stages_of(preset: ex.Preset) -> tuple[str, ...]:
  return ("data", *preset.stages, "analysis", "report")


class Reproduction:
  """Runs the stages of one preset into `out_dir`."""

  def __init__(self, preset: ex.Preset, out_dir: str, progress: bool = True,
               data_dir: str | None = None, manual_dir: str | None = None,
               track: str = "none", world_seed: int = 0, workers: int = 1):
    self.preset = preset
    self.world_seed = world_seed
    self.workers = workers
    self.track = track
    self.root = os.path.abspath(out_dir)
    self.data_dir = os.path.abspath(data_dir) if data_dir else os.path.join(self.root, "tfds")
    self.manual_dir = manual_dir
    self.progress = progress
    os.makedirs(self.root, exist_ok=True)
    self.log_path = os.path.join(self.root, "reproduce.log")
    if not progress:
      tfds.disable_progress_bar()

  def log(self, msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(self.log_path, "a") as f:
      f.write(line + "\n")

  def plan(self, stage: str) -> list[ex.PlannedRun]:
    """The runs of one experiment stage (what `hh-jax sweep --preset` prints for it)."""
    return ex.plan(stage, self.root, self.preset, data_dir=self.data_dir,
                   world_seed=self.world_seed)

  def main_ppo_run(self) -> str:
    return ppo_experiment.main_run_name(ex.axes_of(ppo_experiment, self.preset, None))

  def stage_data(self) -> None:
    runs = [run for stage in self.preset.stages for run in self.plan(stage)]
    for name in ex.datasets_of(runs):
      pipeline.prepare(name, self.data_dir, self.manual_dir)

  def stage_experiment(self, stage: str) -> None:
    """The stage's unfinished runs, one at a time in this process, or `workers` at a time in
    fresh processes (the runs of one stage never depend on each other). Small PM runs that
    differ only in seed train together as one group (`hh_jax.train.multirun.plan_groups`;
    each still writes its own run directory); every other run alone, as before."""
    from hh_jax.train import multirun
    runs = self.plan(stage)
    todo = [r for r in runs if not lifecycle.is_finished(r.dir)]
    groups = multirun.plan_groups(todo)
    self.log(f"{stage}: {len(runs)} runs, {len(runs) - len(todo)} already finished"
             + (f", {len(todo)} to run as {len(groups)} groups" if len(groups) < len(todo) else ""))
    name = lambda group: stage + "/" + "+".join(r.name for r in group)  # noqa: E731
    args = lambda group: ([r.config for r in group], [r.dir for r in group], self.track)  # noqa: E731
    if self.workers <= 1 or len(groups) <= 1:
      for group in groups:
        seconds = multirun.timed_group(*args(group), self.progress)
        self.log(f"  {name(group)} done in {seconds:.0f}s")
      return
    spawn = multiprocessing.get_context("spawn")    # a fresh JAX runtime per run (or group)
    with cf.ProcessPoolExecutor(self.workers, mp_context=spawn, max_tasks_per_child=1) as pool:
      started = {pool.submit(multirun.timed_group, *args(g)): g for g in groups}
      for future in cf.as_completed(started):
        self.log(f"  {name(started[future])} done in {future.result():.0f}s")

  def stage_analysis(self) -> None:
    """One analysis per sweep, so that each fit sees only its own sweep's runs; then the Gao
    fits, the held-out gold of the ppo and ppo_ensemble stages (each read from its own
    directory), OOD and the loss-weighting / mix-by-size analysis where their stages ran."""
    figs = os.path.join(self.root, "figures")
    for kind, src, name in (("pm", "pm_scaling", "pm_scaling"), ("pm", "pm_mix", "pm_mix"),
                            ("pm", "pm_lambda", "pm_lambda"), ("rl", "", "rl")):
      if src and not os.path.isdir(os.path.join(self.root, src)):
        continue
      rc = analysis_cli.main([kind, os.path.join(self.root, src), "--out", os.path.join(figs, name)])
      if rc:
        raise RuntimeError(f"analysis {kind} {src or self.root} failed with exit code {rc}")
    gao.run_gao(os.path.join(figs, "rl", "rl_analysis.json"), os.path.join(figs, "gao"),
                self.main_ppo_run())
    rl_gold.run_rl_gold(self.root, os.path.join(figs, "rl_gold"), self.main_ppo_run())
    if os.path.isdir(os.path.join(self.root, "ood")):
      ood_analysis.run_ood(os.path.join(self.root, "ood"), os.path.join(figs, "ood"))
    pm_weighting.run_weighting([os.path.join(self.root, "pm_lambda"),
                                os.path.join(self.root, "pm_mix")],
                               os.path.join(figs, "pm_weighting"))
    if os.path.isdir(os.path.join(self.root, "online_eval")):
      online.run_online(os.path.join(self.root, "online_eval"), os.path.join(figs, "online"),
                        os.path.join(self.root, "online_rlhf"))
    if os.path.isdir(os.path.join(self.root, "policy_eval")):
      policy_evals.run_policy_evals(os.path.join(self.root, "policy_eval"),
                                    os.path.join(figs, "policy_eval"))

  def stage_report(self) -> None:
    """The report of this root, with the paper-faithful column when that variant has run
    (<root>/paper-faithful); the variant's own report also refreshes its parent's."""
    paper = os.path.join(self.root, PAPER_FAITHFUL_DIR)
    report.write_report(self.root, self.preset.name, self.main_ppo_run(),
                        paper_root=paper if os.path.isdir(paper) else None)
    parent = os.path.dirname(self.root)
    if (os.path.basename(self.root) == PAPER_FAITHFUL_DIR
        and os.path.exists(os.path.join(parent, "numbers.json"))):
      report.write_report(parent, self.preset.name.removesuffix("-paper-faithful"),
                          self.main_ppo_run(), paper_root=self.root)
      self.log(f"report with the paper-faithful column: {os.path.join(parent, 'report.md')}")

  def run(self, stages: tuple[str, ...]) -> None:
    frozen = criteria.freeze_criteria(self.root)     # before any run it will judge
    self.log(f"claims criteria frozen in {frozen}")
    t0 = time.time()
    for i, stage in enumerate(stages):
      self.log(f"[{i + 1}/{len(stages)}] {stage} ...")
      t = time.time()
      if stage in self.preset.stages:
        self.stage_experiment(stage)
      else:
        getattr(self, f"stage_{stage}")()
      self.log(f"[{i + 1}/{len(stages)}] {stage} done in {time.time() - t:.0f}s "
               f"(total {(time.time() - t0) / 60:.1f} min)")
    self.log(f"report: {os.path.join(self.root, 'report.md')}")


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax reproduce", description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="laptop", choices=sorted(PRESETS),
                      help="laptop (default): the full CPU-scale study; quick: every stage and "
                           "figure on smaller grids; smoke: tiny; hh-rlhf: real data on an accelerator")
  parser.add_argument("--out", default=None, help="default: results/<preset>")
  parser.add_argument("--stages", default=None, help="comma-separated subset of the stages")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data_dir (default: <out>/tfds); reuse a prepared hh_rlhf here")
  parser.add_argument("--manual_dir", default=None,
                      help="offline HH-RLHF release files ({subset}/{split}.jsonl.gz)")
  parser.add_argument("--weights_dir", default=None,
                      help="with --preset hh-rlhf: the Hugging Face checkpoints (e.g. Pythia) "
                           "whose PMs and PPO policies to train, instead of models from scratch")
  parser.add_argument("--world-seed", dest="world_seed", type=int, default=0,
                      help="draw the synthetic world, every dataset and every seed from world N "
                           "(default 0); results go to results/<preset>-wsN")
  parser.add_argument("--paper-faithful", dest="paper_faithful", action="store_true",
                      help="the paper's own choices where the preset departs from them (fixed PM "
                           "LR, 50/50 RL prompts, 1 PPO epoch) into <out>/paper-faithful, on the "
                           "base LMs of <out>; its verdicts become the report's second column")
  parser.add_argument("--workers", type=int, default=1,
                      help="runs of one stage trained at a time, each in its own process")
  parser.add_argument("--no-progress", action="store_true")
  parser.add_argument("--track", default=DEFAULT_TRACK, choices=tracking.TRACKERS,
                      help="live tracking of every run (hh_jax.tracking)")
  args = parser.parse_args(argv)
  preset = PRESETS[args.preset]
  if args.weights_dir:
    if args.preset != "hh-rlhf":
      print("hh-jax reproduce: --weights_dir needs --preset hh-rlhf", file=sys.stderr)
      return 2
    try:
      preset = with_pretrained_ladder(preset, args.weights_dir)
    except (OSError, ValueError) as e:
      print(f"hh-jax reproduce: {e}", file=sys.stderr)
      return 2
  if args.world_seed and not preset.has_gold:
    print(f"hh-jax reproduce: --world-seed re-draws the synthetic world; the {preset.name} "
          f"preset trains on real data", file=sys.stderr)
    return 2
  if args.world_seed < 0:
    print(f"hh-jax reproduce: --world-seed must be >= 0, got {args.world_seed}", file=sys.stderr)
    return 2
  out = args.out or default_out(preset.name, args.world_seed)
  if args.paper_faithful:
    try:
      args.data_dir = args.data_dir or os.path.join(out, "tfds")     # the parent's datasets
      preset, out = paper_faithful(preset), link_base_lms(out)
    except FileNotFoundError as e:
      print(f"hh-jax reproduce: {e}", file=sys.stderr)
      return 2
  every = stages_of(preset)
  if args.weights_dir and args.stages is None:     # its figures: hh-jax analyze pm OUT/pm_pretrained
    args.stages = ",".join(("data", *preset.stages))
  stages = every if args.stages is None else tuple(s.strip() for s in args.stages.split(","))
  unknown = [s for s in stages if s not in every]
  if unknown:
    print(f"hh-jax reproduce: unknown stage(s) {unknown}; the {preset.name} stages are "
          f"{', '.join(every)}", file=sys.stderr)
    return 2
  use_compilation_cache(os.path.join(os.path.abspath(out), "jax_cache"))
  repro = Reproduction(preset, out,
                       progress=not args.no_progress, data_dir=args.data_dir,
                       manual_dir=args.manual_dir, track=args.track, world_seed=args.world_seed,
                       workers=args.workers)
  repro.log(f"hh-jax reproduce --preset {preset.name} --world-seed {args.world_seed} "
            f"({preset.expected_minutes}) -> {repro.root}")
  try:
    repro.run(stages)
  except (*USER_ERRORS, criteria.CriteriaChangedError) as e:
    print(f"hh-jax reproduce: {e.args[0] if e.args else e}", file=sys.stderr)
    return 2
  return 0
