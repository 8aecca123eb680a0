"""PPO against train PMs, scored by test PMs and the gold reward (Bai et al. Fig 4, 13, 15, 33).

Two families of runs, one policy each from a base LM:
- robustness: the main policy size against the train PM of every size (the test PMs of every
  size score the same samples: does a larger test PM see less of the train PM's gain?);
- parallel curves: every policy size against the largest train PM.
Every run config is trained with each seed of the `ppo_seeds` axis (run names end in -s<k>),
so that RL claims are judged with intervals over independent seeds. Every run also stores
policy snapshots on fixed held-out eval prompts every `snapshot_every` iterations (and at the
start and end): the main runs' (main policy, largest train PM) for the gold-labeller Elo
(experiments/elo.py), every run's for the held-out gold helpful and harmless reward of the
claim rl_gold_improves (analysis/rl_gold.py). The cost is small: a snapshot samples the
num_eval_prompts eval prompts once and scores them (no update), which adds
num_eval_prompts / (batch_size x snapshot_every) of a run's sampling and scoring, and none of
its PPO updates: 10% at the laptop settings (256 prompts; 256 x 10), 50% at quick's (128; 64 x
4). The held-out prompts are the test split of the 50/50 `hh_synth/prompts`
(`eval_prompt_dataset`) whatever the training mix, so both halves of rl_gold_improves (helpful
prompts, red-team prompts) get about half of them: drawn from the 90/10 training mix, 128
held only 9-13 red-team prompts on world seeds 0-2. Measured at quick's
settings (40 iterations of 64, snapshots every 4; the smoke preset's 6k policy, compiled steps
cached): 12.4 s without snapshots, 14.3 s with (+16%); the first run of a shape also compiles
the 128-prompt sampler and scorers once.

RL prompts are 90% helpful and 10% red-team, as in the paper's later runs, which "used more
helpful prompts to curb over-optimised harmlessness" (section 4.4): with a 50/50 mix the first
nat of KL goes to learning to refuse, a two-valued reward that saturates, and the score is
concave in sqrt(KL) early.

The reward is normalised (the initial policy's PM scores are N(0, 1), as in the public
reproductions) and the KL coefficient is 0.03 per nat where the paper's is 0.001 on its raw PM
scale. Chosen on world 101's validation prompts (100k policy, 100k PM on 16k pairs, 40
iterations of 128, one seed; held-out gold at the best snapshot against step 0): at the paper's
0.001 the KL reached 11 nats by 5k samples and the policy wrote numbers, letters and lists the
PM over-scores (gold helpfulness on helpful prompts -0.16, reply length 4.9 -> 6.7 tokens);
normalisation alone did not stop the fall (-0.16, measured in world version 3 before the
turn-marker ban); normalised at 0.1 and 0.03 it rose (+0.045
and +0.068, KL 0.3 and ~1 nat) and harmlessness on red-team prompts rose (+0.43, +0.79), so
0.03 (docs/worlds/validation-w101). The paper-faithful variant restores 0.001 without normalisation (experiments/presets.py).

    hh-jax sweep experiments/ppo.py --root runs      # after base_lm and pm_halves
    hh-jax analyze rl runs --out figures/rl
"""

from hh_jax.config import OptimConfig
from hh_jax.train.experiment import ref, refs
from hh_jax.train.ppo import PPOConfig

NEEDS = ("base_lm", "pm_halves")
AXES = {"policy_size": "100k", "policy_sizes": ("25k", "100k"),
        "half_sizes": ("6k", "25k", "100k"), "snapshot_every": 10, "ppo_seeds": (0, 1, 2)}


def get_config() -> PPOConfig:
  return PPOConfig(
      num_iterations=100, batch_size=256, minibatch_size=32, ppo_epochs=2, max_new_tokens=16,
      reward_norm=True, kl_coef=0.03, num_eval_prompts=256,
      prompt_len=47, prompt_dataset="hh_synth/prompts-20000-s0-h90",
      eval_prompt_dataset="hh_synth/prompts", checkpoint_every=20,
      optim=OptimConfig(learning_rate=5e-5, warmup_steps=0, b2=0.999))


def main_config_name(axes: dict) -> str:
  """The main run config: the main policy size against the largest train PM."""
  return f"policy-{axes['policy_size']}-pm-{axes['half_sizes'][-1]}"


def main_run_name(axes: dict) -> str:
  """The main config's run with the first PPO seed."""
  return f"{main_config_name(axes)}-s{axes['ppo_seeds'][0]}"


def get_sweep(axes: dict) -> list[dict]:
  largest = axes["half_sizes"][-1]
  pairs = [(axes["policy_size"], pm) for pm in axes["half_sizes"]]
  pairs += [(pol, largest) for pol in axes["policy_sizes"] if (pol, largest) not in pairs]
  runs = []
  for policy, pm in pairs:
    config = f"policy-{policy}-pm-{pm}"
    for seed in axes["ppo_seeds"]:
      runs.append({"policy_init": ref("base_lm", model_size=policy),
                   "reward_pm": ref("pm_halves", model_size=pm, split_half=0),
                   "test_pms": refs("pm_halves", split_half=1), "seed": seed,
                   "snapshot_every": axes["snapshot_every"],
                   "_name": f"{config}-s{seed}"})
  return runs
