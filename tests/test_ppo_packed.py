"""PPO on packed rows (hh_jax.train.ppo_packed): the placement by hand, and every pass, gradient
and whole iteration against the padded path (the reference: every position computed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh_jax import models
from hh_jax.config import OptimConfig
from hh_jax.data import packing
from hh_jax.special_tokens import PAD_ID
from hh_jax.train import optim, ppo, ppo_packed
from hh_jax.train.rollout import generate, pm_score, response_logprobs

VOCAB, PROMPT, NEW = 29, 10, 6


def tiny(seed: int, d_model: int = 16):
  cfg = models.ModelConfig(vocab_size=VOCAB, d_model=d_model, n_layers=2, n_heads=2,
                           max_len=PROMPT + NEW + 1)
  return models.init(cfg, jax.random.key(seed))


def prompts_of(n: int, seed: int = 0) -> np.ndarray:
  """Left-padded prompts of 1..4 real tokens (rows of PROMPT + NEW hold two rollouts or more)."""
  rng = np.random.default_rng(seed)
  out = np.full((n, PROMPT), PAD_ID, np.int32)
  for i in range(n):
    m = rng.integers(1, 5)
    out[i, PROMPT - m:] = rng.integers(8, VOCAB, m)
  return out


def test_pack_masked_places_each_rows_real_tokens_by_first_fit_decreasing():
  P = PAD_ID
  tokens = np.array([[P, 5, 6, 7, 8, P],      # 4 real: row 0
                     [P, P, P, 9, 3, P],      # 2 real: after the first, row 0
                     [P, P, 4, 4, 2, P]])     # 3 real: row 1 (row 0 has 2 free)
  real = tokens != P
  out = packing.pack_masked(tokens, real, packing.PackedLayout(rows=2, row_len=6, slots=0))
  np.testing.assert_array_equal(out["tokens"], [[5, 6, 7, 8, 9, 3], [4, 4, 2, P, P, P]])
  np.testing.assert_array_equal(out["positions"], [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]])
  np.testing.assert_array_equal(out["segment_ids"], [[1, 1, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]])
  np.testing.assert_array_equal(out["index"], [[0, 0, 1, 2, 3, 0], [0, 0, 0, 4, 5, 0],
                                               [0, 0, 6, 7, 8, 0]])
  # Reading the packed tokens back at `index` restores every real token of the padded rows.
  np.testing.assert_array_equal(out["tokens"].reshape(-1)[out["index"]][real], tokens[real])
  placement = packing.masked_placement(real, 6)
  assert placement == [[0, 1], [2]] and packing.rows_needed(placement) == (2, 2)
  given = packing.pack_masked(tokens, real, packing.PackedLayout(rows=2, row_len=6, slots=0),
                              placement)
  assert all(np.array_equal(given[k], out[k]) for k in out)
  with pytest.raises(ValueError, match="needs 2 rows"):
    packing.pack_masked(tokens, real, packing.PackedLayout(rows=1, row_len=6, slots=0))
  with pytest.raises(ValueError, match="segments"):
    packing.pack_masked(tokens, real, packing.PackedLayout(rows=2, row_len=6, slots=1))


def test_score_slots_by_hand():
  layout = packing.PackedLayout(rows=2, row_len=6, slots=2)
  score_index, slot = packing.score_slots(np.array([3, 5, 8]), layout)   # (0, 3), (0, 5), (1, 2)
  np.testing.assert_array_equal(score_index, [[3, 5], [2, 0]])
  np.testing.assert_array_equal(slot, [0, 1, 2])
  with pytest.raises(ValueError, match="score slots"):
    packing.score_slots(np.array([0, 1, 2]), layout)


def test_layouts_grow_with_headroom_only_when_a_batch_needs_more_and_round_trip():
  layouts = ppo_packed.Layouts()
  assert layouts.fit("policy", 16, 3, 13) == packing.PackedLayout(18, 13, 4)   # 16 + 2, 3 + 1
  assert layouts.fit("policy", 18, 4, 13) == packing.PackedLayout(18, 13, 4) and layouts.grown == 0
  assert layouts.fit("policy", 19, 2, 13) == packing.PackedLayout(22, 13, 4) and layouts.grown == 1
  # Never more rows (or slots) than the batch has sequences: each fits a row of its own.
  assert ppo_packed.Layouts().fit("pm", 20, 3, 13, most=21) == packing.PackedLayout(21, 13, 4)
  again = ppo_packed.Layouts()
  again.restore(layouts.state())
  assert again.layouts == layouts.layouts and again.grown == 1


@pytest.fixture(scope="module")
def batch():
  """A random policy's replies (some ending early, some without EOS) and two random PMs."""
  policy_gd, policy = tiny(0)
  prompts = jnp.asarray(prompts_of(24))
  roll = generate(policy_gd, policy, prompts, jax.random.key(3), max_new_tokens=NEW,
                  banned_ids=(4,))
  assert 0 < float(roll.mask.mean()) < 1 and not bool(roll.eos.all())
  return (policy_gd, policy), prompts, roll


