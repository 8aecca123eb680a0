"""Preference-model pretraining (PMP): the stage between the base LM and HH finetuning.

The paper (section 2, Askell et al. 2021 App C.1) pretrains every PM for one epoch on
binarised comparisons from other sources (StackExchange, Reddit, Wikipedia edits) at 0.1x
the pretraining LR, then finetunes on human feedback. The synthetic world's stand-in for that
other source is an independent draw of *helpfulness-only* comparisons (`hh_synth/helpful`,
seed 1, 64k pairs: other contexts and replies than the `mix` finetuning data, and no
harmlessness labels, as community votes have none). Each run initialises from the base LM
of its size; `experiments/pm_pmp.py` then finetunes from these runs (the score head is
kept: `hh_jax.train.loop.init_from_run`).

    hh-jax sweep experiments/base_lm.py --workdir runs/base_lm
    hh-jax sweep experiments/pmp.py --workdir runs/pmp
    hh-jax sweep experiments/pm_pmp.py --workdir runs/pm_pmp
    hh-jax analyze pm runs/pm_pmp --out figures/pm_pmp
"""

from hh_jax.config import DataConfig, OptimConfig, RunConfig

SIZES = ("1k", "6k", "25k", "100k", "400k")
PMP_DATASET = "hh_synth/helpful-64k-s1"


def get_config() -> RunConfig:
  return RunConfig(
      kind="pm", model_size="25k", batch_size=32, log_every=20, checkpoint_every=250,
      data=DataConfig(dataset=PMP_DATASET, max_len=64, num_train_pairs=None, num_eval_pairs=None),
      optim=OptimConfig(learning_rate=1e-3, warmup_steps=10, schedule="linear"))


def get_sweep() -> list[dict]:
  return [{"model_size": size, "init_from": "{root}/base_lm/model_size=" + size} for size in SIZES]
