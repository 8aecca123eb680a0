"""Packed rows (hh_jax.data.packing): a hand-built layout and mask, lossless packing, and the
packed PM scores / loss gradients and LM loss / gradients equal to the padded reference path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh_jax import models
from hh_jax.config import OptimConfig
from hh_jax.data import packing
from hh_jax.data.batching import PairIterator
from hh_jax.models.transformer import packed_mask
from hh_jax.special_tokens import EOC_ID, EOS_ID, NUM_SPECIAL, PAD_ID
from hh_jax.train import lm, optim, pm
from tests.conftest import toy_pairs

VOCAB = 40


def _pair_batch(specs, seq_len: int, seed: int = 0) -> dict:
  """A padded PM batch from (context, chosen reply, rejected reply, shared reply prefix) lengths:
  the rejected reply starts with the chosen one's first `shared` tokens."""
  rng = np.random.default_rng(seed)
  tok = lambda n: rng.integers(NUM_SPECIAL, VOCAB, n).astype(np.int32)  # noqa: E731
  chosen, rejected = [], []
  for ctx, a, b, shared in specs:
    context, reply_c = tok(ctx), tok(a)
    reply_r = np.concatenate([reply_c[:shared], tok(b - shared)])
    chosen.append(np.concatenate([context, reply_c, [EOC_ID]]))
    rejected.append(np.concatenate([context, reply_r, [EOC_ID]]))
  pad = lambda rows: np.stack([np.pad(r, (0, seq_len - len(r))) for r in rows]).astype(np.int32)  # noqa: E731
  n = len(specs)
  return {"chosen_tokens": pad(chosen), "rejected_tokens": pad(rejected),
          "chosen_eoc_index": np.array([len(r) - 1 for r in chosen], np.int32),
          "rejected_eoc_index": np.array([len(r) - 1 for r in rejected], np.int32),
          "weight": rng.uniform(0.5, 1.5, n).astype(np.float32),
          "is_harmless": (np.arange(n) % 2).astype(np.float32)}


# (context, chosen reply, rejected reply, shared reply prefix); T = 24, L = 2T = 48
VARIED = [(5, 3, 4, 0), (0, 0, 0, 0), (10, 0, 6, 0), (20, 2, 1, 1), (3, 7, 7, 7), (0, 23, 23, 0),
          (12, 5, 9, 2), (22, 1, 0, 0), (1, 1, 1, 0), (8, 4, 4, 4), (0, 5, 20, 3), (15, 8, 3, 0)]
T = 24


@pytest.fixture(scope="module")
def small_model():
  cfg = models.ModelConfig(vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, max_len=T)
  return models.init(cfg, jax.random.key(0))


