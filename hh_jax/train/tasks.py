"""Run kinds and the one entry point that runs any config: `run_config(cfg, run_dir)`.

Each kind's module supplies `build_task(cfg, run_dir, inputs=None) -> lifecycle.Task`
(inputs: in-memory data for tests and notebooks; None loads what the config names):

    lm          hh_jax.train.lm          next-token pretraining of a base LM
    pm          hh_jax.train.pm          preference-model training (Bradley-Terry)
    ppo         hh_jax.train.ppo_run     PPO against a PM
    best_of_n   hh_jax.train.evals       best-of-n curves of a base policy
    elo         hh_jax.train.evals       gold-labeller Elo of a PPO run's snapshots
    ood         hh_jax.train.ood_run     OOD detection of harmful prompts from a base LM's activations
    distill     hh_jax.train.distill     context distillation of a base LM (the HHH prompt)
    policy_eval hh_jax.train.evals       capability and gold reward of a PPO run's policies
    online      hh_jax.train.online      iterated online RLHF rounds (label, PM, PPO) or the static baseline
    online_eval hh_jax.train.online_eval gold win rate of an online run's final policy vs a static run's
"""

from __future__ import annotations

import functools

from hh_jax.train import distill, evals, lifecycle, lm, online, online_eval, ood_run, pm, ppo_run

BUILDERS = {"lm": lm.build_task, "pm": pm.build_task, "ppo": ppo_run.build_task,
            "best_of_n": evals.build_best_of_n, "elo": evals.build_elo, "ood": ood_run.build_task,
            "distill": distill.build_task, "policy_eval": evals.build_policy_eval,
            "online": online.build_task, "online_eval": online_eval.build_online_eval}


def run_config(cfg, run_dir: str, inputs=None, **run_kwargs) -> dict:
  """Run (or resume, or skip) any config in `run_dir` through the one lifecycle."""
  if cfg.kind not in BUILDERS:
    raise lifecycle.RunError(f"unknown run kind {cfg.kind!r}; known: {', '.join(BUILDERS)}")
  build = functools.partial(BUILDERS[cfg.kind], inputs=inputs)
  return lifecycle.run(cfg, run_dir, build, **run_kwargs)
