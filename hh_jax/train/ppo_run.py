"""A PPO run as a lifecycle Task: load the policy and PMs, check they fit together, iterate.

The step is one PPO iteration: on packed rows (`ppo_packed.make_packed_iteration`, the
default `packing=True`; one process) or padded (`ppo.make_iteration`, one jitted call); the
host logs: the mean metrics, each test PM's mean score (and each reward-ensemble member's,
when the reward is an ensemble of train PMs: `ppo/score_member/<name>`), the gold reward of
the rollouts (synthetic world) and a per-sample line (samples.jsonl: kl, score_train,
score_test/<name>, gold_<k>), so fits can be recomputed. Held-out evaluations every
`snapshot_every` iterations: the policy's replies to fixed eval prompts with every scorer's
score, the gold rewards and each prompt's task family (evals/step_XXXXXX.npz, for Elo and the
held-out gold of analysis/rl_gold.py).
pms.json names the models used, with their sizes, for analysis.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax import distributed, models, paths
from hh_jax import sharding as shd
from hh_jax.data import hh_synth, pipeline
from hh_jax.data.batching import LMIterator
from hh_jax.metrics import read_jsonl
from hh_jax.train import lifecycle, ppo_packed
from hh_jax.train.optim import init_train_state, make_optimizer
from hh_jax.train.ppo import (PPOConfig, banned_ids, hparams_from_config, make_iteration,
                              reward_normalization, value_params)
from hh_jax.train.rollout import make_pm_score_fn, make_sampler


@dataclasses.dataclass
class PPOInputs:
  """prompt_tokens: (N, P) int32 left-padded contexts; gold_fn(prompt_tokens, response) ->
  {"helpful", "harmless", "hh"} (B,) arrays, or None when there is no gold reward; decode:
  token ids -> text for the tracker's sample table (None: the ids are shown)."""

  prompt_tokens: np.ndarray
  gold_fn: Callable[[np.ndarray, np.ndarray], dict] | None = None
  eval_prompt_tokens: np.ndarray | None = None
  decode: Callable[[np.ndarray], str] | None = None
  task_fn: Callable[[np.ndarray], np.ndarray] | None = None   # prompts -> (B,) task family names


def load_inputs(cfg: PPOConfig) -> PPOInputs:
  """The RL prompts (train split), the eval prompts (eval_split of eval_prompt_dataset, default
  prompt_dataset) and the world's gold reward."""
  load = lambda dataset, split, limit: pipeline.load_prompts(  # noqa: E731
      dataset, split, cfg.prompt_len, cfg.tokenizer, cfg.data_dir, limit=limit)
  world = cfg.prompt_dataset.startswith("hh_synth")
  eval_dataset = cfg.eval_prompt_dataset or cfg.prompt_dataset
  if eval_dataset.startswith("hh_synth") != world or (
      world and hh_synth.world_seed_of(eval_dataset) != hh_synth.world_seed_of(cfg.prompt_dataset)):
    raise lifecycle.RunError(f"eval_prompt_dataset {eval_dataset} is not from the world of "
                             f"prompt_dataset {cfg.prompt_dataset}, whose gold reward judges it")
  return PPOInputs(load(cfg.prompt_dataset, cfg.prompt_split, cfg.num_prompts),
                   pipeline.gold_fn(cfg.prompt_dataset),
                   load(eval_dataset, cfg.eval_split, cfg.num_eval_prompts),
                   pipeline.get_tokenizer(cfg.prompt_dataset, cfg.tokenizer).decode,
                   pipeline.world_task_names if world else None)


def run_name(path: str) -> str:
  return os.path.basename(os.path.normpath(path))


