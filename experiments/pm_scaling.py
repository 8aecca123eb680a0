"""PM scaling: accuracy vs model size x number of comparisons (Bai et al. Fig 7, 31, 32).

One epoch per run, the learning rate decayed linearly to zero (the paper finetunes at a fixed
LR; `--set optim.schedule=constant` restores it; see `hh_jax.reproduce.PM_SCHEDULE` for why we
anneal); 5 sizes (906 to 397k non-embedding parameters, 2.6 orders of magnitude) x 4 dataset
sizes (1k to 64k pairs, 1.8 orders) x 2 seeds on the synthetic HH mix, every run scored on
all 4,000 test pairs beside the gold labeler's Bayes ceiling. PMs start from scratch here;
`hh-jax reproduce` starts each from a base LM of its size, and `experiments/pm_pmp.py` from a
preference-model-pretrained (PMP) PM.

    hh-jax sweep experiments/pm_scaling.py --workdir runs/pm_scaling
    hh-jax analyze pm runs/pm_scaling --out figures/pm
    # the same sweep on HH-RLHF (harmless-base, byte tokens, 256-token contexts):
    hh-jax sweep experiments/pm_scaling.py --workdir runs/pm_hh --set data.dataset=hh_rlhf/harmless-base \
        --set data.max_len=256 --set data.num_eval_pairs=None
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
      optim=OptimConfig(learning_rate=1e-3, warmup_steps=10, schedule="linear"))


def get_sweep() -> list[dict]:
  return [{"model_size": size, "data.num_train_pairs": n, "seed": seed}
          for size in SIZES for n in NUM_PAIRS for seed in SEEDS]
