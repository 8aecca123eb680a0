"""PPO from the context-distilled policy (the paper's initial policy) against the largest train
PM, beside the main PPO runs from the plain base LM (experiments/ppo.py): same PMs, prompts,
hyperparameters and seeds; seed k starts from distillation run k. The KL reference is the
distilled model, as in the paper. Like the main runs, each stores held-out snapshots every
`snapshot_every` iterations (gold helpful and harmless over training, analysis/rl_gold.py).

    hh-jax sweep experiments/ppo_distilled.py --root runs  # after context_distillation, pm_halves
"""

from experiments import ppo
from hh_jax.train.experiment import ref, refs
from hh_jax.train.ppo import PPOConfig

NEEDS = ("context_distillation", "pm_halves")
AXES = {"policy_size": "100k", "half_sizes": ("6k", "25k", "100k"), "ppo_seeds": (0, 1, 2),
        "snapshot_every": 10}


def get_config() -> PPOConfig:
  return ppo.get_config()


def get_sweep(axes: dict) -> list[dict]:
  size, largest = axes["policy_size"], axes["half_sizes"][-1]
  return [{"policy_init": ref("context_distillation", model_size=size, seed=seed),
           "reward_pm": ref("pm_halves", model_size=largest, split_half=0),
           "test_pms": refs("pm_halves", split_half=1), "seed": seed,
           "snapshot_every": axes["snapshot_every"],
           "_name": f"policy-{size}-cd-pm-{largest}-s{seed}"} for seed in axes["ppo_seeds"]]
