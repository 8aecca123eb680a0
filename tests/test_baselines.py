"""The shortcut baselines beside every PM accuracy, on pairs whose answers are known by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hh_jax.data.batching import PairArrays
from hh_jax.eval import baselines
from hh_jax.special_tokens import EOC_ID, PAD_ID
from tests.conftest import toy_pairs


def _pairs(chosen_rows, rejected_rows, context=(9, 9)):
  """PairArrays from reply token lists, each row context + reply + EOC, right-padded."""
  def encode(rows):
    width = max(len(context) + len(r) + 1 for r in chosen_rows + rejected_rows)
    out = np.full((len(rows), width), PAD_ID, np.int32)
    for i, r in enumerate(rows):
      seq = list(context) + list(r) + [EOC_ID]
      out[i, :len(seq)] = seq
    return out, np.array([len(context) + len(r) for r in rows], np.int32), \
        np.array([len(r) for r in rows], np.int32)
  (c, ci, cl), (r, ri, rl) = encode(chosen_rows), encode(rejected_rows)
  n = len(chosen_rows)
  return PairArrays(chosen_tokens=c, rejected_tokens=r, chosen_eoc_index=ci, rejected_eoc_index=ri,
                    num_turns=np.ones(n, np.int32), source=np.zeros(n, np.int32),
                    weight=np.ones(n, np.float32), source_names=("helpful",),
                    chosen_reply_len=cl, rejected_reply_len=rl)


def test_reply_token_counts_skip_context_eoc_and_padding():
  arrays = _pairs([[5, 5, 6]], [[7]])
  counts = baselines.reply_token_counts(arrays.chosen_tokens, arrays.chosen_eoc_index,
                                        arrays.chosen_reply_len, 12)
  expected = np.zeros(12)
  expected[5], expected[6] = 2, 1                      # the context's 9s and the EOC are not counted
  np.testing.assert_array_equal(counts[0], expected)


def test_distinct_tokens_by_hand():
  # pair 0: 2 vs 1 distinct -> right; pair 1: 1 vs 3 -> wrong; pair 2: 2 vs 2 -> a tie (half)
  arrays = _pairs([[5, 6], [5, 5, 5], [5, 6]], [[7, 7], [6, 7, 8], [7, 8]])
  assert baselines.distinct_tokens_baseline(arrays, 12) == pytest.approx((1 + 0 + 0.5) / 3)


def test_bag_of_words_finds_a_marker_token_and_not_a_random_label():
  train, evals = toy_pairs(512, 0), toy_pairs(256, 1)    # chosen replies hold token 7
  assert baselines.bag_of_words_baseline(train, evals, 29) > 0.95
  rng = np.random.default_rng(0)
  def shuffled(a):                                      # swap sides at random: no signal left
    swap = rng.random(len(a)) < 0.5
    pick = lambda x, y: np.where(swap[:, None] if x.ndim == 2 else swap, y, x)  # noqa: E731
    return dataclasses.replace(
        a, chosen_tokens=pick(a.chosen_tokens, a.rejected_tokens),
        rejected_tokens=pick(a.rejected_tokens, a.chosen_tokens),
        chosen_eoc_index=pick(a.chosen_eoc_index, a.rejected_eoc_index),
        rejected_eoc_index=pick(a.rejected_eoc_index, a.chosen_eoc_index),
        chosen_reply_len=pick(a.chosen_reply_len, a.rejected_reply_len),
        rejected_reply_len=pick(a.rejected_reply_len, a.chosen_reply_len))
  assert abs(baselines.bag_of_words_baseline(shuffled(train), shuffled(evals), 29) - 0.5) < 0.1


def test_pair_logistic_matches_the_gradient_condition():
  """At the optimum the penalised gradient is zero: X^T (1 - p) = ridge w."""
  x = np.random.default_rng(0).normal(size=(200, 5))
  w = baselines.fit_pair_logistic(x, ridge=0.5)
  p = 1 / (1 + np.exp(-(x @ w)))
  np.testing.assert_allclose(x.T @ (1 - p), 0.5 * w, atol=1e-8)
