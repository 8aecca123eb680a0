"""Iterated online RLHF against the static baseline at the same label budget (Bai et al. 2022
section 4.5; hh_jax.train.online).

Per PPO seed, two runs from the base LM of `policy_size`:
- online-<size>-s<k>: `online_rounds` rounds; each samples 2 replies to `labels_per_round`
  training prompts from the latest policy (round 0: the base LM), has the world's gold
  labeller label them, adds them to the pool (which starts from `labels_per_round` static
  hh_synth comparisons), and retrains the PM and then PPO from the base LM;
- static-<size>-s<k>: one PM on (online_rounds + 1) x labels_per_round static hh_synth
  comparisons (the scripted policy's), the online run's final pool size, and one PPO run.
Both use the same PM and PPO settings and seed. The defaults fit a CPU: 25k policy and PMs,
3 rounds of 1000 labels, 40 PPO iterations of 64 rollouts per round (measured on 2 shared CPU
cores: online 4-5 min, static 1 min, evaluation 0.5 min per seed).

pair="latest_vs_base": in rounds after the first, one reply is the latest policy's and the
other the base LM's. With two replies from the latest policy (pair="latest", the config
default) 69% of round 1's comparisons were gold ties (Bayes ceiling 0.59: the PPO policy
refuses almost everywhere); with the base LM as the other side 30% (ceiling 0.77), as in round
0. (Chosen from the training labels' tie rate, one run, world 1.)

    hh-jax sweep experiments/online_rlhf.py --root runs      # after base_lm
    hh-jax sweep experiments/online_eval.py --root runs      # then the gold comparison
"""

from experiments.common import pm_learning_rate
from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.train.experiment import ref
from hh_jax.train.online import OnlineConfig
from hh_jax.train.ppo import PPOConfig

NEEDS = ("base_lm",)
AXES = {"policy_size": "25k", "ppo_seeds": (0, 1, 2), "online_rounds": 3,
        "labels_per_round": 1000}


def get_config() -> OnlineConfig:
  pm = RunConfig(kind="pm", batch_size=32, log_every=20, checkpoint_every=250,
                 data=DataConfig(dataset="hh_synth/mix", max_len=64, num_eval_pairs=2000),
                 optim=OptimConfig(learning_rate=1e-3, warmup_steps=10, schedule="linear"))
  ppo = PPOConfig(num_iterations=40, batch_size=64, minibatch_size=16, ppo_epochs=2,
                  reward_norm=True, kl_coef=0.03,          # as experiments/ppo.py (chosen there)
                  max_new_tokens=16, prompt_len=47, prompt_dataset="hh_synth/prompts-20000-s0-h90",
                  checkpoint_every=20, optim=OptimConfig(learning_rate=1e-4, warmup_steps=0, b2=0.999))
  return OnlineConfig(rounds=3, labels_per_round=1000, pair="latest_vs_base", pm=pm, ppo=ppo)


def run_names(axes: dict, seed: int) -> tuple[str, str]:
  """(online run, static run) of one PPO seed."""
  size = axes["policy_size"]
  return f"online-{size}-s{seed}", f"static-{size}-s{seed}"


def get_sweep(axes: dict) -> list[dict]:
  size = axes["policy_size"]
  shared = {"base_lm": ref("base_lm", model_size=size), "rounds": axes["online_rounds"],
            "labels_per_round": axes["labels_per_round"],
            "pm.optim.learning_rate": pm_learning_rate(size)}
  runs = []
  for seed in axes["ppo_seeds"]:
    online, static = run_names(axes, seed)
    runs.append({**shared, "seed": seed, "static": False, "_name": online})
    runs.append({**shared, "seed": seed, "static": True, "_name": static})
  return runs
