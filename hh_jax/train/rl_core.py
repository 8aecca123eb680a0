"""Pure RL and preference maths: KL-penalised rewards, GAE, whitening, PPO losses, Bradley-Terry.

Every function is a small pure `jax.numpy` function that can be jitted; every
hyperparameter (kl_coef, gamma, lam, clip_eps, ...) is an ordinary (traced) argument,
so a sweep over it does not recompile.

Conventions for response tensors: shape (B, T) over generated tokens; `mask` (B, T)
is 1 on real response tokens (up to and including EOS) and 0 on the padding after.
Masks are prefix masks (ones then zeros); bool or float masks are both accepted.
All functions return zeros on padding positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Added to variances before the square root in `whiten`, as in TRL / Ziegler et al.
WHITEN_EPS = 1e-8


def _as_float(mask: jax.Array, like: jax.Array) -> jax.Array:
  return jnp.asarray(mask).astype(jnp.result_type(like, jnp.float32))


# ----------------------------------------------------------------------------- masked statistics


def masked_mean(x: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
  """mean_m(x) = sum(mask * x) / sum(mask); 0 where the mask is empty (no NaN)."""
  mask = _as_float(mask, x)
  total = jnp.sum(x * mask, axis=axis)
  count = jnp.sum(mask * jnp.ones_like(x), axis=axis)
  return jnp.where(count > 0, total / jnp.maximum(count, 1e-12), 0.0)


def masked_var(x: jax.Array, mask: jax.Array, unbiased: bool = True) -> jax.Array:
  """var_m(x) = sum(mask * (x - mean_m)^2) / (n - 1)  (n = sum(mask)), over all masked entries.

  `unbiased=True` (the default) applies Bessel's correction n / (n - 1), as TRL's
  `masked_var` does; `unbiased=False` divides by n. `unbiased` is a Python bool (it
  changes the formula, it is not a swept hyperparameter). With n <= 1 the unbiased
  variance is returned as 0 rather than NaN/inf.
  """
  mask = _as_float(mask, x)
  centred = x - masked_mean(x, mask)
  var = masked_mean(centred**2, mask)
  if unbiased:
    n = jnp.sum(mask)
    var = jnp.where(n > 1, var * n / jnp.maximum(n - 1, 1.0), 0.0)
  return var


def whiten(x: jax.Array, mask: jax.Array, shift_mean: bool = True) -> jax.Array:
  """whiten(x) = (x - mean_m(x)) / sqrt(var_m(x) + 1e-8), statistics over the masked entries.

  The variance is the unbiased one (`masked_var(..., unbiased=True)`, as in TRL and
  the "N implementation details of RLHF" reference). With `shift_mean=False` the mean
  is added back: x' = (x - mean) / std + mean (only the scale changes; TRL uses this
  for rewards). Padding positions are returned as 0.
  """
  mask = _as_float(mask, x)
  mean = masked_mean(x, mask)
  out = (x - mean) * jax.lax.rsqrt(masked_var(x, mask) + WHITEN_EPS)
  if not shift_mean:
    out = out + mean
  return out * mask


# ----------------------------------------------------------------------------- log-probs, entropy, KL


def logprobs_from_logits(logits: jax.Array, tokens: jax.Array, temperature=1.0) -> jax.Array:
  """log pi(y_t) = log_softmax(logits_t / temperature)[y_t].

  logits (B, T, V), tokens (B, T) int -> (B, T). Dividing by the sampling temperature
  here too keeps training log-probs matched to the distribution that sampled the tokens.
  """
  logp_btv = jax.nn.log_softmax(logits / temperature, axis=-1)  # (B, T, V)
  return jnp.take_along_axis(logp_btv, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy_from_logits(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean token entropy mean_m(H_t), H_t = -sum_v p_tv log p_tv, p_t = softmax(logits_t).

  Computed from log_softmax (max-shifted), so a large common offset in the logits costs
  no precision. logits (B, T, V), mask (B, T) -> scalar. Divide logits by the
  temperature first if the entropy of the sampling distribution is wanted.
  """
  logp_btv = jax.nn.log_softmax(logits, axis=-1)
  entropy_bt = -jnp.sum(jnp.exp(logp_btv) * logp_btv, axis=-1)  # (B, T)
  return masked_mean(entropy_bt, mask)