def check_compatible(cfg, named: dict[str, lifecycle.Model]) -> None:
  """Every model shares the policy's vocabulary and can read prompt + reply + EOC
  (cfg.prompt_len + cfg.max_new_tokens + 1 tokens), checked before a run writes anything."""
  need = cfg.prompt_len + cfg.max_new_tokens + 1
  vocab = named["policy"].cfg.vocab_size
  for role, m in named.items():
    if m.cfg.vocab_size != vocab:
      raise lifecycle.RunError(f"{role} has vocab_size {m.cfg.vocab_size}, the policy {vocab}")
    if m.cfg.max_len < need:
      raise lifecycle.RunError(
          f"{role} has max_len {m.cfg.max_len} < prompt_len {cfg.prompt_len} + max_new_tokens "
          f"{cfg.max_new_tokens} + 1 (EOC): lower prompt_len or max_new_tokens")


def describe_models(cfg: PPOConfig, policy, pm, tests, members=()) -> dict:
  """pms.json: which runs this PPO run used, with their non-embedding sizes; "train" is the
  first train PM, and an ensemble reward adds "reward_members" (all K) and "ensemble"."""
  def describe(path: str, model: lifecycle.Model) -> dict:
    return {"name": run_name(path), "run": paths.absolute(path),
            "params": models.count_params(model.cfg),
            "model_size": lifecycle.read_config_field(path, "model_size")}
  out = {"policy": describe(cfg.policy_init, policy), "train": describe(cfg.reward_pm, pm),
         "test": [describe(d, t) for d, t in zip(cfg.test_pms, tests)]}
  if members:
    out["reward_members"] = [describe(d, m) for d, m in zip(cfg.reward_members, (pm, *members))]
    out["ensemble"] = cfg.ensemble
  return out


def member_names(cfg: PPOConfig) -> list[str]:
  """The run names of the reward ensemble's members, made unique by their index when two share one."""
  names = [run_name(d) for d in cfg.reward_members]
  return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def record_members(rec: dict, line: dict, names: list[str], samples: dict) -> None:
  """Per ensemble member (K > 1): its mean raw score, reward gain and bias (rec) and its
  per-sample scores (line), named by `member_names`."""
  for key in ("ppo/reward_gain", "ppo/reward_bias"):
    per_member = np.asarray(rec.pop(key)).reshape(-1)
    rec.update({f"{key}/{n}": float(v) for n, v in zip(names, per_member)})
  for name, scores in zip(names, samples["score_members"]):
    rec[f"ppo/score_member/{name}"] = float(np.mean(scores))
    line[f"score_member/{name}"] = scores


def gold_by_task(task_names: np.ndarray, gold_hh: np.ndarray, mask: np.ndarray) -> dict:
  """Mean gold hh reward and mean reply length (tokens, EOS included) per task family."""
  out = {}
  lengths = np.asarray(mask).sum(axis=1)
  for task in np.unique(task_names):
    sel = task_names == task
    out[f"gold_by_task/{task}/hh"] = float(np.mean(np.asarray(gold_hh)[sel]))
    out[f"gold_by_task/{task}/reply_len"] = float(np.mean(lengths[sel]))
  return out


def host_record(cfg: PPOConfig, test_names: list[str], gold_fn, task_fn=None):
  """fetched iteration output -> (scalars to log, per-sample line)."""

  def record(step: int, out: dict):
    rec = dict(out["metrics"])
    line = {k: out["samples"][k] for k in ("kl", "score_train")}
    for name, scores in zip(test_names, out["samples"]["score_test"]):
      rec[f"ppo/score_test/{name}"] = float(np.mean(scores))
      line[f"score_test/{name}"] = scores
    if len(cfg.reward_members) > 1:
      record_members(rec, line, member_names(cfg), out["samples"])
    if gold_fn is not None:
      gold = gold_fn(np.asarray(out["prompts"]), np.asarray(out["response"]))
      for k, v in gold.items():
        rec[f"gold/{k}"] = float(np.mean(v))
        line[f"gold_{k}"] = np.asarray(v, np.float64).tolist()
      if task_fn is not None:
        rec.update(gold_by_task(task_fn(out["prompts"]), gold["hh"], out["mask"]))
    rec.update({"ppo/samples": step * cfg.batch_size, "ppo/iteration": step,
                "perf/tokens": float(np.sum(out["mask"]))})
    return rec, line

  return record


