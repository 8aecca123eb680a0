"""Golden-number tests for hh_jax.train.rl_core; each expected value is derived by hand in a comment."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax.train import rl_core


def close(a, b, tol=1e-5):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- GAE


def test_gae_hand_example():
  # gamma = 0.9, lam = 0.5, so gamma * lam = 0.45.
  # Row 0: r = [0, 0, 1], V = [0.5, 0.6, 0.7], all real tokens.
  #   delta_2 = 1 + 0.9 * 0 - 0.7        = 0.3    A_2 = 0.3
  #   delta_1 = 0 + 0.9 * 0.7 - 0.6      = 0.03   A_1 = 0.03 + 0.45 * 0.3   = 0.165
  #   delta_0 = 0 + 0.9 * 0.6 - 0.5      = 0.04   A_0 = 0.04 + 0.45 * 0.165 = 0.11425
  #   returns = A + V = [0.61425, 0.765, 1.0]
  # Row 1: r = [0.2, 1.0, pad], V = [0.4, 0.8, 5.0 (garbage on padding)], mask [1, 1, 0].
  #   The value after the last real token is 0, so the garbage 5.0 must not bootstrap.
  #   delta_1 = 1.0 + 0.9 * 0 - 0.8      = 0.2    A_1 = 0.2
  #   delta_0 = 0.2 + 0.9 * 0.8 - 0.4    = 0.52   A_0 = 0.52 + 0.45 * 0.2 = 0.61
  #   returns = [1.01, 1.0, 0 (padding)]
  rewards = jnp.array([[0.0, 0.0, 1.0], [0.2, 1.0, 7.0]])
  values = jnp.array([[0.5, 0.6, 0.7], [0.4, 0.8, 5.0]])
  mask = jnp.array([[1, 1, 1], [1, 1, 0]], bool)
  adv, ret = rl_core.gae(rewards, values, mask, 0.9, 0.5)
  close(adv, [[0.11425, 0.165, 0.3], [0.61, 0.2, 0.0]])
  close(ret, [[0.61425, 0.765, 1.0], [1.01, 1.0, 0.0]])


def _gae_loop(rewards, values, mask, gamma, lam):
  """Independent plain-Python GAE: for each row, walk backwards over its real tokens only."""
  adv = np.zeros_like(rewards)
  for b in range(rewards.shape[0]):
    length = int(mask[b].sum())
    last_adv = 0.0
    for t in reversed(range(length)):
      next_v = values[b, t + 1] if t + 1 < length else 0.0
      delta = rewards[b, t] + gamma * next_v - values[b, t]
      last_adv = delta + gamma * lam * last_adv
      adv[b, t] = last_adv
  ret = np.where(mask > 0, adv + values, 0.0)
  return adv, ret


def test_gae_matches_python_loop_on_random_data():
  rng = np.random.default_rng(0)
  b, t = 5, 11
  rewards = rng.normal(size=(b, t)).astype(np.float32)
  values = rng.normal(size=(b, t)).astype(np.float32)
  lengths = np.array([11, 0, 1, 6, 10])
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  gamma, lam = 0.97, 0.8
  want_adv, want_ret = _gae_loop(rewards, values, mask, gamma, lam)
  adv, ret = jax.jit(rl_core.gae)(rewards, values, mask, gamma, lam)
  close(adv, want_adv, 1e-5)
  close(ret, want_ret, 1e-5)


def test_gae_gamma_lam_one_is_reward_to_go_minus_value():
  # With gamma = lam = 1, A_t = sum_{s >= t} r_s - V_t (telescoping sum of deltas).
  rewards = jnp.array([[1.0, 2.0, 3.0, 4.0]])
  values = jnp.array([[0.5, -1.0, 2.0, 0.0]])
  mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  adv, ret = rl_core.gae(rewards, values, mask, 1.0, 1.0)
  close(adv, [[6.0 - 0.5, 5.0 + 1.0, 3.0 - 2.0, 0.0]])
  close(ret, [[6.0, 5.0, 3.0, 0.0]])


# ----------------------------------------------------------------------------- rewards and KL


def test_kl_penalized_rewards_hand_example():
  # Row 0: logp = [-1, -2, -0.5, pad], ref = [-1.5, -1, -0.5, pad] -> kl = [0.5, -1, 0, 0].
  #   kl_coef = 0.1 -> -kl_coef * kl = [-0.05, 0.1, 0, 0]; score 2.0 added at t = 3 - 1 = 2.
  #   rewards = [-0.05, 0.1, 2.0, 0].
  # Row 1: one real token, logp = -0.3, ref = -0.1 -> kl = -0.2, penalty +0.02, score -1 there.
  #   rewards = [0.02 - 1 = -0.98, 0, 0, 0].
  logp = jnp.array([[-1.0, -2.0, -0.5, -9.0], [-0.3, -4.0, -4.0, -4.0]])
  ref = jnp.array([[-1.5, -1.0, -0.5, -1.0], [-0.1, -1.0, -1.0, -1.0]])
  mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]], jnp.float32)
  scores = jnp.array([2.0, -1.0])
  rewards, kl = rl_core.kl_penalized_rewards(logp, ref, scores, mask, 0.1)
  close(kl, [[0.5, -1.0, 0.0, 0.0], [-0.2, 0.0, 0.0, 0.0]])
  close(rewards, [[-0.05, 0.1, 2.0, 0.0], [-0.98, 0.0, 0.0, 0.0]])
  # sequence_kl sums kl over real tokens: 0.5 - 1 + 0 = -0.5 and -0.2.
  close(rl_core.sequence_kl(logp, ref, mask), [-0.5, -0.2])
  # With gamma = 1 the return is score - kl_coef * sequence_kl (paper's r_PM - lambda KL).
  close(rewards.sum(-1), scores - 0.1 * jnp.array([-0.5, -0.2]))


def test_kl_penalized_rewards_empty_response_gets_nothing():
  logp = jnp.zeros((1, 3))
  rewards, _ = rl_core.kl_penalized_rewards(logp, logp, jnp.array([5.0]), jnp.zeros((1, 3)), 0.1)
  close(rewards, [[0.0, 0.0, 0.0]])


def test_hyperparameters_are_traced_no_recompile():
  traces = []

  def f(logp, ref, scores, mask, kl_coef, gamma, lam):
    traces.append(1)
    rewards, _ = rl_core.kl_penalized_rewards(logp, ref, scores, mask, kl_coef)
    return rl_core.gae(rewards, jnp.zeros_like(rewards), mask, gamma, lam)[0]

  f = jax.jit(f)
  x = jnp.zeros((2, 3))
  for kl_coef, gamma, lam in [(0.001, 1.0, 0.95), (0.1, 0.9, 0.5)]:
    f(x, x, jnp.ones(2), jnp.ones((2, 3)), kl_coef, gamma, lam)
  assert len(traces) == 1


# ----------------------------------------------------------------------------- masked statistics


def test_masked_mean_var_whiten_hand_example():
  # Real entries [1, 2, 3] (the 100 is padding): mean 2, unbiased var ((1+0+1)/(3-1)) = 1,
  # population var 2/3.
  x = jnp.array([[1.0, 2.0], [3.0, 100.0]])
  mask = jnp.array([[1, 1], [1, 0]], bool)
  close(rl_core.masked_mean(x, mask), 2.0)
  close(rl_core.masked_var(x, mask), 1.0)
  close(rl_core.masked_var(x, mask, unbiased=False), 2.0 / 3.0)
  s = 1.0 / math.sqrt(1.0 + 1e-8)
  close(rl_core.whiten(x, mask), [[-s, 0.0], [s, 0.0]])
  # shift_mean=False only rescales: (x - 2) / 1 + 2 = x on real entries.
  close(rl_core.whiten(x, mask, shift_mean=False), [[1.0, 2.0], [3.0, 0.0]])
  # Per-row masked mean: row 0 -> 1.5, row 1 -> 3.
  close(rl_core.masked_mean(x, mask, axis=-1), [1.5, 3.0])
  # An empty mask gives 0, not NaN.
  close(rl_core.masked_mean(x, jnp.zeros_like(mask)), 0.0)


# ----------------------------------------------------------------------------- log-probs, entropy


def test_logprobs_and_entropy_hand_example():
  # logits [0, 2 ln 3] at temperature 2 become [0, ln 3]: p = [1/4, 3/4].
  logits = jnp.array([[[0.0, 2 * math.log(3.0)], [0.0, 2 * math.log(3.0)]]])  # (1, 2, 2)
  tokens = jnp.array([[1, 0]])
  close(rl_core.logprobs_from_logits(logits, tokens, 2.0), [[math.log(0.75), math.log(0.25)]])
  # Entropy of p = [1/4, 3/4]: -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446...
  h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  close(rl_core.entropy_from_logits(logits / 2.0, jnp.ones((1, 2))), h)
  # Uniform logits over V = 5 have entropy ln 5, and large logits stay finite.
  uniform = jnp.full((2, 3, 5), 1e4)
  close(rl_core.entropy_from_logits(uniform, jnp.ones((2, 3))), math.log(5.0))


# ----------------------------------------------------------------------------- PPO policy loss

# Four tokens (plus one padding token), clip_eps = 0.2:
#   (a) ratio 1.1, A = +2 (inside the clip range): both terms -2.2          -> -2.2, not clipped
#   (b) ratio 1.5, A = +1 (above 1 + eps):  -1.5 vs -1 * 1.2 = -1.2          -> -1.2, clipped
#   (c) ratio 0.5, A = -1 (below 1 - eps):  +0.5 vs +1 * 0.8 = +0.8          -> +0.8, clipped
#   (d) ratio 1.5, A = -1 (above, but moving the wrong way): 1.5 vs 1.2    -> +1.5, not clipped
# loss = (-2.2 - 1.2 + 0.8 + 1.5) / 4 = -0.275; clipfrac = 2 / 4.
RATIOS = [1.1, 1.5, 0.5, 1.5, 3.0]
ADVS = [2.0, 1.0, -1.0, -1.0, 9.0]
PPO_MASK = [1, 1, 1, 1, 0]


def _ppo_inputs():
  old = jnp.array([[-1.0, -2.0, -0.5, -1.5, -1.0]])
  logp = old + jnp.log(jnp.array([RATIOS]))
  return logp, old, jnp.array([ADVS]), jnp.array([PPO_MASK], jnp.float32)


def test_ppo_policy_loss_hand_example():
  logp, old, adv, mask = _ppo_inputs()
  loss, metrics = rl_core.ppo_policy_loss(logp, old, adv, mask, 0.2)
  close(loss, -0.275)
  close(metrics["clipfrac"], 0.5)
  # ratio mean over real tokens (1.1 + 1.5 + 0.5 + 1.5) / 4 = 1.15;
  # population var = mean(ratio^2) - 1.15^2 = (1.21 + 2.25 + 0.25 + 2.25) / 4 - 1.3225 = 0.1675.
  close(metrics["ratio_mean"], 1.15)
  close(metrics["ratio_var"], 0.1675)
  logr = np.log(RATIOS[:4])
  close(metrics["approxkl"], 0.5 * np.mean(logr**2))
  close(metrics["approxkl_k3"], np.mean(np.array(RATIOS[:4]) - 1 - logr))


def test_ppo_policy_gradient_vanishes_only_where_clipping_removes_incentive():
  # d loss / d logp_t = (1/4) * (-A_t * ratio_t) where the unclipped term is active, 0 where clipped:
  #   (a) -2 * 1.1 / 4 = -0.55   (b) 0: A > 0 and ratio > 1 + eps, no further push up
  #   (c) 0: A < 0 and ratio < 1 - eps, no further push down
  #   (d) +1 * 1.5 / 4 = +0.375: ratio > 1 + eps but A < 0, the gradient still pulls it back
  #   padding: 0.
  logp, old, adv, mask = _ppo_inputs()
  grad = jax.grad(lambda lp: rl_core.ppo_policy_loss(lp, old, adv, mask, 0.2)[0])(logp)
  close(grad, [[-0.55, 0.0, 0.0, 0.375, 0.0]])
  assert float(grad[0, 1]) == 0.0 and float(grad[0, 2]) == 0.0


def test_ppo_unit_ratio_zero_advantage_gives_exactly_zero_gradient():
  logp = jnp.array([[-1.0, -0.3, -2.0], [-0.7, -0.1, -5.0]])
  adv = jnp.zeros_like(logp)
  mask = jnp.array([[1, 1, 1], [1, 1, 0]], jnp.float32)
  loss_fn = lambda lp: rl_core.ppo_policy_loss(lp, logp, adv, mask, 0.2)[0]
  grad = jax.grad(loss_fn)(logp)
  assert np.all(np.asarray(grad) == 0.0)
  assert float(loss_fn(logp)) == 0.0


def test_ppo_clip_eps_is_traced():
  # Same inputs, clip_eps 0.6: (b) 1.5 < 1.6 is now inside -> -1.5; (c) 0.5 > 0.4 inside -> +0.5.
  # loss = (-2.2 - 1.5 + 0.5 + 1.5) / 4 = -0.425.
  logp, old, adv, mask = _ppo_inputs()
  f = jax.jit(rl_core.ppo_policy_loss)
  close(f(logp, old, adv, mask, 0.6)[0], -0.425)
  close(f(logp, old, adv, mask, 0.2)[0], -0.275)


# ----------------------------------------------------------------------------- PPO value loss


def test_ppo_value_loss_hand_example():
  # eps = 0.2.
  # token 0: V = 1.0, V_old = 0.5, R = 2.0 -> V_clip = 0.7; (1 - 2)^2 = 1, (0.7 - 2)^2 = 1.69 -> 1.69 (clipped active)
  # token 1: V = 0.6, V_old = 0.5, R = 0.0 -> inside, V_clip = 0.6; both 0.36                  -> 0.36
  # token 2: padding.
  # loss = 0.5 * (1.69 + 0.36) / 2 = 0.5125; vf_clipfrac = 1/2.
  values = jnp.array([[1.0, 0.6, 3.0]])
  old = jnp.array([[0.5, 0.5, 0.0]])
  returns = jnp.array([[2.0, 0.0, -4.0]])
  mask = jnp.array([[1, 1, 0]], jnp.float32)
  loss, metrics = rl_core.ppo_value_loss(values, old, returns, mask, 0.2)
  close(loss, 0.5125)
  close(metrics["vf_clipfrac"], 0.5)
  # Gradient: token 0 is clipped (V_clip constant in V) -> 0; token 1: 0.5 * 2 * (0.6 - 0) / 2 = 0.3.
  grad = jax.grad(lambda v: rl_core.ppo_value_loss(v, old, returns, mask, 0.2)[0])(values)
  close(grad, [[0.0, 0.3, 0.0]])


# ----------------------------------------------------------------------------- KL controller


def test_adaptive_kl_update_hand_example():
  # KL = 12 vs target 6: e = clip(2 - 1, -0.2, 0.2) = 0.2; beta = 0.1 * (1 + 0.2 * 100 / 10000) = 0.1002.
  close(rl_core.adaptive_kl_update(0.1, 12.0, 6.0, 10000.0, 100.0), 0.1002, 1e-7)
  # KL = 5.7 vs 6: e = -0.05; beta = 0.1 * (1 - 0.05 * 1000 / 1000) = 0.095.
  close(rl_core.adaptive_kl_update(0.1, 5.7, 6.0, 1000.0, 1000.0), 0.095, 1e-7)


# ----------------------------------------------------------------------------- Bradley-Terry


def test_bradley_terry_hand_example():
  # margins [0, ln 3, -1]:
  #   -log sigmoid(0) = ln 2; -log sigmoid(ln 3) = -log(3/4) = ln(4/3); -log sigmoid(-1) = ln(1 + e).
  #   accuracy: tie 0.5, 1, 0 -> 0.5.  margin mean (ln 3 - 1) / 3.
  r_c = jnp.array([0.5, math.log(3.0), 0.0])
  r_r = jnp.array([0.5, 0.0, 1.0])
  loss, metrics = rl_core.bradley_terry_loss(r_c, r_r)
  close(loss, (math.log(2) + math.log(4 / 3) + math.log(1 + math.e)) / 3)
  close(metrics["accuracy"], 0.5)
  close(metrics["margin"], (math.log(3.0) - 1.0) / 3)
  both = np.array([0.5, math.log(3.0), 0.0, 0.5, 0.0, 1.0])
  close(metrics["reward_mean"], both.mean())
  close(metrics["reward_std"], both.std())
  # Weights [1, 3, 0]: loss = (ln 2 + 3 ln(4/3)) / 4; accuracy (0.5 + 3) / 4 = 0.875.
  loss_w, metrics_w = rl_core.bradley_terry_loss(r_c, r_r, jnp.array([1.0, 3.0, 0.0]))
  close(loss_w, (math.log(2) + 3 * math.log(4 / 3)) / 4)
  close(metrics_w["accuracy"], 0.875)
  # Reward stats leave out the weight-0 (padding) pair: scores [0.5, ln 3, 0.5, 0].
  real = np.array([0.5, math.log(3.0), 0.5, 0.0])
  close(metrics_w["reward_mean"], real.mean())
  close(metrics_w["reward_std"], real.std())
  # All-zero weights (a padding batch): zeros, not NaN.
  loss_0, metrics_0 = rl_core.bradley_terry_loss(r_c, r_r, jnp.zeros(3))
  close(loss_0, 0.0)
  close(metrics_0["accuracy"], 0.0)


def test_bradley_terry_stable_and_gradient():
  # Margin -100: -log sigmoid(-100) = 100 + log(1 + e^-100) ~ 100, finite; d/d r_c = -sigmoid(-m) = -1.
  loss, _ = rl_core.bradley_terry_loss(jnp.array([-50.0]), jnp.array([50.0]))
  close(loss, 100.0)
  g = jax.grad(lambda rc: rl_core.bradley_terry_loss(rc, jnp.array([0.0]))[0])(jnp.array([0.0]))
  close(g, [-0.5])  # d/dm of -log sigmoid(m) at m = 0 is -(1 - 1/2).
