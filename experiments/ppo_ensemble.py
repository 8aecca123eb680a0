"""PPO against an ensemble of train PMs (Coste et al. 2023), beside a single-PM control.

The main policy size against K train PMs at once: the reward is the mean ("mean") or the worst
case ("min") of the members' normalised scores, r_ens = mean_k / min_k (g_k r_k + c_k), each
member's gain and bias set so that its scores of the initial policy's replies are N(0, 1)
(reward_norm: members of different sizes sit on different scales; hh_jax.train.ppo). The
control ("ens1") is the largest train PM alone under the same reward normalisation, so that the
comparison on gold (over-optimisation: the Gao coefficients, the gold reward at the best KL)
isolates the ensemble and not the normalisation. Test PMs (the other half) and the gold reward
score every run, as in experiments/ppo.py.

Members: pm_halves trains one PM per size and half, so the K = 3 ensemble is the train-half PMs
of all sizes (6k, 25k, 100k), the largest first (its score is the run's `score_train` and the
value function starts from it). Coste et al. ensemble PMs of one size that differ in seed; that
ensemble (seeds of the largest train PM) needs K - 1 more PM runs and isolates the ensemble
from the size mix; the one here also adds smaller, less accurate PMs, which the "min" reward
weights most where they disagree.

Runs: policy-<P>-ens<K>-<mean|min>-s<k> and policy-<P>-ens1-s<k>, every PPO seed. Every run
stores held-out snapshots every `snapshot_every` iterations (and at the end): the claim
ensemble_reduces_overoptimisation (analysis/rl_gold.py) pairs each ensemble run's held-out gold
hh at its final snapshot with the ens1 run of the same seed. `hh-jax reproduce` runs this file
as the stage ppo_ensemble (after elo); its runs never enter the ppo stage's fits.

    hh-jax sweep experiments/ppo_ensemble.py --root runs   # after base_lm and pm_halves
"""

import dataclasses

from experiments import ppo
from hh_jax.train.experiment import ref, refs
from hh_jax.train.ppo import PPOConfig

NEEDS = ("base_lm", "pm_halves")
AXES = {"policy_size": "100k", "half_sizes": ("6k", "25k", "100k"), "ppo_seeds": (0, 1, 2),
        "ensembles": ("mean", "min"), "snapshot_every": 10}


def get_config() -> PPOConfig:
  """experiments/ppo.py's PPO config with the reward normalised per member."""
  return dataclasses.replace(ppo.get_config(), reward_norm=True)


def ensemble_size(axes: dict) -> int:
  """K: every train-half PM is a member."""
  return len(axes["half_sizes"])


def get_sweep(axes: dict) -> list[dict]:
  policy, largest = axes["policy_size"], axes["half_sizes"][-1]
  shared = {"policy_init": ref("base_lm", model_size=policy),
            "reward_pm": ref("pm_halves", model_size=largest, split_half=0),
            "test_pms": refs("pm_halves", split_half=1), "snapshot_every": axes["snapshot_every"]}
  members = refs("pm_halves", split_half=0)     # holds reward_pm: it counts once (reward_members)
  runs = []
  for seed in axes["ppo_seeds"]:
    runs.append({**shared, "seed": seed, "_name": f"policy-{policy}-ens1-s{seed}"})
    for ensemble in axes["ensembles"]:
      runs.append({**shared, "reward_pms": members, "ensemble": ensemble, "seed": seed,
                   "_name": f"policy-{policy}-ens{ensemble_size(axes)}-{ensemble}-s{seed}"})
  return runs
