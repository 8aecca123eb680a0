"""Best-of-n sampling of the base policy, ranked by the largest train PM (Bai et al. Fig 36).

n replies per test prompt; for each n the expected score of the reply the train PM ranks
best (an unbiased order-statistic estimator), scored by the train PM, every test PM and the
gold reward, beside the KL bound log n - (n - 1) / n.

    hh-jax sweep experiments/best_of_n.py --root runs    # after base_lm and pm_halves
"""

from hh_jax.train.evals import BestOfNConfig
from hh_jax.train.experiment import ref, refs

NEEDS = ("base_lm", "pm_halves")
AXES = {"policy_size": "100k", "half_sizes": ("6k", "25k", "100k"), "ppo_seeds": (0, 1, 2)}


def get_config() -> BestOfNConfig:
  return BestOfNConfig(prompt_dataset="hh_synth/prompts-20000-s0-h90", prompt_len=47,
                       num_prompts=128, n_max=64, max_new_tokens=16)


def get_sweep(axes: dict) -> list[dict]:
  """One run per seed of `ppo_seeds` (its samples), so the claim has a seed interval."""
  largest = axes["half_sizes"][-1]
  return [{"policy": ref("base_lm", model_size=axes["policy_size"]),
           "train_pm": ref("pm_halves", model_size=largest, split_half=0),
           "test_pms": refs("pm_halves", split_half=1), "seed": seed,
           "_name": f"policy-{axes['policy_size']}-pm-{largest}-s{seed}"}
          for seed in axes["ppo_seeds"]]