def test_packed_logprobs_values_and_pm_scores_equal_the_padded_pass(batch):
  (gd, params), prompts, roll = batch
  host = [np.asarray(a) for a in (prompts, roll.response, roll.mask)]
  layouts = ppo_packed.Layouts()
  rows = ppo_packed.pack_rows(*ppo_packed.rollout_rows(*host), layouts, "policy")
  assert rows["tokens"].shape[0] < prompts.shape[0]            # fewer rows than the padded batch
  padded = response_logprobs(gd, params, prompts, roll.response, roll.mask, 0.7, (4,))
  packed = response_logprobs(gd, params, prompts, roll.response, roll.mask, 0.7, (4,),
                             packed=jax.tree.map(jnp.asarray, rows))
  for a, b in zip(padded[:2], packed[:2]):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5)
  np.testing.assert_allclose(np.asarray(packed[2]) * host[2][..., None],
                             np.asarray(padded[2]) * host[2][..., None], atol=2e-4)
  pm_gd, pm = tiny(7, d_model=8)
  pm_rows = jax.tree.map(jnp.asarray, ppo_packed.pack_pm_rows(*host, layouts))
  np.testing.assert_allclose(np.asarray(pm_score(pm_gd, pm, prompts, roll.response, roll.mask,
                                                 packed=pm_rows)),
                             np.asarray(pm_score(pm_gd, pm, prompts, roll.response, roll.mask)),
                             atol=2e-5)


def _cfg(**kw) -> ppo.PPOConfig:
  return ppo.PPOConfig(batch_size=24, minibatch_size=8, ppo_epochs=2, max_new_tokens=NEW,
                       prompt_len=PROMPT, kl_coef=0.05, banned_token_ids=(4,),
                       optim=OptimConfig(learning_rate=3e-3, warmup_steps=0, b2=0.999), **kw)


def test_packed_loss_gradients_equal_the_padded_ones(batch):
  (gd, params), prompts, roll = batch
  cfg = _cfg()
  host = [np.asarray(a) for a in (prompts, roll.response, roll.mask)]
  rng = np.random.default_rng(0)
  mb = {"prompts": prompts, "response": roll.response, "mask": roll.mask,
        "old_logprobs": roll.logprobs + 0.1 * jnp.asarray(rng.normal(size=roll.mask.shape)),
        "old_values": jnp.asarray(rng.normal(size=roll.mask.shape), jnp.float32),
        "advantages": jnp.asarray(rng.normal(size=roll.mask.shape), jnp.float32),
        "returns": jnp.asarray(rng.normal(size=roll.mask.shape), jnp.float32)}
  both = {"policy": params, "value": tiny(9)[1]}
  rows = jax.tree.map(jnp.asarray, ppo_packed.pack_rows(*ppo_packed.rollout_rows(*host),
                                                        ppo_packed.Layouts(), "mb"))
  hp = ppo.hparams_from_config(cfg)
  grad = lambda packed: jax.grad(lambda p: ppo.ppo_loss(gd, gd, p, mb, hp, 1.0, (4,), packed)[0])(both)  # noqa: E731
  for a, b in zip(jax.tree.leaves(grad(None)), jax.tree.leaves(grad(rows))):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5, rtol=2e-4)


def test_packed_iterations_equal_the_padded_jitted_iteration(batch):
  """Two iterations of each path from one state: the same replies (the same keys and sampler),
  and metrics, per-sample scores and parameters within float tolerance."""
  (gd, params), _, _ = batch
  pm_gd, pm = tiny(7, d_model=8)
  test_gd, test = tiny(8, d_model=8)
  cfg = _cfg(reward_norm=True)
  optimizer = optim.make_optimizer(cfg.optim, 4 * cfg.updates_per_iteration)
  frozen = {"ref": params, "pm": pm, "tests": (test,)}
  prompts = [jnp.asarray(prompts_of(24, seed)) for seed in (1, 2)]

  def run(make):
    iterate = make(gd, pm_gd, pm_gd, (test_gd,), optimizer, cfg)
    state = optim.init_train_state({"policy": jax.tree.map(jnp.array, params),
                                    "value": ppo.value_params("pm", params, pm)},
                                   optimizer, ppo.hparams_from_config(cfg, 0.5, -0.2))
    outs = []
    for p in prompts:
      state, out = iterate(state, frozen, p, jax.random.key(11))
      outs.append(jax.device_get(out))
    return jax.device_get(state), outs

  (s_pad, o_pad), (s_pk, o_pk) = run(ppo.make_iteration), run(ppo_packed.make_packed_iteration)
  for a, b in zip(o_pad, o_pk):
    np.testing.assert_array_equal(a["response"], b["response"])
    for k in ("kl", "score_train"):
      np.testing.assert_allclose(b["samples"][k], a["samples"][k], atol=1e-4)
    np.testing.assert_allclose(b["samples"]["score_test"], a["samples"]["score_test"], atol=1e-5)
    for k in ("ppo/loss", "ppo/kl", "ppo/value_loss", "ppo/grad_norm"):
      assert b["metrics"][k] == pytest.approx(float(a["metrics"][k]), rel=1e-3, abs=1e-5), k
    assert 0 < b["metrics"]["perf/packed_fraction"] < 1
  for a, b in zip(jax.tree.leaves(s_pad["params"]), jax.tree.leaves(s_pk["params"])):
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-4)
  assert int(s_pk["step"]) == int(s_pad["step"]) == 2 * cfg.updates_per_iteration