def snapshot_fn(cfg: PPOConfig, policy, pm, tests, test_names, inputs: PPOInputs, key, members=()):
  """(step, state) -> the current policy's replies to the eval prompts, with every score (the
  ensemble's further members as score_member__<name>), the gold rewards and, on the synthetic
  world, each eval prompt's task family (`task`, e.g. "harmful_request" for a red-team prompt)."""
  if not cfg.snapshot_every or inputs.eval_prompt_tokens is None:
    return None
  sample = make_sampler(policy.graphdef, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, banned_ids=banned_ids(cfg))
  scorers = [("score_train", make_pm_score_fn(pm.graphdef), pm.params)]
  scorers += [(f"score_test__{n}", make_pm_score_fn(t.graphdef), t.params)
              for n, t in zip(test_names, tests)]
  scorers += [(f"score_member__{n}", make_pm_score_fn(m.graphdef), m.params)
              for n, m in zip(member_names(cfg)[1:], members)]
  prompts = jnp.asarray(inputs.eval_prompt_tokens[:cfg.num_eval_prompts])
  task = None if inputs.task_fn is None else np.asarray(inputs.task_fn(np.asarray(prompts)), str)

  def snapshot(step: int, state) -> dict:
    out = sample(state["params"]["policy"], prompts,
                 jax.random.fold_in(jax.random.fold_in(key, 999_983), step))
    arrays = {"prompts": prompts, "response": out.response, "mask": out.mask,
              "samples": step * cfg.batch_size}
    for name, fn, params in scorers:
      arrays[name] = fn(params, prompts, out.response, out.mask)
    if inputs.gold_fn is not None:
      for k, v in inputs.gold_fn(np.asarray(prompts), np.asarray(out.response)).items():
        arrays[f"gold_{k}"] = v
    arrays = jax.device_get(arrays)
    return arrays if task is None else {**arrays, "task": task}

  return snapshot


def summarize(run_dir: str) -> dict:
  """Final and initial values of the KL, scores, gold rewards and EOS rate."""
  records = read_jsonl(os.path.join(run_dir, lifecycle.METRICS))
  first, last = records[0], records[-1]
  keep = ("ppo/kl", "ppo/sqrt_kl", "ppo/score", "gold/", "ppo/eos_rate", "ppo/response_len")
  out = {k: v for k, v in last.items() if k.startswith(keep)}
  out.update({f"{k}/initial": first[k] for k in list(out) if k in first})
  out["ppo/iterations"] = last["step"]
  return out


def initial_reward_normalization(cfg: PPOConfig, policy, pms, inputs: PPOInputs) -> tuple[list, list]:
  """([g_k], [c_k]): `ppo.reward_normalization` of each train PM k's scores (the ensemble's
  members, `pms`) of the same `reward_norm_samples` replies of the initial policy to training
  prompts (a fixed draw from the run's seed): every member's g_k r_k + c_k is N(0, 1) there."""
  rng = np.random.default_rng([cfg.seed, 271828])
  rows = rng.choice(len(inputs.prompt_tokens), cfg.reward_norm_samples,
                    replace=cfg.reward_norm_samples > len(inputs.prompt_tokens))
  prompts = jnp.asarray(inputs.prompt_tokens[rows])
  sample = make_sampler(policy.graphdef, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, banned_ids=banned_ids(cfg))
  out = sample(policy.params, prompts, jax.random.fold_in(jax.random.key(cfg.seed), 271828))
  gain_bias = [reward_normalization(make_pm_score_fn(pm.graphdef)(pm.params, prompts,
                                                                  out.response, out.mask))
               for pm in pms]
  return [g for g, _ in gain_bias], [c for _, c in gain_bias]


