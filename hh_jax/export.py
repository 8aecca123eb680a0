"""`hh-jax export RUN_DIR OUT_DIR`: a finished run as a Hugging Face checkpoint directory.

A PM run becomes a one-label sequence classifier (`*ForSequenceClassification`), every other
run (an LM, a PPO policy) a causal LM; the run's tokenizer is written beside the weights when
it is a pretrained one (tokenizer.json). transformers then scores a PM input
`context + reply + EOC + PAD...` at its last non-pad token, the EOC token, which is where
hh-jax reads the score (pad_token_id = 0 in config.json); see hh_jax/models/hf.py for the
score bias and the heads file.
"""

from __future__ import annotations

import argparse
import sys

from hh_jax import models
from hh_jax.data import pipeline
from hh_jax.train import lifecycle


def run_tokenizer(config: dict):
  """The tokenizer a run encoded its data with (LM/PM: data.tokenizer; PPO: tokenizer)."""
  if "data" in config:
    return pipeline.get_tokenizer(config["data"]["dataset"], config["data"]["tokenizer"])
  return pipeline.get_tokenizer(config["prompt_dataset"], config["tokenizer"])


def export_run(run_dir: str, out_dir: str) -> str:
  """Write run_dir's final model (and its pretrained tokenizer) to out_dir; return the class."""
  model = lifecycle.load_model(run_dir)
  config = lifecycle.read_json(run_dir, lifecycle.CONFIG)
  tokenizer = run_tokenizer(config)
  is_pm = config.get("kind") == "pm"
  models.save_pretrained(out_dir, model.graphdef, model.params,
                         tokenizer if hasattr(tokenizer, "save_hf") else None, score_head=is_pm)
  return lifecycle.read_json(out_dir, "config.json")["architectures"][0]


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax export", description=__doc__.splitlines()[0])
  parser.add_argument("run_dir", help="a finished run directory (model.json + params/)")
  parser.add_argument("out_dir", help="the Hugging Face checkpoint directory to write")
  args = parser.parse_args(argv)
  try:
    architecture = export_run(args.run_dir, args.out_dir)
  except (lifecycle.RunError, ValueError) as e:
    print(f"hh-jax export: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out_dir} ({architecture})")
  return 0
