"""Baselines that could explain a PM away, scored on the same evaluation pairs.

A PM's accuracy means little if a shortcut matches it. Besides the shorter-reply baseline
(`data.batching.shorter_reply_baseline`) these read only the two replies' tokens:

    distinct tokens   predict the reply with more distinct tokens is chosen
    bag of words      logistic regression P(chosen) = sigmoid(w . (n_c - n_r)), where n is a
                      reply's token-count vector, fitted on the PM's own training pairs
                      (L2 penalty, Newton's method) and scored on the evaluation pairs

Ties count half, as in every pair accuracy.
"""

from __future__ import annotations

import numpy as np


def reply_token_counts(tokens: np.ndarray, eoc_index: np.ndarray, reply_len: np.ndarray,
                       vocab_size: int) -> np.ndarray:
  """(N, V) counts of each token id in each row's reply: positions [eoc - len, eoc).

  A reply longer than the row (truncated to its last max_len - 1 tokens, no context) counts
  only what the row keeps: positions [0, eoc)."""
  n, width = tokens.shape
  pos = np.arange(width)[None, :]                                             # (1, T)
  start = np.maximum(eoc_index - reply_len, 0)[:, None]
  in_reply = (pos >= start) & (pos < eoc_index[:, None])                      # (N, T)
  counts = np.zeros((n, vocab_size), np.float64)
  rows = np.broadcast_to(np.arange(n)[:, None], tokens.shape)
  np.add.at(counts, (rows[in_reply], tokens[in_reply]), 1.0)
  return counts


def pair_features(arrays, vocab_size: int) -> np.ndarray:
  """(N, V) n_chosen - n_rejected for every pair of a PairArrays."""
  chosen = reply_token_counts(arrays.chosen_tokens, arrays.chosen_eoc_index,
                              arrays.chosen_reply_len, vocab_size)
  rejected = reply_token_counts(arrays.rejected_tokens, arrays.rejected_eoc_index,
                                arrays.rejected_reply_len, vocab_size)
  return chosen - rejected


def _accuracy(margin: np.ndarray) -> float:
  return float(np.mean((margin > 0) + 0.5 * (margin == 0))) if len(margin) else float("nan")


def fit_pair_logistic(x: np.ndarray, ridge: float = 1.0, iterations: int = 30) -> np.ndarray:
  """argmin_w  sum_i log(1 + exp(-w . x_i)) + ridge / 2 |w|^2  (every label "chosen") by Newton.

  Symmetric in the pair order: the same w fits the pairs (x_i, chosen) and (-x_i, rejected).
  """
  d = x.shape[1]
  w = np.zeros(d)
  for _ in range(iterations):
    p = 1.0 / (1.0 + np.exp(-(x @ w)))                                         # P(chosen)
    grad = -x.T @ (1.0 - p) + ridge * w
    hess = (x * (p * (1.0 - p))[:, None]).T @ x + ridge * np.eye(d)
    step = np.linalg.solve(hess, grad)
    w -= step
    if np.max(np.abs(step)) < 1e-8:
      break
  return w


def bag_of_words_baseline(train, evals, vocab_size: int, ridge: float = 1.0,
                          max_features: int = 1024) -> float:
  """Accuracy on `evals` of the bag-of-words logistic regression fitted on `train`, over the
  `max_features` token ids most frequent in the training replies (all of a small vocabulary)."""
  x_train = pair_features(train, vocab_size)
  use = np.argsort(-np.abs(x_train).sum(axis=0), kind="stable")[:max_features]
  w = fit_pair_logistic(x_train[:, use], ridge)
  return _accuracy(pair_features(evals, vocab_size)[:, use] @ w)


def distinct_tokens_baseline(arrays, vocab_size: int) -> float:
  """Accuracy of "the reply with more distinct tokens is chosen"."""
  def distinct(tokens, eoc, length):
    return (reply_token_counts(tokens, eoc, length, vocab_size) > 0).sum(axis=1)
  return _accuracy(distinct(arrays.chosen_tokens, arrays.chosen_eoc_index, arrays.chosen_reply_len)
                   - distinct(arrays.rejected_tokens, arrays.rejected_eoc_index,
                              arrays.rejected_reply_len).astype(np.float64))
