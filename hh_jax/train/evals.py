"""Evaluation runs: best-of-n of a base policy, Elo of a PPO run, and the held-out policy
evaluation of a PPO run's initial and final policy, as lifecycle Tasks with no training steps,
so their directories (config.json, bon.json / elo.json / policy_eval.json, summary.json) are
written, skipped and checked like every other run's. The computations are `hh_jax.eval`'s.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import jax.numpy as jnp

from hh_jax import models
from hh_jax.config import config_field, validate_fields
from hh_jax.data import pipeline
from hh_jax.eval import capability
from hh_jax.eval.rl_evals import best_of_n_eval, elo_eval
from hh_jax.train import lifecycle
from hh_jax.train.ppo_run import check_compatible


@dataclasses.dataclass(frozen=True)
class BestOfNConfig:
  """N replies per prompt from `policy`, ranked by `train_pm`, scored by every PM and gold."""

  kind: str = config_field("best_of_n", choices=("best_of_n",))
  policy: str = ""                      # a base LM run
  train_pm: str = ""                    # the PM that picks the best of n
  test_pms: tuple[str, ...] = ()
  prompt_dataset: str = "hh_synth/prompts"
  prompt_split: str = "test"
  prompt_len: int = config_field(47, ge=1)
  num_prompts: int = config_field(128, ge=1)
  n_max: int = config_field(64, ge=1)
  max_new_tokens: int = config_field(16, ge=1)
  temperature: float = config_field(1.0, ge=0.0)
  seed: int = config_field(0, ge=0)
  data_dir: str | None = None
  tokenizer: str = "auto"

  def __post_init__(self):
    validate_fields(self)


@dataclasses.dataclass(frozen=True)
class EloConfig:
  """Gold-labeller Elo of the policy snapshots a PPO run stored."""

  kind: str = config_field("elo", choices=("elo",))
  ppo_run: str = ""
  reward: str = config_field("hh", choices=("hh", "helpful", "harmless"))  # the gold reward compared
  beta: float = config_field(2.0, gt=0.0)          # P(i beats j) = sigmoid(beta (R_i - R_j))
  seed: int = config_field(0, ge=0)

  def __post_init__(self):
    validate_fields(self)


@dataclasses.dataclass(frozen=True)
class PolicyEvalConfig:
  """A PPO run's initial policy (its `policy_init`) and final policy, evaluated on the same
  held-out prompts: capability and gold reward by task family (`hh_jax.eval.capability`)."""

  kind: str = config_field("policy_eval", choices=("policy_eval",))
  ppo_run: str = ""
  prompt_dataset: str = "hh_synth/prompts"
  prompt_split: str = "test"
  prompt_len: int = config_field(47, ge=1)
  num_prompts: int = config_field(1000, ge=1)
  max_new_tokens: int = config_field(16, ge=1)
  temperature: float = config_field(1.0, ge=0.0)   # of the gold-reward samples
  seed: int = config_field(0, ge=0)
  data_dir: str | None = None
  tokenizer: str = "auto"

  def __post_init__(self):
    validate_fields(self)


def build_policy_eval(cfg: PolicyEvalConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """policy_eval.json: {"initial", "final"} of `capability.evaluate_policy`, and the PPO run's
  names (policy size, init, PM) for analysis."""
  del run_dir
  if not lifecycle.is_finished(cfg.ppo_run):
    raise lifecycle.RunError(f"policy_eval: {cfg.ppo_run} is not a finished PPO run")
  gold = pipeline.gold_fn(cfg.prompt_dataset)
  if gold is None:
    raise lifecycle.RunError(f"policy_eval needs a world with a gold reward, not {cfg.prompt_dataset}")
  prompts = inputs if inputs is not None else pipeline.load_prompts(
      cfg.prompt_dataset, cfg.prompt_split, cfg.prompt_len, cfg.tokenizer, cfg.data_dir,
      limit=cfg.num_prompts)
  families = pipeline.world_task_names(prompts)
  init_dir = lifecycle.read_config_field(cfg.ppo_run, "policy_init")
  models_ = {"initial": lifecycle.load_model(init_dir), "final": lifecycle.load_model(cfg.ppo_run)}
  check_compatible(cfg, {"policy": models_["final"], "policy_init": models_["initial"]})

  def finish(_):
    result = {name: capability.evaluate_policy(m, prompts, families, gold,
                                               max_new_tokens=cfg.max_new_tokens,
                                               temperature=cfg.temperature, seed=cfg.seed,
                                               banned_ids=pipeline.turn_marker_ids(
                                                   cfg.prompt_dataset, cfg.tokenizer))
              for name, m in models_.items()}
    result.update({"ppo_run": os.path.basename(os.path.normpath(cfg.ppo_run)),
                   "policy_init": os.path.basename(os.path.normpath(init_dir)),
                   "init_kind": lifecycle.read_config_field(init_dir, "kind"),   # lm / distill
                   "policy_params": models.count_params(models_["final"].cfg),
                   "num_prompts": int(len(prompts))})
    summary = {f"{name}/{k}": result[name][k] for name in models_
               for k in ("capability", "gold_hh")}
    return lifecycle.Outputs(summary=summary, json_files={"policy_eval.json": result})

  return evaluation_task(finish)


def evaluation_task(finish) -> lifecycle.Task:
  """A Task that trains nothing: `finish(None)` computes the outputs."""
  return lifecycle.Task(state=None, step=None, batches=iter(()), num_steps=0, key=None,
                        finish=finish, loss_key="")


def build_best_of_n(cfg: BestOfNConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """bon.json: best-of-n curves for n = 1, 2, 4, ... <= n_max (`hh_jax.eval.rl_evals`)."""
  del run_dir
  prompts = inputs if inputs is not None else pipeline.load_prompts(
      cfg.prompt_dataset, cfg.prompt_split, cfg.prompt_len, cfg.tokenizer, cfg.data_dir,
      limit=cfg.num_prompts)
  policy, train_pm = lifecycle.load_model(cfg.policy), lifecycle.load_model(cfg.train_pm)
  tests = {os.path.basename(os.path.normpath(d)): lifecycle.load_model(d) for d in cfg.test_pms}
  check_compatible(cfg, {"policy": policy, "train_pm": train_pm,
                         **{f"test_pms[{n}]": m for n, m in tests.items()}})
  gold = pipeline.gold_fn(cfg.prompt_dataset)

  def finish(_):
    bon = best_of_n_eval(policy, train_pm, tests, jnp.asarray(prompts), n_max=cfg.n_max,
                         max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                         gold_fn=gold, seed=cfg.seed,
                         banned_ids=pipeline.turn_marker_ids(cfg.prompt_dataset, cfg.tokenizer))
    summary = {k: v for k, v in bon.items() if k.endswith("_base")}
    return lifecycle.Outputs(summary=summary, json_files={"bon.json": bon})

  return evaluation_task(finish)


def build_elo(cfg: EloConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """elo.json: maximum-likelihood gold Elo of the PPO run's snapshots beside the PM-predicted one."""
  del run_dir, inputs
  paths = sorted(glob.glob(os.path.join(cfg.ppo_run, lifecycle.EVALS, "step_*.npz")))

  def finish(_):
    elo = elo_eval(paths, reward=cfg.reward, beta=cfg.beta, seed=cfg.seed)
    summary = {"elo/gold_final": elo["elo_gold"][-1], "elo/pm_predicted_final": elo["elo_pm_predicted"][-1]}
    return lifecycle.Outputs(summary=summary, json_files={"elo.json": elo})

  return evaluation_task(finish)
