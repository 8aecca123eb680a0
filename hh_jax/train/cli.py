"""`hh-jax train FILE --workdir DIR [--set key=value ...]`: one run of an experiment file."""

from __future__ import annotations

import argparse
import sys

from hh_jax.config import RunConfig, override, parse_overrides


def run_config(cfg, workdir: str, progress: bool = True) -> dict:
  """Load the data a config names and train it (PM/LM loop or PPO)."""
  from hh_jax.data import pipeline
  from hh_jax.train import loop, ppo

  if isinstance(cfg, RunConfig):
    if cfg.kind == "pm":
      data = pipeline.load_pm_data(cfg.data, cfg.seed)
    else:
      data = pipeline.load_lm_data(cfg.data, cfg.seed)
    return loop.train(cfg, workdir, data, progress=progress)
  if isinstance(cfg, ppo.PPOConfig):
    prompts = pipeline.load_prompts(cfg.prompt_dataset, cfg.prompt_split, cfg.prompt_len,
                                    cfg.tokenizer, cfg.data_dir, limit=cfg.num_prompts)
    eval_prompts = pipeline.load_prompts(cfg.prompt_dataset, "test", cfg.prompt_len, cfg.tokenizer,
                                         cfg.data_dir, limit=cfg.num_eval_prompts)
    gold = pipeline.world_gold_fn if cfg.prompt_dataset.startswith("hh_synth") else None
    return ppo.train_ppo(cfg, workdir, ppo.PPOData(prompts, gold, eval_prompts), progress=progress)
  raise TypeError(f"get_config() returned {type(cfg).__name__}; expected RunConfig or PPOConfig")


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax train", description=__doc__.splitlines()[0])
  parser.add_argument("experiment", help="an experiment file with get_config()")
  parser.add_argument("--workdir", required=True, help="the run directory (resumed if it exists)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  from hh_jax.train.sweep import load_experiment

  module = load_experiment(args.experiment)
  try:
    cfg = override(module.get_config(), parse_overrides(args.set))
  except (KeyError, ValueError) as e:
    print(f"hh-jax train: {e.args[0] if e.args else e}", file=sys.stderr)
    return 2
  summary = run_config(cfg, args.workdir, progress=not args.no_progress)
  keys = [k for k in summary if k.startswith(("eval/accuracy", "eval/lm_loss", "ppo/score", "ppo/kl"))]
  print(" ".join(f"{k}={summary[k]:.4f}" for k in keys[:6] if isinstance(summary[k], float)))
  return 0
