"""PPO of each policy size against one train PM, scored by test PMs (Bai et al. Fig 4, 13, 33).

Uses the runs of the base_lm and pm_scaling sweeps in the same parent directory
(`{root}`), e.g.

    hh-jax sweep experiments/base_lm.py --workdir runs/base_lm
    hh-jax sweep experiments/pm_scaling.py --workdir runs/pm_scaling
    hh-jax sweep experiments/ppo.py --workdir runs/ppo
    hh-jax analyze rl runs/ppo --out figures/rl

The train PM is the largest PM at the largest dataset size (seed 0); the test PMs are
every size at that dataset size with seed 1 (other weights, other data order). For
disjoint train/test comparisons (the paper's robustness split) use `hh-jax reproduce`,
whose `pm_halves` stage trains PMs on two halves of the data.
"""

from hh_jax.config import OptimConfig
from hh_jax.train.ppo import PPOConfig

POLICY_SIZES = ("25k", "100k")
PM_SIZES = ("6k", "25k", "100k", "400k")
PM_RUN = "{root}/pm_scaling/model_size=%s,num_train_pairs=64000,seed=%d"


def get_config() -> PPOConfig:
  return PPOConfig(
      num_iterations=120, batch_size=64, minibatch_size=16, ppo_epochs=2, max_new_tokens=16,
      prompt_len=47, kl_coef=0.001, snapshot_every=10,
      optim=OptimConfig(learning_rate=1e-4, warmup_steps=0, b2=0.999))


def get_sweep() -> list[dict]:
  tests = tuple(PM_RUN % (size, 1) for size in PM_SIZES)
  return [{"policy_init": "{root}/base_lm/model_size=" + size,
           "reward_pm": PM_RUN % (PM_SIZES[-1], 0), "test_pms": tests}
          for size in POLICY_SIZES]
