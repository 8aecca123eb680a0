"""The helpful/harmless tension: % helpful data in the PM's training mix (Bai et al. Fig 19, 26).

A fixed budget of comparisons, from 0% to 100% helpful in steps of 20%, for a small
and a large PM; each is scored on helpful and on harmless test pairs. A PM trained on
one distribution only should be below chance on the other.

    hh-jax sweep experiments/pm_mix.py --workdir runs/pm_mix
"""

from hh_jax.config import DataConfig, OptimConfig, RunConfig

SIZES = ("6k", "100k")
HELPFUL_FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def get_config() -> RunConfig:
  return RunConfig(
      kind="pm", model_size="100k", batch_size=32, log_every=20, checkpoint_every=250,
      data=DataConfig(dataset="hh_synth/mix", max_len=64, num_train_pairs=16_000,
                      helpful_fraction=0.5, num_eval_pairs=2_000),
      optim=OptimConfig(learning_rate=1e-3, warmup_steps=10, schedule="constant"))


def get_sweep() -> list[dict]:
  return [{"model_size": size, "data.helpful_fraction": f}
          for size in SIZES for f in HELPFUL_FRACTIONS]
