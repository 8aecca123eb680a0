"""PPO against a preference model (Bai et al. 2022 section 4; Ziegler et al. 2019).

One iteration:
  1. rollout   y ~ pi(. | x) for a batch of prompts, under jit with the KV cache;
  2. score     log pi_old, log pi0 (the frozen initial policy), V, and the train-PM score
               r_PM(x, y) read at the end-of-context token; test PMs and the gold reward
               score the same samples but never enter the loss;
  3. rewards   r_t = -lambda_KL (log pi - log pi0)_t  +  [t = last] (r_PM - no_eos_penalty [no EOS])
               advantages by GAE(gamma, lambda), whitened; value targets R = A + V;
  4. update    K epochs of minibatch steps on  L = L_clip(pi) + vf_coef * L_clip(V).

Paper defaults: lambda_KL = 0.001, clip 0.2, gamma = 1, no entropy bonus, K = 1..4.
The value function is a separate network, initialised from the train PM with its score
head as the value head (`value_init="pm"`), or from the policy with a zero value head
(`value_init="zero"`). lambda_KL, clip, vf_coef, gamma and lambda are traced values in
`state["hparams"]`, so sweeping them (or the adaptive KL controller) never recompiles.

Every iteration appends one line of namespaced metrics to metrics.jsonl and one line of
per-sample scores to samples.jsonl (so fits can be recomputed); checkpoints hold the
state, the prompt iterator position and the key, and a killed run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from hh_jax import models
from hh_jax import sharding as shd
from hh_jax.checkpoint import Checkpointer, key_from_json, key_to_json
from hh_jax.config import MeshConfig, OptimConfig, to_dict
from hh_jax.data.batching import LMIterator
from hh_jax.metrics import MetricWriter, NonFiniteLossError, to_python
from hh_jax.train import rl_core
from hh_jax.train.loop import load_params, run_config_field, save_params, write_or_check_config
from hh_jax.train.optim import apply_gradients, init_train_state, jit_train_step, make_optimizer
from hh_jax.train.rollout import generate, pm_input, response_logprobs


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """A PPO run. Paths are finished run directories (see `hh_jax.train.loop`)."""

  policy_init: str = ""                 # base LM run: the initial policy pi0 (frozen copy = reference)
  reward_pm: str = ""                   # the "train" PM optimised against
  test_pms: tuple[str, ...] = ()        # "test" PMs: score the samples, never optimised
  value_init: str = "pm"                # "pm" | "zero"
  seed: int = 0
  num_iterations: int = 100
  batch_size: int = 64                  # rollouts per iteration
  minibatch_size: int = 16
  ppo_epochs: int = 2                   # K passes over each batch
  max_new_tokens: int = 16
  temperature: float = 1.0
  kl_coef: float = 0.001                # lambda_KL
  adaptive_kl: bool = False
  target_kl: float = 6.0
  kl_horizon: float = 10000.0
  clip_eps: float = 0.2
  clip_eps_value: float = 0.2
  vf_coef: float = 0.1
  gamma: float = 1.0
  lam: float = 0.95
  whiten_advantages: bool = True
  no_eos_penalty: float = 1.0           # subtracted from r_PM when the reply has no EOS
  prompt_dataset: str = "hh_synth/prompts"   # TFDS dataset whose `context`s are the RL prompts
  prompt_split: str = "train"
  prompt_len: int = 40                  # prompts are left-truncated / left-padded to this
  num_prompts: int | None = None
  data_dir: str | None = None
  tokenizer: str = "auto"
  log_every: int = 1
  checkpoint_every: int = 25
  snapshot_every: int = 0               # >0: sample the eval prompts every k iterations (for Elo)
  num_eval_prompts: int = 128
  optim: OptimConfig = OptimConfig(learning_rate=1e-4, warmup_steps=0, b2=0.999)
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    if self.value_init not in ("pm", "zero"):
      raise ValueError(f"PPOConfig.value_init must be 'pm' or 'zero', got {self.value_init!r}")
    if self.batch_size % self.minibatch_size:
      raise ValueError(f"PPOConfig.batch_size={self.batch_size} is not a multiple of "
                       f"minibatch_size={self.minibatch_size}")


@dataclasses.dataclass
class PPOData:
  """prompt_tokens: (N, P) int32 left-padded contexts; gold_fn(prompt_tokens, response) ->
  {"helpful", "harmless", "hh"} (B,) arrays, or None when there is no gold reward."""

  prompt_tokens: np.ndarray
  gold_fn: Callable[[np.ndarray, np.ndarray], dict] | None = None
  eval_prompt_tokens: np.ndarray | None = None


@dataclasses.dataclass
class Model:
  graphdef: object
  params: dict
  cfg: models.ModelConfig


def load_model(run_dir: str) -> Model:
  cfg, graphdef, params = load_params(run_dir)
  return Model(graphdef, params, cfg)


def init_value_params(value_init: str, policy: Model, pm: Model) -> Model:
  """The value network: the PM with its score head as value head, or the policy with a zero head."""
  if value_init == "pm":
    return Model(pm.graphdef, {**pm.params, "value_head": pm.params["score_head"]}, pm.cfg)
  zero_head = jax.tree.map(jnp.zeros_like, policy.params["value_head"])
  return Model(policy.graphdef, {**policy.params, "value_head": zero_head}, policy.cfg)


# ----------------------------------------------------------------------------- jitted pieces


def make_rollout_fn(policy_graphdef, cfg: PPOConfig):
  def rollout(policy_params, prompts, key, temperature):
    return generate(policy_graphdef, policy_params, prompts, key,
                    max_new_tokens=cfg.max_new_tokens, temperature=temperature)
  return jax.jit(rollout)


def make_pm_score_fn(pm_graphdef):
  """score(pm_params, prompts (B,P), response (B,N), mask (B,N)) -> r_PM (B,)."""
  def score(pm_params, prompts, response, mask):
    tokens, eoc = pm_input(prompts, response, mask)
    return models.apply(pm_graphdef, pm_params, tokens, score_index=eoc).scores
  return jax.jit(score)


def make_experience_fn(policy_graphdef, value_graphdef, pm_graphdef):
  """Everything the update needs from one batch of rollouts, in one jitted call."""

  def experience(state, ref_params, pm_params, prompts, rollout, temperature):
    hp = state["hparams"]
    mask = rollout.mask
    logp_old, _, logits = response_logprobs(policy_graphdef, state["params"]["policy"], prompts,
                                            rollout.response, mask, temperature)
    logp_ref, _, _ = response_logprobs(policy_graphdef, ref_params, prompts, rollout.response, mask,
                                       temperature)
    _, values, _ = response_logprobs(value_graphdef, state["params"]["value"], prompts,
                                     rollout.response, mask)
    tokens, eoc = pm_input(prompts, rollout.response, mask)
    score = models.apply(pm_graphdef, pm_params, tokens, score_index=eoc).scores      # (B,)
    reward_score = score - hp["no_eos_penalty"] * (1.0 - rollout.eos.astype(jnp.float32))
    rewards, kl_bt = rl_core.kl_penalized_rewards(logp_old, logp_ref, reward_score, mask,
                                                  hp["kl_coef"])
    advantages, returns = rl_core.gae(rewards, values, mask, hp["gamma"], hp["lam"])
    adv_white = rl_core.whiten(advantages, mask)
    advantages = jnp.where(hp["whiten_advantages"] > 0, adv_white, advantages)
    seq_kl = kl_bt.sum(axis=1)                                                        # (B,)
    metrics = {
        "ppo/kl": seq_kl.mean(), "ppo/sqrt_kl": jnp.sqrt(jnp.maximum(seq_kl.mean(), 0.0)),
        "ppo/score_train": score.mean(),
        "ppo/reward_total": (reward_score - hp["kl_coef"] * seq_kl).mean(),
        "ppo/entropy": rl_core.entropy_from_logits(logits, mask),
        "ppo/eos_rate": rollout.eos.mean(), "ppo/response_len": mask.sum(axis=1).mean(),
        "ppo/value_mean": rl_core.masked_mean(values, mask),
        "ppo/return_mean": rl_core.masked_mean(returns, mask),
        "ppo/kl_coef": hp["kl_coef"],
    }
    batch = {"prompts": prompts, "response": rollout.response, "mask": mask,
             "old_logprobs": logp_old, "old_values": values, "advantages": advantages,
             "returns": returns}
    per_sample = {"kl": seq_kl, "score_train": score}
    return batch, metrics, per_sample

  return jax.jit(experience)


def ppo_loss(policy_graphdef, value_graphdef, params, mb, hparams, temperature):
  """L = L_clip(pi) + vf_coef * L_clip(V) on one minibatch (module docstring)."""
  logp, _, logits = response_logprobs(policy_graphdef, params["policy"], mb["prompts"],
                                      mb["response"], mb["mask"], temperature)
  _, values, _ = response_logprobs(value_graphdef, params["value"], mb["prompts"], mb["response"],
                                   mb["mask"])
  pg_loss, pg_metrics = rl_core.ppo_policy_loss(logp, mb["old_logprobs"], mb["advantages"],
                                                mb["mask"], hparams["clip_eps"])
  vf_loss, vf_metrics = rl_core.ppo_value_loss(values, mb["old_values"], mb["returns"], mb["mask"],
                                               hparams["clip_eps_value"])
  loss = pg_loss + hparams["vf_coef"] * vf_loss
  metrics = {"policy_loss": pg_loss, "value_loss": vf_loss, **pg_metrics, **vf_metrics}
  return loss, metrics


def make_update_step(policy_graphdef, value_graphdef, optimizer, temperature: float):
  """A jitted `step(state, minibatch, key) -> (state, metrics)` (one PPO gradient step)."""

  def step(state, mb, key):
    del key  # no dropout in RLHF (STYLE.md); kept for the step(state, batch, key) contract
    (loss, metrics), grads = jax.value_and_grad(
        lambda p: ppo_loss(policy_graphdef, value_graphdef, p, mb, state["hparams"], temperature),
        has_aux=True)(state["params"])
    new_state = apply_gradients(state, grads, optimizer)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
    return new_state, {f"ppo/{k}": v for k, v in metrics.items()}

  return jit_train_step(step)


# ----------------------------------------------------------------------------- the run


def _hparams(cfg: PPOConfig) -> dict:
  return {"kl_coef": cfg.kl_coef, "clip_eps": cfg.clip_eps, "clip_eps_value": cfg.clip_eps_value,
          "vf_coef": cfg.vf_coef, "gamma": cfg.gamma, "lam": cfg.lam,
          "no_eos_penalty": cfg.no_eos_penalty, "whiten_advantages": float(cfg.whiten_advantages)}


def train_ppo(cfg: PPOConfig, run_dir: str, data: PPOData, *, progress: bool = True,
              stop_after_iterations: int | None = None) -> dict:
  """Run (or resume, or skip if finished) a PPO run; return its summary."""
  summary_path = os.path.join(run_dir, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      return json.load(f)
  os.makedirs(run_dir, exist_ok=True)
  write_or_check_config(run_dir, {**to_dict(cfg), "kind": "ppo"})
  t_start = time.time()

  policy = load_model(cfg.policy_init)
  pm = load_model(cfg.reward_pm)
  tests = [load_model(d) for d in cfg.test_pms]
  value = init_value_params(cfg.value_init, policy, pm)
  if data.prompt_tokens.shape[1] + cfg.max_new_tokens > policy.cfg.max_len:
    raise ValueError(f"prompts ({data.prompt_tokens.shape[1]} tokens) + max_new_tokens "
                     f"({cfg.max_new_tokens}) exceed the policy's max_len {policy.cfg.max_len}")

  _write_pms_json(run_dir, cfg, policy, pm, tests)
  steps_per_iter = cfg.ppo_epochs * cfg.batch_size // cfg.minibatch_size
  optimizer = make_optimizer(cfg.optim, cfg.num_iterations * steps_per_iter)
  params = {"policy": jax.tree.map(jnp.array, policy.params), "value": value.params}
  state = init_train_state(params, optimizer, _hparams(cfg))
  mesh = shd.make_mesh(cfg.mesh)
  state = jax.device_put(state, shd.state_shardings(mesh, state))

  rollout_fn = make_rollout_fn(policy.graphdef, cfg)
  experience_fn = make_experience_fn(policy.graphdef, value.graphdef, pm.graphdef)
  update_fn = make_update_step(policy.graphdef, value.graphdef, optimizer, cfg.temperature)
  test_score_fns = [make_pm_score_fn(t.graphdef) for t in tests]
  test_names = [_run_name(d) for d in cfg.test_pms]

  prompts = LMIterator(data.prompt_tokens, cfg.batch_size, seed=cfg.seed, num_epochs=None)
  key = jax.random.key(cfg.seed)
  ckpt, writer = Checkpointer(run_dir), MetricWriter(run_dir)
  samples_writer = MetricWriter(run_dir, "samples.jsonl")
  start = 0
  if ckpt.latest_step() is not None:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            state)
    state, meta = ckpt.restore(abstract)
    prompts.restore(meta["data"])
    key = key_from_json(meta["key"])
    start = int(meta["iteration"])
  writer.truncate_after(start)
  samples_writer.truncate_after(start)

  bar = tqdm(total=cfg.num_iterations, initial=start, disable=not progress, unit="iter",
             desc=os.path.basename(run_dir), dynamic_ncols=True, leave=False)
  temperature = jnp.float32(cfg.temperature)

  def snapshot(iteration: int):
    """Replies of the current policy to the fixed eval prompts, with every scorer's score."""
    if not cfg.snapshot_every or data.eval_prompt_tokens is None:
      return
    path = os.path.join(run_dir, "snapshots", f"iter_{iteration:05d}.npz")
    if os.path.exists(path):
      return
    prompts_e = jnp.asarray(data.eval_prompt_tokens[:cfg.num_eval_prompts])
    out = rollout_fn(state["params"]["policy"], prompts_e, jax.random.fold_in(jax.random.fold_in(key, 999_983), iteration),
                     temperature)
    scores = {"score_train": train_score_fn(pm.params, prompts_e, out.response, out.mask)}
    for name, fn, t in zip(test_names, test_score_fns, tests):
      scores[f"score_test/{name}"] = fn(t.params, prompts_e, out.response, out.mask)
    if data.gold_fn is not None:
      for k, v in data.gold_fn(np.asarray(prompts_e), np.asarray(out.response)).items():
        scores[f"gold_{k}"] = v
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, prompts=np.asarray(prompts_e), response=np.asarray(out.response),
             mask=np.asarray(out.mask), samples=iteration * cfg.batch_size,
             **{k.replace("/", "__"): np.asarray(v) for k, v in scores.items()})

  train_score_fn = make_pm_score_fn(pm.graphdef)
  for it in range(start, cfg.num_iterations):
    if cfg.snapshot_every and it % cfg.snapshot_every == 0:
      snapshot(it)
    it_key = jax.random.fold_in(key, it)
    prompt_batch = jnp.asarray(next(prompts).tokens)

    t0 = time.perf_counter()
    rollout = jax.block_until_ready(rollout_fn(state["params"]["policy"], prompt_batch,
                                               it_key, temperature))
    t1 = time.perf_counter()
    batch, metrics, per_sample = experience_fn(state, policy.params, pm.params, prompt_batch,
                                               rollout, temperature)
    per_sample = dict(per_sample)
    for name, fn, t in zip(test_names, test_score_fns, tests):
      s = fn(t.params, prompt_batch, rollout.response, rollout.mask)
      per_sample[f"score_test/{name}"] = s
    per_sample = to_python(jax.block_until_ready(per_sample))
    t2 = time.perf_counter()

    update_metrics = []
    for epoch in range(cfg.ppo_epochs):
      order = np.asarray(jax.random.permutation(jax.random.fold_in(it_key, 1000 + epoch),
                                                cfg.batch_size))
      for mb_start in range(0, cfg.batch_size, cfg.minibatch_size):
        idx = order[mb_start:mb_start + cfg.minibatch_size]
        mb = jax.tree.map(lambda x: x[idx], batch)
        state, m = update_fn(state, mb, it_key)
        update_metrics.append(m)
    update_metrics = to_python(jax.block_until_ready(update_metrics))
    t3 = time.perf_counter()

    record = to_python(metrics)
    for k in update_metrics[0]:
      record[k] = float(np.mean([m[k] for m in update_metrics]))
    record["ppo/ratio_mean_first_minibatch"] = update_metrics[0]["ppo/ratio_mean"]
    for name in test_names:
      record[f"ppo/score_test/{name}"] = float(np.mean(per_sample[f"score_test/{name}"]))
    if data.gold_fn is not None:
      gold = data.gold_fn(np.asarray(prompt_batch), np.asarray(rollout.response))
      for k, v in gold.items():
        per_sample[f"gold_{k}"] = np.asarray(v, np.float64).tolist()
        record[f"gold/{k}"] = float(np.mean(v))
    n_tokens = float(np.asarray(rollout.mask).sum())
    record.update({"ppo/samples": (it + 1) * cfg.batch_size, "ppo/iteration": it + 1,
                   "time/rollout_s": t1 - t0, "time/score_s": t2 - t1, "time/update_s": t3 - t2,
                   "perf/rollout_tokens_per_s": n_tokens / max(t1 - t0, 1e-9)})
    if not np.isfinite(record["ppo/loss"]):
      raise NonFiniteLossError(f"ppo/loss = {record['ppo/loss']} at iteration {it + 1}: the last "
                               f"good checkpoint is kept; lower optim.learning_rate and rerun")
    if cfg.log_every and ((it + 1) % cfg.log_every == 0 or it + 1 == cfg.num_iterations):
      writer.write(it + 1, record)
    samples_writer.write(it + 1, per_sample)

    if cfg.adaptive_kl:
      new_coef = rl_core.adaptive_kl_update(state["hparams"]["kl_coef"], record["ppo/kl"],
                                            cfg.target_kl, cfg.kl_horizon, cfg.batch_size)
      state = {**state, "hparams": {**state["hparams"], "kl_coef": jnp.float32(new_coef)}}
    bar.update(1)
    bar.set_postfix(kl=f"{record['ppo/kl']:.2f}", score=f"{record['ppo/score_train']:.2f}")
    done = it + 1
    if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.num_iterations \
        or (stop_after_iterations is not None and done >= stop_after_iterations):
      ckpt.save(done, state, {"data": prompts.state(), "key": key_to_json(key), "iteration": done})
    if stop_after_iterations is not None and done >= stop_after_iterations and \
        done < cfg.num_iterations:
      bar.close()
      ckpt.close()
      return {"stopped_at": done}
  bar.close()
  ckpt.close()
  snapshot(cfg.num_iterations)

  save_params(run_dir, policy.cfg, jax.device_get(state["params"]["policy"]))
  summary = summarize_ppo(run_dir)
  summary["time/seconds"] = time.time() - t_start
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def summarize_ppo(run_dir: str) -> dict:
  """Final metrics and the reward-vs-sqrt(KL) fit over the first half of training."""
  from hh_jax.metrics import read_jsonl
  records = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  last = records[-1]
  out = {k: v for k, v in last.items() if k.startswith(("ppo/kl", "ppo/sqrt_kl", "ppo/score",
                                                        "gold/", "ppo/eos_rate"))}
  first = records[0]
  for k in list(out):
    if k in first and isinstance(first[k], (int, float)):
      out[f"{k}/initial"] = first[k]
  half = records[: max(2, len(records) // 2)]
  x = np.array([r["ppo/sqrt_kl"] for r in half])
  y = np.array([r["ppo/score_train"] for r in half])
  if len(x) >= 3 and np.ptp(x) > 0:
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    r2 = 1 - resid.var() / max(y.var(), 1e-12)
    out.update({"fit/first_half_slope": float(slope), "fit/first_half_r2": float(r2)})
  out["ppo/iterations"] = last["step"]
  return out


def _run_name(path: str) -> str:
  return os.path.basename(os.path.normpath(path))


def _write_pms_json(run_dir: str, cfg: PPOConfig, policy: Model, pm: Model, tests: list[Model]):
  """Which models this run used, with their non-embedding sizes (for analysis)."""
  def describe(path: str, model: Model) -> dict:
    return {"name": _run_name(path), "run": os.path.abspath(path),
            "params": models.count_params(model.cfg),
            "model_size": run_config_field(path, "model_size")}
  out = {"policy": describe(cfg.policy_init, policy), "train": describe(cfg.reward_pm, pm),
         "test": [describe(d, t) for d, t in zip(cfg.test_pms, tests)]}
  with open(os.path.join(run_dir, "pms.json"), "w") as f:
    json.dump(out, f, indent=2)