def sequence_kl(logprobs: jax.Array, ref_logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  """KL_seq = sum_t mask_t (log pi(y_t) - log pi0(y_t)), one value per sequence: (B, T) -> (B,).

  The batch mean of this is the paper's empirical D_KL(pi || pi0) (a k1 estimate on
  the policy's own samples).
  """
  return jnp.sum((logprobs - ref_logprobs) * _as_float(mask, logprobs), axis=-1)


def kl_penalized_rewards(logprobs, ref_logprobs, scores, mask, kl_coef):
  """Per-token rewards r_t = -kl_coef * kl_t + [t = t_last] * score,  kl_t = log pi(y_t) - log pi0(y_t).

  The paper's reward r = r_PM - lambda_KL * KL(pi || pi0) (lambda_KL = 0.001), spread
  over tokens: the k1 KL estimator penalises every real token and the PM score is
  added at the last real token t_last = sum_t(mask_t) - 1 (the EOS). With gamma = 1
  the undiscounted return equals score - kl_coef * sequence_kl.

  Args:
    logprobs, ref_logprobs: (B, T) log-probs of the sampled tokens under pi and pi0.
    scores: (B,) PM scores of the full responses.
    mask: (B, T) response mask.
    kl_coef: scalar lambda_KL (traced).
  Returns:
    rewards (B, T) and kl (B, T), both 0 on padding. A response with no real token
    (sum(mask) = 0) gets no score: there is no token to carry it.
  """
  maskf = _as_float(mask, logprobs)
  kl_bt = (logprobs - ref_logprobs) * maskf  # (B, T)
  length_b = jnp.sum(maskf, axis=-1).astype(jnp.int32)  # (B,)
  last_bt = jax.nn.one_hot(length_b - 1, logprobs.shape[-1], dtype=maskf.dtype)  # (B, T); all 0 if length 0
  rewards_bt = -kl_coef * kl_bt + last_bt * scores[:, None]
  return rewards_bt, kl_bt


# ----------------------------------------------------------------------------- advantages


def gae(rewards, values, mask, gamma, lam):
  """Generalised advantage estimation (Schulman et al. 2016), computed backwards with lax.scan.

    delta_t = r_t + gamma * V_{t+1} * m_{t+1} - V_t
    A_t     = m_t * (delta_t + gamma * lam * A_{t+1})
    R_t     = m_t * (A_t + V_t)          (the value target)

  The value after the last real token is 0 (the episode ends there) and everything
  beyond it is 0 (A_T = V_T = 0 past the end of the array).

  Args:
    rewards, values: (B, T); mask: (B, T); gamma, lam: scalars (traced).
  Returns:
    advantages (B, T), returns (B, T); both 0 on padding.
  """
  maskf = _as_float(mask, rewards)
  values = values * maskf  # V_{t+1} * m_{t+1}: padding values never bootstrap

  def step(carry, xs):
    next_value, next_adv = carry  # (B,), (B,)
    r_t, v_t, m_t = xs
    delta = r_t + gamma * next_value - v_t
    adv = m_t * (delta + gamma * lam * next_adv)
    return (v_t, adv), adv

  zeros = jnp.zeros(rewards.shape[:-1], rewards.dtype)
  time_major = (rewards.T, values.T, maskf.T)  # each (T, B)
  _, adv_tb = jax.lax.scan(step, (zeros, zeros), time_major, reverse=True)
  advantages = adv_tb.T  # (B, T)
  return advantages, (advantages + values) * maskf


# ----------------------------------------------------------------------------- PPO losses


def ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps):
  """Clipped PPO surrogate: L = mean_m( max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps)) ).

  rho_t = exp(log pi(y_t) - log pi_old(y_t)); the mean is over all real tokens of the
  batch (a token-level mean). Advantages are treated as constants.

  Metrics:
    clipfrac: fraction of real tokens where the clipped term is the active (larger) one.
    approxkl: 0.5 * mean_m((log pi - log pi_old)^2), the k2 estimator of KL(pi_old || pi)
      logged by OpenAI's lm-human-preferences and TRL.
    approxkl_k3: mean_m((rho - 1) - log rho), the unbiased, non-negative k3 estimator.
    ratio_mean, ratio_var: masked mean and (population) variance of rho; a ratio far
      from 1 on the first minibatch is a bug (mismatched log-probs).
  """
  maskf = _as_float(mask, logprobs)
  advantages = jax.lax.stop_gradient(advantages)
  log_ratio = logprobs - old_logprobs
  ratio = jnp.exp(log_ratio)
  loss_unclipped = -advantages * ratio
  loss_clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
  loss = masked_mean(jnp.maximum(loss_unclipped, loss_clipped), maskf)
  metrics = {
      "clipfrac": masked_mean((loss_clipped > loss_unclipped).astype(maskf.dtype), maskf),
      "approxkl": 0.5 * masked_mean(log_ratio**2, maskf),
      "approxkl_k3": masked_mean((ratio - 1.0) - log_ratio, maskf),
      "ratio_mean": masked_mean(ratio, maskf),
      "ratio_var": masked_var(ratio, maskf, unbiased=False),
  }
  return loss, jax.tree.map(jax.lax.stop_gradient, metrics)


