"""Context distillation of the main policy's base LM (Bai et al. 2022, appendix A.1).

The student learns to behave without a prompt as the base LM behaves after the world's HHH
preamble (hh_jax/train/distill.py): the paper's policies start from such a model. One run per
PPO seed (its data order), so PPO from each distilled model is an independent replicate.

    hh-jax sweep experiments/context_distillation.py --root runs    # after base_lm
"""

from hh_jax.train.distill import DistillConfig
from hh_jax.train.experiment import ref

NEEDS = ("base_lm",)
AXES = {"policy_size": "100k", "ppo_seeds": (0, 1, 2)}


def get_config() -> DistillConfig:
  return DistillConfig(num_transcripts=20_000, top_k=50, batch_size=64)


def get_sweep(axes: dict) -> list[dict]:
  size = axes["policy_size"]
  return [{"teacher": ref("base_lm", model_size=size), "model_size": size, "seed": seed,
           "_name": f"{size}-s{seed}"} for seed in axes["ppo_seeds"]]
