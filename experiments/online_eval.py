"""The gold labeller compares the online and static final policies of each PPO seed
(hh_jax.train.online_eval): the expected gold win rate of the online policy's replies over
the static policy's on held-out test prompts, P = sigmoid(2 (hh_online - hh_static)), its Elo
difference, and the gold hh of each round's policy. Needs the synthetic world.

    hh-jax sweep experiments/online_eval.py --root runs      # after online_rlhf
    # analysis: analysis.online.run_online(<root>/online_eval, figures/online)
"""

from experiments import online_rlhf
from hh_jax.train.experiment import ref
from hh_jax.train.online_eval import OnlineEvalConfig

NEEDS = ("online_rlhf",)
AXES = {k: online_rlhf.AXES[k] for k in ("policy_size", "ppo_seeds")}


def get_config() -> OnlineEvalConfig:
  ppo = online_rlhf.get_config().ppo
  return OnlineEvalConfig(prompt_dataset=ppo.prompt_dataset, prompt_split="test",
                          prompt_len=ppo.prompt_len, max_new_tokens=ppo.max_new_tokens,
                          num_prompts=1000)


def get_sweep(axes: dict) -> list[dict]:
  runs = []
  for seed in axes["ppo_seeds"]:
    online, static = online_rlhf.run_names(axes, seed)
    runs.append({"online_run": ref("online_rlhf", name=online),
                 "static_run": ref("online_rlhf", name=static), "seed": seed,
                 "_name": f"eval-{axes['policy_size']}-s{seed}"})
  return runs
