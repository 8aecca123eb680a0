"""HH finetuning after preference-model pretraining: the PM scaling grid, each PM starting
from the PMP run of its size (`experiments/pmp.py`, in the same parent directory `{root}`).

As in the paper the finetuning LR is lower than the PMP LR (paper: 0.01x vs 0.1x the
pretraining LR; here 3e-4 vs 1e-3). Compare with `experiments/pm_scaling.py` (no PMP) by
analysing both directories: the paper finds PMP improves sample efficiency, most at small
dataset sizes.

    hh-jax sweep experiments/pm_pmp.py --workdir runs/pm_pmp
    hh-jax analyze pm runs/pm_pmp --out figures/pm_pmp
"""

from hh_jax.config import DataConfig, OptimConfig, RunConfig

SIZES = ("1k", "6k", "25k", "100k", "400k")
NUM_PAIRS = (1_000, 4_000, 16_000, 64_000)
SEEDS = (0, 1)


def get_config() -> RunConfig:
  return RunConfig(
      kind="pm", model_size="25k", batch_size=32, log_every=20, checkpoint_every=250,
      data=DataConfig(dataset="hh_synth/mix", max_len=64, num_train_pairs=16_000,
                      num_eval_pairs=None),
      optim=OptimConfig(learning_rate=3e-4, warmup_steps=10, schedule="linear"))


def get_sweep() -> list[dict]:
  return [{"model_size": size, "init_from": "{root}/pmp/model_size=" + size,
           "data.num_train_pairs": n, "seed": seed}
          for size in SIZES for n in NUM_PAIRS for seed in SEEDS]
