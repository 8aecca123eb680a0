"""Held-out evaluation of every PPO policy of the parallel-curves family (each policy size
against the largest train PM) and of PPO from the context-distilled model: capability (greedy
exact answers on the helpful task families) and gold reward by task family, of the initial and
the final policy, on the same test prompts (hh_jax/eval/capability.py).

Capability before vs after RLHF, by policy size, is the alignment tax or bonus (Fig 3); the
gold reward of PPO from the distilled vs the plain base LM is the context-distillation claim.

    hh-jax sweep experiments/policy_eval.py --root runs    # after ppo and ppo_distilled
"""

from experiments import ppo
from hh_jax.train.evals import PolicyEvalConfig
from hh_jax.train.experiment import ref

NEEDS = ("ppo", "ppo_distilled")
AXES = {"policy_size": "100k", "policy_sizes": ("25k", "100k"),
        "half_sizes": ("6k", "25k", "100k"), "ppo_seeds": (0, 1, 2)}


def get_config() -> PolicyEvalConfig:
  base = ppo.get_config()
  return PolicyEvalConfig(prompt_dataset=base.prompt_dataset, prompt_len=base.prompt_len,
                          max_new_tokens=base.max_new_tokens, num_prompts=1000)


def get_sweep(axes: dict) -> list[dict]:
  largest = axes["half_sizes"][-1]
  sizes = list(dict.fromkeys([*axes["policy_sizes"], axes["policy_size"]]))
  names = [(f"policy-{s}-pm-{largest}", "ppo") for s in sizes]
  names.append((f"policy-{axes['policy_size']}-cd-pm-{largest}", "ppo_distilled"))
  return [{"ppo_run": ref(stage, name=f"{config}-s{seed}"), "seed": seed,
           "_name": f"{config}-s{seed}"} for config, stage in names for seed in axes["ppo_seeds"]]
