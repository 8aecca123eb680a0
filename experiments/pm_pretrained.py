"""PM scaling over a ladder of pretrained checkpoints on HH-RLHF (Bai et al. Fig 7 on real data).

Each PM starts from a local Hugging Face checkpoint directory (`init_from_hf`; GPT-2,
GPT-NeoX/Pythia, Llama, Qwen2), is named by that directory (e.g. `pythia-70m-n1200-s0`) and
trains one epoch on the first D comparisons of a per-seed permutation of `hh_rlhf/all`, read
with the checkpoint's own tokenizer. Every checkpoint of one ladder must share a tokenizer
(Pythia's 70M-12B do). The analysis fits accuracy against `params/non_embedding` as for the
ladder trained from scratch. How to fetch Pythia and where to put it: docs/pretrained.md.

    hh-jax sweep experiments/pm_pretrained.py --root runs \\
        --axis "checkpoints=('weights/pythia-70m', 'weights/pythia-160m', 'weights/pythia-410m')"
    hh-jax analyze pm runs/pm_pretrained --out figures/pm_pretrained
"""

from __future__ import annotations

import dataclasses
import os

from experiments import common
from hh_jax.models import count_params, hf_config

NEEDS = ()
# The default ladder: Pythia's smallest rungs where docs/pretrained.md puts them.
PYTHIA = tuple(f"weights/pythia-{size}" for size in ("70m", "160m", "410m"))
AXES = {"checkpoints": PYTHIA, "num_pairs": (None,), "seeds": (0,)}


def checkpoint_ladder(weights_dir: str) -> tuple[str, ...]:
  """Every checkpoint directory directly under weights_dir, smallest (non-embedding
  parameters) first."""
  dirs = [os.path.join(weights_dir, d) for d in sorted(os.listdir(weights_dir))]
  dirs = [d for d in dirs if os.path.isdir(d) and hf_config.is_checkpoint_dir(d)]
  size = lambda d: count_params(hf_config.model_config_from_hf(hf_config.read_config(d)))  # noqa: E731
  return tuple(sorted(dirs, key=size))


def checkpoint_name(path: str) -> str:
  return os.path.basename(os.path.normpath(path))


def get_config():
  """Pretrained PMs finetune at a small LR (1e-5, as TRL's Pythia reward models), in bfloat16
  compute, on 512-token transcripts."""
  cfg = common.pm_config("hh_rlhf/all")
  return dataclasses.replace(
      cfg, dtype="bfloat16", data=dataclasses.replace(cfg.data, max_len=512),
      optim=dataclasses.replace(cfg.optim, learning_rate=1e-5, warmup_steps=20))


def get_sweep(axes: dict) -> list[dict]:
  """One PM per checkpoint x dataset size x seed."""
  runs = []
  for path in axes["checkpoints"]:
    for n in axes["num_pairs"]:
      for seed in axes["seeds"]:
        runs.append({"init_from_hf": path, "data.tokenizer": path, "data.num_train_pairs": n,
                     "seed": seed, "_name": f"{checkpoint_name(path)}-n{n or 'all'}-s{seed}"})
  return runs