def resolve_banned_tokens(cfg: PPOConfig) -> PPOConfig:
  """cfg with banned_token_ids = the prompt tokenizer's turn markers when it is None."""
  if cfg.banned_token_ids is not None:
    return cfg
  return dataclasses.replace(cfg, banned_token_ids=pipeline.turn_marker_ids(cfg.prompt_dataset,
                                                                            cfg.tokenizer))


def build_task(cfg: PPOConfig, run_dir: str, inputs: PPOInputs | None = None) -> lifecycle.Task:
  """A PPO run (module docstring)."""
  cfg = resolve_banned_tokens(cfg)
  inputs = inputs if inputs is not None else load_inputs(cfg)
  policy, pm = lifecycle.load_model(cfg.policy_init), lifecycle.load_model(cfg.reward_pm)
  tests = [lifecycle.load_model(d) for d in cfg.test_pms]
  members = [lifecycle.load_model(d) for d in cfg.reward_members[1:]]   # the ensemble after reward_pm
  if inputs.prompt_tokens.shape[1] != cfg.prompt_len:
    raise lifecycle.RunError(f"prompts have {inputs.prompt_tokens.shape[1]} tokens, "
                             f"prompt_len is {cfg.prompt_len}")
  check_compatible(cfg, {"policy": policy, "reward_pm": pm,
                         **{f"reward_members[{i + 1}]": m for i, m in enumerate(members)},
                         **{f"test_pms[{i}]": t for i, t in enumerate(tests)}})
  value_gd = pm.graphdef if cfg.value_init == "pm" else policy.graphdef
  optimizer = make_optimizer(cfg.optim, cfg.num_iterations * cfg.updates_per_iteration)
  params = {"policy": jax.tree.map(jnp.array, policy.params),
            "value": value_params(cfg.value_init, policy.params, pm.params)}
  mesh = shd.make_mesh(cfg.mesh)
  gain_bias = (initial_reward_normalization(cfg, policy, [pm, *members], inputs) if cfg.reward_norm
               else (1.0, 0.0))
  state = init_train_state(params, optimizer, hparams_from_config(cfg, *gain_bias))
  state = jax.device_put(state, shd.state_shardings(mesh, state))
  make = (ppo_packed.make_packed_iteration if cfg.packing and jax.process_count() == 1
          else make_iteration)
  iterate = make(policy.graphdef, value_gd, pm.graphdef, tuple(t.graphdef for t in tests),
                 optimizer, cfg, tuple(m.graphdef for m in members))
  frozen = {"ref": policy.params, "pm": pm.params, "tests": tuple(t.params for t in tests),
            **({"members": tuple(m.params for m in members)} if members else {})}
  test_names = [run_name(d) for d in cfg.test_pms]
  key = jax.random.key(cfg.seed)

  def finish(state):
    return lifecycle.Outputs(summary=summarize(run_dir),
                             model=(policy.cfg, distributed.fetch(state["params"]["policy"])))

  return lifecycle.Task(
      state=state, step=lambda s, prompts, k: iterate(s, frozen, prompts, k),
      batches=LMIterator(inputs.prompt_tokens, cfg.batch_size, seed=cfg.seed, num_epochs=None),
      num_steps=cfg.num_iterations, key=key, finish=finish, loss_key="ppo/loss",
      log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
      examples_per_step=cfg.batch_size, to_device=lambda b: jnp.asarray(b.tokens),
      count_tokens=None, host_record=host_record(cfg, test_names, inputs.gold_fn, inputs.task_fn),
      evaluate=snapshot_fn(cfg, policy, pm, tests, test_names, inputs, key, members),
      eval_every=cfg.snapshot_every,
      json_files={"pms.json": describe_models(cfg, policy, pm, tests, members)},
      decode=inputs.decode, host_state=getattr(iterate, "layouts", None))