def ppo_value_loss(values, old_values, returns, mask, clip_eps_value):
  """Clipped value loss: L_V = 0.5 * mean_m( max((V - R)^2, (V_clip - R)^2) ),

  V_clip = clip(V, V_old - eps, V_old + eps) = V_old + clip(V - V_old, -eps, eps).
  Returns are treated as constants. Metric `vf_clipfrac`: fraction of real tokens
  where the clipped term is the active one.
  """
  maskf = _as_float(mask, values)
  returns = jax.lax.stop_gradient(returns)
  values_clipped = old_values + jnp.clip(values - old_values, -clip_eps_value, clip_eps_value)
  loss_unclipped = (values - returns) ** 2
  loss_clipped = (values_clipped - returns) ** 2
  loss = 0.5 * masked_mean(jnp.maximum(loss_unclipped, loss_clipped), maskf)
  vf_clipfrac = masked_mean((loss_clipped > loss_unclipped).astype(maskf.dtype), maskf)
  return loss, {"vf_clipfrac": jax.lax.stop_gradient(vf_clipfrac)}


def adaptive_kl_update(kl_coef, current_kl, target_kl, horizon, n_steps):
  """Ziegler et al. (2019) proportional KL controller.

    e = clip(KL / KL_target - 1, -0.2, 0.2);   beta <- beta * (1 + e * n_steps / horizon)

  `n_steps` is the number of samples (episodes) since the last update, `horizon` the
  controller's time constant in the same unit. The paper itself uses a fixed
  lambda_KL = 0.001; this is for ablations.
  """
  error = jnp.clip(current_kl / target_kl - 1.0, -0.2, 0.2)
  return kl_coef * (1.0 + error * n_steps / horizon)


# ----------------------------------------------------------------------------- preference loss


def bradley_terry_loss(r_chosen, r_rejected, weight=None):
  """Bradley-Terry preference loss: L = sum_i w_i * -log sigmoid(r_c,i - r_r,i) / sum_i w_i.

  With weight=None all w_i = 1 (a plain mean). Uses jax.nn.log_sigmoid for stability.
  A batch whose weights are all 0 (pure padding) gives loss and metrics 0, not NaN.

  Metrics (the same weights):
    accuracy: weighted mean of [margin > 0] + 0.5 * [margin = 0]  (ties count half).
    margin: weighted mean of r_c - r_r.
    reward_mean, reward_std: mean and population std over the 2 * #{i: w_i > 0} scores
      of chosen and rejected together (pairs with weight 0 are padding and left out;
      to watch for reward drift).
  """
  margin = r_chosen - r_rejected  # (B,)
  if weight is None:
    weight = jnp.ones_like(margin)
  weight = jnp.asarray(weight, margin.dtype)
  wsum = jnp.sum(weight)
  safe_wsum = jnp.where(wsum > 0, wsum, 1.0)

  def wmean(x):
    return jnp.sum(weight * x) / safe_wsum

  loss = wmean(-jax.nn.log_sigmoid(margin))
  correct = jnp.where(margin > 0, 1.0, jnp.where(margin == 0, 0.5, 0.0))
  both = jnp.concatenate([r_chosen, r_rejected])  # (2B,)
  real = jnp.concatenate([weight, weight]) > 0  # (2B,)
  metrics = {
      "accuracy": wmean(correct),
      "margin": wmean(margin),
      "reward_mean": masked_mean(both, real),
      "reward_std": jnp.sqrt(masked_var(both, real, unbiased=False)),
  }
  return loss, jax.tree.map(jax.lax.stop_gradient, metrics)
