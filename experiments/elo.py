"""Gold-labeller Elo of the main PPO runs' policy snapshots, one per PPO seed (Bai et al. Fig 15).

Every pair of snapshots is compared on the same eval prompts by the world's gold labeller,
P(i beats j) = sigmoid(beta (R_i - R_j)), one sampled label per prompt and pair; Elo is
fitted by maximum likelihood, anchored at the initial policy, and set beside the
PM-predicted Elo 174 x (mean train-PM score - initial). Needs the synthetic world.

    hh-jax sweep experiments/elo.py --root runs      # after ppo
"""

from experiments import ppo
from hh_jax.train.evals import EloConfig
from hh_jax.train.experiment import ref

NEEDS = ("ppo",)
AXES = {"policy_size": ppo.AXES["policy_size"], "half_sizes": ppo.AXES["half_sizes"],
        "ppo_seeds": ppo.AXES["ppo_seeds"]}


def get_config() -> EloConfig:
  return EloConfig()


def get_sweep(axes: dict) -> list[dict]:
  names = [f"{ppo.main_config_name(axes)}-s{seed}" for seed in axes["ppo_seeds"]]
  return [{"ppo_run": ref("ppo", name=name), "_name": name} for name in names]
