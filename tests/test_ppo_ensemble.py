"""An ensemble of train PMs as the PPO reward (Coste et al. 2023): the combined reward against
numpy on random tiny PMs, K = 1 against the single-PM reward, and a tiny run with 2 members."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh_jax import models
from hh_jax.config import ConfigError, OptimConfig
from hh_jax.metrics import read_jsonl
from hh_jax.special_tokens import PAD_ID
from hh_jax.train import lifecycle, optim, ppo, rl_core, tasks
from hh_jax.train.ppo_run import PPOInputs
from hh_jax.train.rollout import generate, pm_score, response_logprobs

VOCAB, PROMPT, NEW = 29, 6, 5


def tiny(d_model: int, seed: int, n_layers: int = 1):
  """(graphdef, params) of a random tiny model: every model has a score head, so it is a PM."""
  cfg = models.ModelConfig(vocab_size=VOCAB, d_model=d_model, n_layers=n_layers, n_heads=2,
                           max_len=PROMPT + NEW + 1)
  return models.init(cfg, jax.random.key(seed)), cfg


def prompts_of(n: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  out = np.full((n, PROMPT), PAD_ID, np.int32)
  for i in range(n):
    m = rng.integers(2, PROMPT + 1)
    out[i, PROMPT - m:] = rng.integers(8, VOCAB, m)
  return out


@pytest.fixture(scope="module")
def rollout():
  """Three random PMs of two widths, a random policy and one batch of its replies."""
  pms = [tiny(8, 1)[0], tiny(16, 2)[0], tiny(8, 3)[0]]
  (policy_gd, policy), _ = tiny(8, 0)
  prompts = jnp.asarray(prompts_of(8))
  roll = generate(policy_gd, policy, prompts, jax.random.key(5), max_new_tokens=NEW)
  return pms, (policy_gd, policy), prompts, roll


@pytest.mark.parametrize("ensemble", ["mean", "min"])
def test_combined_reward_is_the_numpy_mean_or_min_of_the_normalised_members(rollout, ensemble):
  pms, _, prompts, roll = rollout
  gds, params = [g for g, _ in pms], [p for _, p in pms]
  scores = ppo.ensemble_scores(gds, params, prompts, roll.response, roll.mask)      # (3, 8)
  direct = np.stack([np.asarray(pm_score(g, p, prompts, roll.response, roll.mask))
                     for g, p in pms])
  np.testing.assert_allclose(np.asarray(scores), direct, rtol=1e-6)
  gain, bias = np.array([0.5, 2.0, 1.5], np.float32), np.array([0.1, -0.3, 0.0], np.float32)
  got = ppo.combine_scores(scores, gain, bias, ensemble)
  normalised = gain[:, None] * direct + bias[:, None]
  want = normalised.mean(axis=0) if ensemble == "mean" else normalised.min(axis=0)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
  assert got.shape == (8,)


def test_one_member_is_exactly_the_single_pm_reward(rollout):
  pms, _, prompts, roll = rollout
  g, p = pms[0]
  score = pm_score(g, p, prompts, roll.response, roll.mask)
  gain, bias = jnp.float32(0.7), jnp.float32(-0.2)
  for ensemble in ("mean", "min"):
    got = ppo.combine_scores(score[None], gain, bias, ensemble)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(gain * score + bias))


def _state(cfg, policy, pm_params, gain, bias):
  optimizer = optim.make_optimizer(cfg.optim, 10)
  params = {"policy": policy, "value": ppo.value_params("pm", policy, pm_params)}
  return optim.init_train_state(params, optimizer, ppo.hparams_from_config(cfg, gain, bias))


def test_experience_with_one_pm_gives_the_single_pm_returns(rollout):
  """experience() with no extra members: returns from r = g r_PM + c - penalty [no EOS] (the
  single-PM reward, written out here), through the KL penalty and GAE."""
  pms, (policy_gd, policy), prompts, roll = rollout
  pm_gd, pm_params = pms[0]
  cfg = ppo.PPOConfig(batch_size=8, minibatch_size=4, max_new_tokens=NEW, prompt_len=PROMPT,
                      kl_coef=0.05)
  state = _state(cfg, policy, pm_params, 0.7, -0.2)
  ref = jax.tree.map(lambda x: x * 1.01, policy)                     # a KL term that is not 0
  batch, metrics, samples = ppo.experience(policy_gd, pm_gd, pm_gd, state, ref, pm_params,
                                           prompts, roll, 1.0)
  hp = state["hparams"]
  score = pm_score(pm_gd, pm_params, prompts, roll.response, roll.mask)
  reward = hp.reward_gain * score + hp.reward_bias - hp.no_eos_penalty * (1.0 - roll.eos.astype(jnp.float32))
  rewards, _ = rl_core.kl_penalized_rewards(batch["old_logprobs"], response_logprobs(
      policy_gd, ref, prompts, roll.response, roll.mask)[0], reward, roll.mask, hp.kl_coef)
  _, returns = rl_core.gae(rewards, batch["old_values"], roll.mask, hp.gamma, hp.lam)
  np.testing.assert_array_equal(np.asarray(batch["returns"]), np.asarray(returns))
  np.testing.assert_array_equal(np.asarray(samples["score_train"]), np.asarray(score))
  assert "score_members" not in samples and "ppo/score_ensemble" not in metrics
  assert np.ndim(metrics["ppo/reward_gain"]) == 0


def test_hparams_hold_a_gain_per_member_and_the_config_checks_the_ensemble():
  one = ppo.PPOConfig(reward_pm="a")
  three = ppo.PPOConfig(reward_pm="a", reward_pms=("b", "c"), ensemble="min")
  assert ppo.hparams_from_config(one).reward_gain == 1.0
  assert three.reward_members == ("a", "b", "c")
  # reward_pms may hold reward_pm (a `refs` of the whole train-PM family): it counts once.
  assert ppo.PPOConfig(reward_pm="a", reward_pms=("b", "a", "c", "b")).reward_members == ("a", "b", "c")
  assert ppo.PPOConfig(reward_pm="a", reward_pms=("a",)).reward_members == ("a",)
  hp = ppo.hparams_from_config(three, [1.0, 2.0, 3.0], 0.0)
  np.testing.assert_array_equal(hp.reward_gain, [1.0, 2.0, 3.0])
  np.testing.assert_array_equal(hp.reward_bias, [0.0, 0.0, 0.0])
  with pytest.raises(ValueError, match="3 train PMs but 2"):
    ppo.hparams_from_config(three, [1.0, 2.0])
  with pytest.raises(ConfigError):
    ppo.PPOConfig(ensemble="median")


def _save(run_dir: str, d_model: int, seed: int) -> str:
  (_, params), cfg = tiny(d_model, seed)
  lifecycle.save_model(run_dir, cfg, params)
  return run_dir


def test_a_tiny_ppo_run_against_two_pms_logs_each_members_score(tmp_path):
  policy = _save(str(tmp_path / "lm"), 8, 0)
  pm_a, pm_b = _save(str(tmp_path / "pm-a"), 8, 1), _save(str(tmp_path / "pm-b"), 16, 2)
  cfg = ppo.PPOConfig(policy_init=policy, reward_pm=pm_a, reward_pms=(pm_b,), ensemble="min",
                      test_pms=(pm_b,), num_iterations=3, batch_size=8, minibatch_size=4,
                      max_new_tokens=NEW, prompt_len=PROMPT, reward_norm=True,
                      reward_norm_samples=16, checkpoint_every=0, snapshot_every=2,
                      num_eval_prompts=4, optim=OptimConfig(learning_rate=1e-3, warmup_steps=0))
  run_dir = str(tmp_path / "ppo")
  prompts = prompts_of(32, 1)
  tasks.run_config(cfg, run_dir, inputs=PPOInputs(prompts, eval_prompt_tokens=prompts[:4]),
                   progress=False)
  records = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  assert len(records) == 3
  for r in records:
    for name in ("pm-a", "pm-b"):
      assert np.isfinite(r[f"ppo/score_member/{name}"])
      assert r[f"ppo/reward_gain/{name}"] > 0 and f"ppo/reward_bias/{name}" in r
    assert r["ppo/score_member/pm-a"] == pytest.approx(r["ppo/score_train"], rel=1e-5)
    assert r["ppo/score_member/pm-b"] == pytest.approx(r["ppo/score_test/pm-b"], rel=1e-4, abs=1e-5)
    assert "ppo/reward_gain" not in r and np.isfinite(r["ppo/score_ensemble"])
  first = read_jsonl(os.path.join(run_dir, "samples.jsonl"))[0]
  a, b = np.array(first["score_member/pm-a"]), np.array(first["score_member/pm-b"])
  g = [records[0][f"ppo/reward_gain/{n}"] for n in ("pm-a", "pm-b")]
  c = [records[0][f"ppo/reward_bias/{n}"] for n in ("pm-a", "pm-b")]
  worst = np.minimum(g[0] * a + c[0], g[1] * b + c[1])
  assert records[0]["ppo/score_ensemble"] == pytest.approx(worst.mean(), rel=1e-4, abs=1e-5)
  with open(os.path.join(run_dir, "pms.json")) as f:
    pms = json.load(f)
  assert [m["name"] for m in pms["reward_members"]] == ["pm-a", "pm-b"] and pms["ensemble"] == "min"
  snap = np.load(os.path.join(run_dir, "evals", "step_000000.npz"))
  assert snap["score_member__pm-b"].shape == (4,)
