"""PPO against a preference model (Bai et al. 2022 section 4; Ziegler et al. 2019).

One iteration, one jitted function on padded rows (`make_iteration`; `ppo_packed` runs the
same pieces, `sample_rollout` then `learn`, with the passes of steps 2 and 4 on packed rows):
  1. rollout   y ~ pi(. | x) for a batch of prompts, with the KV cache, never emitting a banned
               token (`banned_token_ids`: by default the dialogue's turn markers; pi, pi_old and
               pi0 below are all the banned, renormalised distributions);
  2. score     log pi_old, log pi0 (the frozen initial policy), V, and the train-PM score
               r_PM(x, y) read at the end-of-context token; test PMs score the same samples
               but never enter the loss;
  3. rewards   r_t = -lambda_KL (log pi - log pi0)_t  +  [t = last] (r_ens - no_eos_penalty [no EOS]),
               r_ens = g r_PM + c for one train PM; g = 1, c = 0 unless reward_norm (then the
               initial policy's g r_PM + c is N(0, 1)); for an ensemble of K train PMs
               (`reward_pm` + `reward_pms`, Coste et al. 2023) each member is normalised on its
               own, then combined: r_ens = mean_k (g_k r_k + c_k)  or  min_k (g_k r_k + c_k)
               (`ensemble`); advantages by GAE(gamma, lambda), whitened; value targets R = A + V;
  4. update    K epochs of minibatch steps on L = L_clip(pi) + vf_coef * L_clip(V), the
               minibatches a fresh permutation per epoch, under lax.scan;
  5. KL control (optional) beta <- beta (1 + clip(KL / KL_target - 1, +-0.2) B / horizon).

Paper defaults: lambda_KL = 0.001, clip 0.2, gamma = 1, no entropy bonus, K = 1..4. The value
function is a separate network, initialised from the train PM with its score head as the value
head (`value_init="pm"`) or from the policy with a zero value head (`value_init="zero"`).

The traced hyperparameters are `PPOHparams`, derived from the config by `hparams_from_config`
and stored in the train state, so sweeping them (or the KL controller) never recompiles.

Usage from another project:

    iteration = ppo.make_iteration(policy_gd, value_gd, pm_gd, (), optimizer, cfg)
    state = optim.init_train_state({"policy": p, "value": v}, optimizer, ppo.hparams_from_config(cfg))
    state, out = iteration(state, {"ref": p0, "pm": pm_params, "tests": ()}, prompts, key)
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hh_jax.config import ConfigError, MeshConfig, OptimConfig, config_field, validate_fields
from hh_jax.train import rl_core
from hh_jax.train.optim import apply_gradients, jit_train_step
from hh_jax.train.rollout import generate, pm_score, response_logprobs


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """A PPO run. Paths are finished run directories (`hh_jax.train.lifecycle`). Every value is
  checked when the config is built (`hh_jax.config.validate_fields`)."""

  kind: str = config_field("ppo", choices=("ppo",))
  policy_init: str = ""                 # base LM run: the initial policy pi0 (frozen copy = reference)
  reward_pm: str = ""                   # the "train" PM optimised against
  reward_pms: tuple[str, ...] = ()      # more train PMs: the reward is an ensemble (`reward_members`)
  ensemble: str = config_field("mean", choices=("mean", "min"))   # how the K members' rewards combine
  test_pms: tuple[str, ...] = ()        # "test" PMs: score the samples, never optimised
  value_init: str = config_field("pm", choices=("pm", "zero"))
  seed: int = config_field(0, ge=0)
  num_iterations: int = config_field(100, ge=1)
  batch_size: int = config_field(64, ge=1)           # rollouts per iteration
  minibatch_size: int = config_field(16, ge=1)
  ppo_epochs: int = config_field(2, ge=1)            # K passes over each batch
  max_new_tokens: int = config_field(16, ge=1)
  temperature: float = config_field(1.0, ge=0.0)
  kl_coef: float = config_field(0.001, ge=0.0)       # lambda_KL
  adaptive_kl: bool = False
  target_kl: float = config_field(6.0, gt=0.0)
  kl_horizon: float = config_field(10000.0, gt=0.0)
  clip_eps: float = config_field(0.2, gt=0.0)
  clip_eps_value: float = config_field(0.2, gt=0.0)
  vf_coef: float = config_field(0.1, ge=0.0)
  gamma: float = config_field(1.0, ge=0.0, le=1.0)
  lam: float = config_field(0.95, ge=0.0, le=1.0)
  whiten_advantages: bool = True
  no_eos_penalty: float = 1.0           # subtracted from r_PM when the reply has no EOS
  # Token ids the policy never emits (`rollout.ban_tokens`, in sampling and in every log-prob):
  # None = the prompt tokenizer's dialogue turn markers (`pipeline.turn_marker_ids`), so a reply
  # is one Assistant turn and cannot write a "Human:" turn of its own for the PM to judge.
  banned_token_ids: tuple[int, ...] | None = None
  # Score and update on packed rows, each rollout's real tokens once (`hh_jax.train.ppo_packed`);
  # False: the padded rows, the whole iteration one jitted call (`make_iteration`).
  packing: bool = True
  reward_norm: bool = False             # r_PM -> g r_PM + c with the initial policy's scores N(0, 1)
  reward_norm_samples: int = config_field(512, ge=2)   # initial-policy samples that set g, c
  prompt_dataset: str = "hh_synth/prompts"   # TFDS dataset whose `context`s are the RL prompts
  prompt_split: str = "train"
  eval_split: str = "test"              # the held-out prompts (Elo snapshots); "validation" to tune
  # The held-out prompts' dataset (its eval_split); None = prompt_dataset. A separate one lets
  # snapshots judge both prompt kinds evenly (e.g. 50/50) while training sees a 90/10 mix.
  eval_prompt_dataset: str | None = None
  prompt_len: int = config_field(40, ge=1)   # prompts are left-truncated / left-padded to this
  num_prompts: int | None = config_field(None, ge=1)
  data_dir: str | None = None
  tokenizer: str = "auto"
  log_every: int = config_field(1, ge=0)
  checkpoint_every: int = config_field(25, ge=0)
  snapshot_every: int = config_field(0, ge=0)        # >0: sample the eval prompts every k iterations (for Elo)
  num_eval_prompts: int = config_field(128, ge=1)
  optim: OptimConfig = OptimConfig(learning_rate=1e-4, warmup_steps=0, b2=0.999)
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    validate_fields(self)
    if self.batch_size % self.minibatch_size:
      raise ConfigError("", "minibatch_size", self.minibatch_size,
                        f"a divisor of batch_size={self.batch_size}")

  @property
  def updates_per_iteration(self) -> int:
    return self.ppo_epochs * (self.batch_size // self.minibatch_size)

  @property
  def reward_members(self) -> tuple[str, ...]:
    """The train PMs the reward combines: reward_pm, then reward_pms in order without repeats
    or reward_pm itself (so a `refs` of a PM family that holds reward_pm can be passed as
    reward_pms); K = 1 is a single PM."""
    return tuple(dict.fromkeys((self.reward_pm, *self.reward_pms)))


class PPOHparams(NamedTuple):
  """The traced hyperparameters of a PPO iteration (floats; whiten_advantages is 0 or 1)."""

  kl_coef: float
  clip_eps: float
  clip_eps_value: float
  vf_coef: float
  gamma: float
  lam: float
  no_eos_penalty: float
  whiten_advantages: float
  reward_gain: float = 1.0              # g in the reward g r_PM + c; (K,) for a K-member ensemble
  reward_bias: float = 0.0              # c; (K,) for a K-member ensemble


def member_vector(x, k: int):
  """A per-member value for K train PMs: a float when K = 1 (the single-PM state of before),
  else a (K,) float32 array (a scalar x is broadcast to every member)."""
  arr = np.asarray(x, np.float32).reshape(-1)
  if k == 1:
    if arr.size != 1:
      raise ValueError(f"one train PM but {arr.size} reward gains/biases")
    return float(arr[0])
  if arr.size not in (1, k):
    raise ValueError(f"{k} train PMs but {arr.size} reward gains/biases")
  return np.broadcast_to(arr, (k,)).copy()


def hparams_from_config(cfg: PPOConfig, reward_gain=1.0, reward_bias=0.0) -> PPOHparams:
  """Each PPOHparams field from the config field of the same name; the reward's gain and bias
  are measured, not configured (`reward_normalization`): floats for one train PM, (K,) per
  member of an ensemble (`member_vector`)."""
  k = len(cfg.reward_members)
  return PPOHparams(**{f: float(getattr(cfg, f)) for f in PPOHparams._fields
                       if f not in ("reward_gain", "reward_bias")},
                    reward_gain=member_vector(reward_gain, k), reward_bias=member_vector(reward_bias, k))


def reward_normalization(scores) -> tuple[float, float]:
  """(g, c) with g s + c of mean 0 and standard deviation 1 over the initial policy's PM
  scores s (Ziegler et al. 2019; the public reproductions): g = 1 / std(s), c = -mean(s) / std(s)."""
  mean, std = float(jnp.mean(scores)), float(jnp.std(scores))
  return 1.0 / max(std, 1e-6), -mean / max(std, 1e-6)


def ensemble_scores(pm_gds, pm_params, prompts, response, mask, packed: dict | None = None):
  """r_k(x, y) of every member k of the reward ensemble (`pm_score`; packed: its packed rows)
  -> (K, B)."""
  return jnp.stack([pm_score(g, p, prompts, response, mask, packed=packed)
                    for g, p in zip(pm_gds, pm_params)])


def combine_scores(scores_kb, gain, bias, ensemble: str = "mean"):
  """r_ens = mean_k (g_k r_k + c_k) ("mean") or min_k (g_k r_k + c_k) ("min", the worst case;
  Coste et al. 2023) -> (B,). scores_kb (K, B); gain, bias scalars or (K,). K = 1 is g r + c
  exactly (no reduction)."""
  normalized = jnp.reshape(gain, (-1, 1)) * scores_kb + jnp.reshape(bias, (-1, 1))   # (K, B)
  if scores_kb.shape[0] == 1:
    return normalized[0]
  if ensemble == "mean":
    return normalized.mean(axis=0)
  if ensemble == "min":
    return normalized.min(axis=0)
  raise ValueError(f"ensemble must be 'mean' or 'min', got {ensemble!r}")


def value_params(value_init: str, policy_params: dict, pm_params: dict) -> dict:
  """The value network's initial params: the PM with its score head as the value head, or the
  policy with a zero value head."""
  if value_init == "pm":            # a copy: the state is donated, the PM's score head is not
    return {**jax.tree.map(jnp.copy, pm_params), "value_head": jax.tree.map(jnp.copy, pm_params["score_head"])}
  return {**policy_params, "value_head": jax.tree.map(jnp.zeros_like, policy_params["value_head"])}


# ----------------------------------------------------------------------------- pure pieces


def banned_ids(cfg: PPOConfig) -> tuple[int, ...]:
  """The token ids the policy never emits: cfg.banned_token_ids, () while unresolved (None; a
  run resolves None to the tokenizer's turn markers before building its step, ppo_run)."""
  return tuple(int(i) for i in (cfg.banned_token_ids or ()))


def experience(policy_gd, value_gd, pm_gd, state, ref_params, pm_params, prompts, rollout,
               temperature, member_gds=(), member_params=(), ensemble: str = "mean",
               banned_ids: tuple[int, ...] = (), packed: dict | None = None):
  """Rewards, GAE advantages and returns of one batch of rollouts -> (batch, metrics, per_sample).

  The reward ensemble is (pm, *members) (`combine_scores`); "score_train" is the raw score of
  its first member (the run's `reward_pm`), and with K > 1 members per_sample also holds
  "score_members" (K, B) and the metrics "ppo/score_ensemble" (the mean of r_ens).
  packed: None (padded rows) or the iteration's packed rows (`hh_jax.train.ppo_packed`):
  "policy" for the policy, reference and value passes, "pm" for the PM scores."""
  hp = state["hparams"]
  mask = rollout.mask
  packed = packed or {}
  on_rows = packed.get("policy")
  logp_old, _, logits = response_logprobs(policy_gd, state["params"]["policy"], prompts,
                                          rollout.response, mask, temperature, banned_ids,
                                          packed=on_rows)
  logp_ref, _, _ = response_logprobs(policy_gd, ref_params, prompts, rollout.response, mask,
                                     temperature, banned_ids, packed=on_rows)
  _, values, _ = response_logprobs(value_gd, state["params"]["value"], prompts, rollout.response,
                                   mask, packed=on_rows)
  scores = ensemble_scores((pm_gd, *member_gds), (pm_params, *member_params), prompts,
                           rollout.response, mask, packed.get("pm"))           # (K, B)
  score = scores[0]                                                                 # (B,)
  combined = combine_scores(scores, hp.reward_gain, hp.reward_bias, ensemble)       # (B,)
  reward_score = combined - hp.no_eos_penalty * (1.0 - rollout.eos.astype(jnp.float32))
  rewards, kl_bt = rl_core.kl_penalized_rewards(logp_old, logp_ref, reward_score, mask, hp.kl_coef)
  advantages, returns = rl_core.gae(rewards, values, mask, hp.gamma, hp.lam)
  advantages = jnp.where(hp.whiten_advantages > 0, rl_core.whiten(advantages, mask), advantages)
  seq_kl = kl_bt.sum(axis=1)                                                        # (B,)
  metrics = {
      "ppo/kl": seq_kl.mean(), "ppo/sqrt_kl": jnp.sqrt(jnp.maximum(seq_kl.mean(), 0.0)),
      "ppo/score_train": score.mean(),
      "ppo/reward_total": (reward_score - hp.kl_coef * seq_kl).mean(),
      "ppo/entropy": rl_core.entropy_from_logits(logits, mask),
      "ppo/eos_rate": rollout.eos.mean(), "ppo/response_len": mask.sum(axis=1).mean(),
      "ppo/value_mean": rl_core.masked_mean(values, mask),
      "ppo/return_mean": rl_core.masked_mean(returns, mask), "ppo/kl_coef": hp.kl_coef,
      "ppo/reward_gain": hp.reward_gain, "ppo/reward_bias": hp.reward_bias,
  }
  batch = {"prompts": prompts, "response": rollout.response, "mask": mask,
           "old_logprobs": logp_old, "old_values": values, "advantages": advantages,
           "returns": returns}
  per_sample = {"kl": seq_kl, "score_train": score}
  if scores.shape[0] > 1:
    metrics["ppo/score_ensemble"] = combined.mean()
    per_sample["score_members"] = scores
  return batch, metrics, per_sample


def ppo_loss(policy_gd, value_gd, params, mb, hparams: PPOHparams, temperature,
             banned_ids: tuple[int, ...] = (), packed: dict | None = None):
  """L = L_clip(pi) + vf_coef * L_clip(V) on one minibatch (module docstring); packed: the
  minibatch's packed rows (None: padded)."""
  logp, _, _ = response_logprobs(policy_gd, params["policy"], mb["prompts"], mb["response"],
                                 mb["mask"], temperature, banned_ids, packed=packed)
  _, values, _ = response_logprobs(value_gd, params["value"], mb["prompts"], mb["response"],
                                   mb["mask"], packed=packed)
  pg_loss, pg_metrics = rl_core.ppo_policy_loss(logp, mb["old_logprobs"], mb["advantages"],
                                                mb["mask"], hparams.clip_eps)
  vf_loss, vf_metrics = rl_core.ppo_value_loss(values, mb["old_values"], mb["returns"], mb["mask"],
                                               hparams.clip_eps_value)
  loss = pg_loss + hparams.vf_coef * vf_loss
  return loss, {"policy_loss": pg_loss, "value_loss": vf_loss, **pg_metrics, **vf_metrics}


def update_step(policy_gd, value_gd, optimizer, temperature, state, mb,
                banned_ids: tuple[int, ...] = (), packed: dict | None = None):
  """One PPO gradient step on a minibatch -> (state, metrics)."""
  (loss, metrics), grads = jax.value_and_grad(
      lambda p: ppo_loss(policy_gd, value_gd, p, mb, state["hparams"], temperature, banned_ids,
                         packed),
      has_aux=True)(state["params"])
  metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
  return apply_gradients(state, grads, optimizer), {f"ppo/{k}": v for k, v in metrics.items()}


def minibatch_orders(key, cfg: PPOConfig):
  """The rollouts of each minibatch: a fresh permutation of the batch per epoch, cut into
  minibatches -> (K epochs, B / minibatch, minibatch) int32."""
  n_mb = cfg.batch_size // cfg.minibatch_size
  return jnp.stack([jax.random.permutation(k, cfg.batch_size).reshape(n_mb, cfg.minibatch_size)
                    for k in jax.random.split(key, cfg.ppo_epochs)])


def update_epochs(policy_gd, value_gd, optimizer, cfg: PPOConfig, state, batch, key,
                  packed_minibatches: dict | None = None):
  """K epochs over the batch in the minibatches of `minibatch_orders(key)`, under lax.scan.
  packed_minibatches: each minibatch's packed rows, every leaf (K, B / minibatch, ...), or None
  (padded). Returns (state, metrics stacked (K, B / minibatch))."""

  def minibatch(state, xs):
    idx, packed = xs                                                     # idx (minibatch,)
    return update_step(policy_gd, value_gd, optimizer, cfg.temperature, state,
                       jax.tree.map(lambda x: x[idx], batch), banned_ids(cfg), packed)

  def epoch(state, xs):
    return jax.lax.scan(minibatch, state, xs)

  return jax.lax.scan(epoch, state, (minibatch_orders(key, cfg), packed_minibatches))


def iteration_keys(key, step):
  """(rollout key, update key) of the iteration at optimizer step `step`."""
  return tuple(jax.random.split(jax.random.fold_in(key, step)))


def sample_rollout(policy_gd, cfg: PPOConfig, policy_params, prompts, key):
  """Step 1: replies to the prompts (B, P) from the current policy -> `Rollout`."""
  return generate(policy_gd, policy_params, prompts, key, max_new_tokens=cfg.max_new_tokens,
                  temperature=cfg.temperature, banned_ids=banned_ids(cfg))


def learn(policy_gd, value_gd, pm_gd, test_gds, optimizer, cfg: PPOConfig, state, frozen,
          prompts, roll, k_update, member_gds=(), packed: dict | None = None):
  """Steps 2-5 of an iteration on the rollout `roll` -> (state, out) (`iteration`).
  packed: None, or the rollout's packed rows (`hh_jax.train.ppo_packed.plan_iteration`:
  "policy" and "pm" for the scoring passes, "minibatches" for the update)."""
  packed = packed or {}
  batch, metrics, samples = experience(policy_gd, value_gd, pm_gd, state, frozen["ref"],
                                       frozen["pm"], prompts, roll, cfg.temperature,
                                       tuple(member_gds), tuple(frozen.get("members", ())),
                                       cfg.ensemble, banned_ids(cfg), packed)
  samples["score_test"] = jnp.stack([pm_score(g, p, prompts, roll.response, roll.mask,
                                              packed=packed.get("pm"))
                                     for g, p in zip(test_gds, frozen["tests"])]
                                    ) if test_gds else jnp.zeros((0, cfg.batch_size))
  state, updates = update_epochs(policy_gd, value_gd, optimizer, cfg, state, batch, k_update,
                                 packed.get("minibatches"))
  metrics.update({k: v.mean() for k, v in updates.items()})
  metrics["ppo/ratio_mean_first_minibatch"] = updates["ppo/ratio_mean"][0, 0]
  if cfg.adaptive_kl:
    hp = state["hparams"]
    new_coef = rl_core.adaptive_kl_update(hp.kl_coef, metrics["ppo/kl"], cfg.target_kl,
                                          cfg.kl_horizon, cfg.batch_size)
    state = {**state, "hparams": hp._replace(kl_coef=new_coef.astype(jnp.float32))}
  out = {"metrics": metrics, "samples": samples, "prompts": prompts, "response": roll.response,
         "mask": roll.mask}
  return state, out


def iteration(policy_gd, value_gd, pm_gd, test_gds, optimizer, cfg: PPOConfig, state, frozen,
              prompts, key, member_gds=()):
  """One PPO iteration on padded rows (module docstring) -> (state, out).

  frozen: {"ref": pi0 params, "pm": train-PM params, "tests": tuple of test-PM params, and
  optionally "members": the params of the ensemble's further train PMs (graphdefs member_gds)}.
  out: "metrics" (scalars, but for K > 1 the (K,) reward gain and bias), "samples" (per-rollout
  (B,) arrays: kl, score_train, score_test (T, B), score_members (K, B) when K > 1), and the
  rollout itself ("prompts", "response", "mask") for host-side evaluation.
  """
  k_roll, k_update = iteration_keys(key, state["step"])
  roll = sample_rollout(policy_gd, cfg, state["params"]["policy"], prompts, k_roll)
  return learn(policy_gd, value_gd, pm_gd, test_gds, optimizer, cfg, state, frozen, prompts,
               roll, k_update, member_gds)


def make_iteration(policy_gd, value_gd, pm_gd, test_gds: tuple, optimizer, cfg: PPOConfig,
                   member_gds: tuple = ()):
  """`iteration` with the graphdefs, optimizer and config bound, jitted like every train step
  (state donated): `iteration(state, frozen, prompts (B, P), key) -> (state, out)`.
  member_gds: the graphdefs of the ensemble's train PMs after the first (`frozen["members"]`)."""
  if len(member_gds) != len(cfg.reward_members) - 1:
    raise ValueError(f"{len(cfg.reward_members)} reward members but {len(member_gds)} member "
                     "graphdefs after the first")

  def bound(state, frozen, prompts, key):
    return iteration(policy_gd, value_gd, pm_gd, tuple(test_gds), optimizer, cfg, state, frozen,
                     prompts, key, tuple(member_gds))

  return jit_train_step(bound)