def test_hand_built_layout_positions_and_mask():
  """Pair 0: context [5 6], replies [7 8] / [4]; pair 1: no context, replies [9] / [3 3]."""
  batch = {"chosen_tokens": np.array([[5, 6, 7, 8, 2], [9, 2, 0, 0, 0]]),
           "rejected_tokens": np.array([[5, 6, 4, 2, 0], [3, 3, 2, 0, 0]]),
           "chosen_eoc_index": np.array([4, 1]), "rejected_eoc_index": np.array([3, 2])}
  layout = packing.PackedLayout(rows=1, row_len=12, slots=4)
  p = packing.pack_pairs(batch, layout)
  # FFD: pair 0 (5 + 4 - 2 = 7 tokens) first, then pair 1 (2 + 3 - 0 = 5): 12 tokens, 1 row.
  np.testing.assert_array_equal(p["tokens"][0], [5, 6, 7, 8, 2, 4, 2, 9, 2, 3, 3, 2])
  np.testing.assert_array_equal(p["positions"][0], [0, 1, 2, 3, 4, 2, 3, 0, 1, 0, 1, 2])
  np.testing.assert_array_equal(p["segment_ids"][0], [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
  np.testing.assert_array_equal(p["branch_ids"][0], [0, 0, 1, 1, 1, 2, 2, 1, 1, 2, 2, 2])
  np.testing.assert_array_equal(p["score_index"][0], [4, 6, 8, 11])
  np.testing.assert_array_equal(p["pair_slots"], [[0, 1], [2, 3]])
  mask = np.asarray(packed_mask(jnp.asarray(p["segment_ids"]), jnp.asarray(p["branch_ids"])))[0]
  visible = {i: list(np.flatnonzero(mask[i])) for i in range(12)}
  assert visible[4] == [0, 1, 2, 3, 4]          # chosen EOC: context + chosen reply
  assert visible[5] == [0, 1, 5]                # rejected reply: context + itself, not chosen
  assert visible[6] == [0, 1, 5, 6]
  assert visible[8] == [7, 8]                   # pair 1 never sees pair 0
  assert visible[11] == [9, 10, 11]             # no context: the rejected reply sees itself only


def test_padding_tail_and_left_out_pairs():
  batch = _pair_batch([(2, 1, 1, 0), (3, 2, 2, 0)], seq_len=8)
  layout = packing.PackedLayout(rows=3, row_len=16, slots=4)
  p = packing.pack_pairs(batch, layout, valid=np.array([1, 0]))
  assert p["pair_valid"].tolist() == [1.0, 0.0]
  assert (p["segment_ids"][1:] == 0).all() and (p["tokens"][1:] == PAD_ID).all()
  assert p["segment_ids"][0, :6].tolist() == [1] * 6 and (p["segment_ids"][0, 6:] == 0).all()
  with pytest.raises(ValueError, match="rows"):
    packing.pack_pairs(_pair_batch([(8, 7, 7, 0)] * 3, seq_len=16), layout)


@pytest.mark.parametrize("specs", [VARIED, VARIED[5:6], VARIED[:1]], ids=["varied", "full-row", "one"])
def test_packing_is_lossless(specs):
  batch = _pair_batch(specs, T)
  lc, lr, p = packing.pair_lengths(batch)
  layout = packing.plan_layout([(lc, lr, p)], packing.default_row_len(T))
  packed = packing.pack_pairs(batch, layout)
  for b, (c, r) in enumerate(packing.unpack_pairs(packed)):
    np.testing.assert_array_equal(c, batch["chosen_tokens"][b, :lc[b]])
    np.testing.assert_array_equal(r, batch["rejected_tokens"][b, :lr[b]])
  assert int((packed["segment_ids"] > 0).sum()) == int((lc + lr - p).sum())   # each token once


def assert_trees_close(actual, desired, rtol=1e-4):
  """Every leaf within rtol of its own scale: |a - d| <= rtol * (|d| + max |d|) + 1e-7."""
  def close(a, d):
    scale = float(np.max(np.abs(d))) + 1e-12
    np.testing.assert_allclose(a, d, rtol=rtol, atol=rtol * scale + 1e-7)
  jax.tree.map(close, actual, desired)


def _loss_and_grads(graphdef, params, batch):
  loss_fn = lambda prm, b: pm.pm_loss(graphdef, prm, b, 0.7)[0]  # noqa: E731
  return jax.jit(jax.value_and_grad(loss_fn))(params, batch)


CASES = {"varied": (VARIED, 48), "full-row": ([(0, 23, 23, 2)], 46),   # 24 + 24 - 2 = 46 = L
         "one-pair": (VARIED[:1], 48), "split": ([(0, 23, 23, 0), (6, 17, 17, 0), (2, 1, 1, 0)], 30)}


@pytest.mark.parametrize("case", CASES)
def test_packed_scores_and_gradients_equal_the_padded_path(small_model, case):
  """Incl. empty replies, long contexts, a pair filling a whole row, a batch with one pair,
  and pairs longer than the row (split into two plain segments)."""
  graphdef, params = small_model
  specs, row_len = CASES[case]
  batch = _pair_batch(specs, T, seed=len(specs))
  lc, lr, p = packing.pair_lengths(batch)
  layout = packing.plan_layout([(lc, lr, p)], row_len)
  packed = packing.pack_pairs(batch, layout)
  if case == "full-row":
    assert (packed["segment_ids"][0] > 0).all()
  if case == "split":
    assert packed["segment_ids"].max() >= 2 and packed["branch_ids"][:, :24].max() == 0
  padded_c, padded_r = pm.padded_pair_scores(graphdef, params, batch)
  packed_c, packed_r = pm.packed_pair_scores(graphdef, params, packed)
  np.testing.assert_allclose(packed_c, padded_c, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(packed_r, padded_r, rtol=1e-5, atol=1e-5)
  loss_pad, grads_pad = _loss_and_grads(graphdef, params, batch)
  loss_pack, grads_pack = _loss_and_grads(graphdef, params, packed)
  np.testing.assert_allclose(loss_pack, loss_pad, rtol=1e-5)
  assert_trees_close(grads_pack, grads_pad)


@pytest.mark.parametrize("case", ["varied", "split"])
def test_packed_rows_by_causal_blocks_equal_the_dense_padded_path(small_model, case, monkeypatch):
  """Packed rows of 48 computed in causal blocks of 8 (`models.config.CAUSAL_BLOCK`): scores,
  loss and gradients equal the padded path with dense attention."""
  from hh_jax.models import config as model_config
  graphdef, params = small_model
  specs, row_len = CASES[case]
  batch = _pair_batch(specs, T, seed=len(specs))
  packed = packing.pack_pairs(batch, packing.plan_layout([packing.pair_lengths(batch)], row_len))
  results = {}
  for name, block, inputs in (("dense", None, batch), ("blocked", 8, packed)):
    monkeypatch.setattr(model_config, "CAUSAL_BLOCK", block)
    jax.clear_caches()
    scores = (pm.padded_pair_scores if block is None else pm.packed_pair_scores)(graphdef, params, inputs)
    results[name] = (scores, *_loss_and_grads(graphdef, params, inputs))
  (s_d, l_d, g_d), (s_b, l_b, g_b) = results["dense"], results["blocked"]
  np.testing.assert_allclose(s_b, s_d, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(l_b, l_d, rtol=1e-5)
  assert_trees_close(g_b, g_d)


def test_rotary_model_packed_scores_equal_padded():
  cfg = models.ModelConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, max_len=T,
                           positions="rotary")
  graphdef, params = models.init(cfg, jax.random.key(1))
  batch = _pair_batch(VARIED, T, seed=3)
  layout = packing.plan_layout([packing.pair_lengths(batch)], 48)
  np.testing.assert_allclose(pm.packed_pair_scores(graphdef, params, packing.pack_pairs(batch, layout)),
                             pm.padded_pair_scores(graphdef, params, batch), rtol=1e-5, atol=1e-5)


def test_run_layout_compiles_the_step_once():
  """One layout planned over the whole run: every step reuses the one compiled step."""
  arrays = toy_pairs(96, seed=0)
  it = PairIterator(arrays, 8, seed=0, num_epochs=2)
  layout = packing.plan_pair_layout(arrays, it.run_batch_rows(), packing.default_row_len(arrays.seq_len))
  cfg = models.ModelConfig(vocab_size=32, d_model=8, n_layers=1, n_heads=2, max_len=arrays.seq_len)
  graphdef, params = models.init(cfg, jax.random.key(0))
  opt = optim.make_optimizer(OptimConfig(), 24)
  step = pm.make_step(graphdef, opt, donate=False)
  state = optim.init_train_state(params, opt, pm.PM_HPARAMS)
  sizes = []
  for i, b in enumerate(it):
    state, _ = step(state, packing.pack_pairs(pm.device_batch(b, arrays.source_names), layout),
                    jax.random.key(0))
    sizes.append(step._cache_size())
  assert len(sizes) == 24 and sizes[1] == sizes[-1] == 1


# ----------------------------------------------------------------------------- LM documents


def _docs(lengths, seq_len: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  out = np.full((len(lengths), seq_len), PAD_ID, np.int32)
  for i, n in enumerate(lengths):
    out[i, :n] = rng.integers(NUM_SPECIAL, VOCAB, n)
    if 0 < n < seq_len:
      out[i, n - 1] = EOS_ID
  return out


def test_packed_lm_loss_and_gradients_equal_the_padded_path(small_model):
  graphdef, params = small_model
  tokens = _docs([24, 1, 5, 12, 7, 19, 3, 2], T)
  layout = packing.plan_doc_layout(tokens, [np.arange(8)])
  packed = packing.pack_docs(tokens, layout)
  assert layout.rows < 8 and (packed["segment_ids"][0] > 0).all()    # the 24-token doc fills row 0
  loss_fn = lambda prm, b: lm.lm_loss(graphdef, prm, b)  # noqa: E731
  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  (loss_pad, m_pad), g_pad = grad_fn(params, {"tokens": tokens})
  (loss_pack, m_pack), g_pack = grad_fn(params, packed)
  assert float(m_pack["tokens"]) == float(m_pad["tokens"]) == sum([23, 0, 4, 11, 6, 18, 2, 1])
  np.testing.assert_allclose(loss_pack, loss_pad, rtol=1e-5)
  np.testing.assert_allclose(m_pack["token_accuracy"], m_pad["token_accuracy"], rtol=1e-5)
  assert_trees_close(g_pack, g_pad)
