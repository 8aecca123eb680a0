"""Preference-model pretraining (PMP): the stage between the base LM and HH finetuning.

The paper (section 2) pretrains every PM for one epoch on binarised comparisons from other
sources (StackExchange, Reddit, Wikipedia edits) at 0.1x the pretraining LR, then finetunes on
human feedback. The synthetic world's stand-in for that other source is an independent draw of
*helpfulness-only* comparisons (`hh_synth/helpful-64k-s1`: other contexts and replies than the
`mix` finetuning data, and no harmlessness labels, as community votes have none). Each run
starts from the base LM of its size; experiments/pm_pmp.py finetunes from these runs (the
score head is kept). Not part of `hh-jax reproduce`.

    hh-jax sweep experiments/base_lm.py --root runs
    hh-jax sweep experiments/pmp.py --root runs
    hh-jax sweep experiments/pm_pmp.py --root runs
    hh-jax analyze pm runs/pm_pmp --out figures/pm_pmp
"""

from experiments import common
from hh_jax.config import override
from hh_jax.train.experiment import ref

NEEDS = ("base_lm",)
AXES = {"pm_sizes": ("1k", "6k", "25k", "100k", "400k")}
PMP_DATASET = "hh_synth/helpful-64k-s1"


def get_config():
  return override(common.pm_config(PMP_DATASET), {"data.num_train_pairs": None})


def get_sweep(axes: dict) -> list[dict]:
  return [{"model_size": s, "init_from": ref("base_lm", model_size=s), "_name": s}
          for s in axes["pm_sizes"]]
