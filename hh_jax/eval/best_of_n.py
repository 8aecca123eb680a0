"""Best-of-n sampling: its KL from the base policy and unbiased estimates of its expected score.

Best-of-n draws n i.i.d. samples from a policy and keeps the one with the highest
selection score (a PM). Given N >= n samples per prompt we can estimate the expected
score of best-of-n for every n <= N at once, without bias, from order statistics:
sort the N samples by selection score, x_(1) <= ... <= x_(N). A uniformly random
n-subset has the sample of rank i as its maximum with probability

    w_i(n, N) = C(i - 1, n - 1) / C(N, n)        (i = n..N; 0 for i < n),

because the other n - 1 members must come from the i - 1 lower-ranked samples.
So E[best-of-n] is estimated by sum_i w_i x_(i), which equals the average over all
C(N, n) subsets of the subset maximum (the U-statistic), hence is unbiased.

The same weights give the evaluation score of the sample picked by a *different*
scorer ("select by the train PM, evaluate with the gold reward / test PM"): rank by
the selection score and weight the evaluation scores.

These are NumPy functions (evaluation-time, on host).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def best_of_n_kl(n):
  """KL(best-of-n || base) = log n - (n - 1) / n nats (exact for continuous, tie-free scores).

  The paper (following Stiennon et al. 2020) quotes the upper bound log n; e.g. for
  n = 64 the exact value is ln 64 - 63/64 = 3.1745 vs log 64 = 4.1589. Accepts an int
  or an array of ints >= 1.
  """
  n_arr = np.asarray(n, dtype=np.float64)
  if np.any(n_arr < 1):
    raise ValueError(f"best_of_n_kl: n must be >= 1, got {n}")
  out = np.log(n_arr) - (n_arr - 1.0) / n_arr
  return float(out) if out.ndim == 0 else out


def best_of_n_weights(num_samples: int, n: int) -> np.ndarray:
  """w_i = C(i - 1, n - 1) / C(N, n) for ascending ranks i = 1..N (N = num_samples); sums to 1.

  Computed in log space with math.lgamma, so N in the thousands is fine.
  """
  if not 1 <= n <= num_samples:
    raise ValueError(f"best_of_n_weights: need 1 <= n <= N, got n={n}, N={num_samples}")
  log_choose_total = math.lgamma(num_samples + 1) - math.lgamma(n + 1) - math.lgamma(num_samples - n + 1)
  weights = np.zeros(num_samples)
  for i in range(n, num_samples + 1):  # rank i (1-based) can be a max only if i >= n
    log_choose = math.lgamma(i) - math.lgamma(n) - math.lgamma(i - n + 1)
    weights[i - 1] = math.exp(log_choose - log_choose_total)
  return weights


def _check_ns(ns, num_samples: int) -> list[int]:
  ns = [int(n) for n in np.atleast_1d(ns)]
  bad = [n for n in ns if not 1 <= n <= num_samples]
  if bad:
    raise ValueError(f"best-of-n: every n must satisfy 1 <= n <= N = {num_samples}; bad n: {bad}")
  return ns


def expected_best_of_n(scores, n: int) -> float:
  """Unbiased estimate of E[max of n i.i.d. draws] from N >= n draws: sum_i w_i(n, N) x_(i).

  scores: (N,). n = 1 gives the sample mean, n = N the sample maximum.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 1:
    raise ValueError(f"expected_best_of_n: scores must be 1-D (N,), got shape {scores.shape}")
  (n,) = _check_ns(n, scores.shape[0])
  return float(np.sort(scores) @ best_of_n_weights(scores.shape[0], n))


def expected_best_of_n_curve(scores, ns: Sequence[int]) -> np.ndarray:
  """expected_best_of_n for many n at once, per prompt: scores (P, N) or (N,) -> (P, len(ns)) or (len(ns),).

  For (P, N) each row is one prompt's N samples; average over axis 0 for the curve.
  """
  scores = np.asarray(scores, dtype=np.float64)
  return best_of_n_selected_score(scores, scores, ns)


def _tie_averaged(selection_sorted: np.ndarray, evaluation_sorted: np.ndarray) -> np.ndarray:
  """Replace each evaluation score by the mean over its tie group in the (sorted) selection scores."""
  boundaries = np.concatenate([[True], np.diff(selection_sorted) != 0])
  group = np.cumsum(boundaries) - 1  # (N,) group id per sorted position
  sums = np.bincount(group, weights=evaluation_sorted)
  counts = np.bincount(group)
  return (sums / counts)[group]


def best_of_n_selected_score(selection_scores, evaluation_scores, ns: Sequence[int]) -> np.ndarray:
  """Unbiased E[eval score of the best-of-n sample chosen by the selection score], for each n.

    E_n = sum_i w_i(n, N) * e_[i],   e_[i] = evaluation score of the sample ranked i by selection.

  Ties in the selection score are broken uniformly at random, which by symmetry is the
  same as replacing each tied sample's evaluation score with its tie group's mean
  (done here, so the estimate does not depend on input order).

  Args:
    selection_scores: (P, N) or (N,) scores used to pick (e.g. the train PM).
    evaluation_scores: same shape, scores reported (e.g. gold reward, test PM).
    ns: the n values, each 1 <= n <= N.
  Returns:
    (P, len(ns)) (or (len(ns),) for 1-D input): per-prompt expected evaluation score.
  """
  sel = np.asarray(selection_scores, dtype=np.float64)
  ev = np.asarray(evaluation_scores, dtype=np.float64)
  if sel.shape != ev.shape or sel.ndim not in (1, 2):
    raise ValueError(
        "best_of_n_selected_score: selection_scores and evaluation_scores must have the same "
        f"shape (P, N) or (N,); got {sel.shape} and {ev.shape}")
  squeeze = sel.ndim == 1
  sel, ev = np.atleast_2d(sel), np.atleast_2d(ev)
  num_samples = sel.shape[1]
  ns = _check_ns(ns, num_samples)
  weights_kn = np.stack([best_of_n_weights(num_samples, n) for n in ns], axis=1)  # (N, K)
  order = np.argsort(sel, axis=1, kind="stable")
  sel_sorted = np.take_along_axis(sel, order, axis=1)
  ev_sorted = np.take_along_axis(ev, order, axis=1)
  ev_sorted = np.stack([_tie_averaged(s, e) for s, e in zip(sel_sorted, ev_sorted)])  # (P, N)
  out = ev_sorted @ weights_kn  # (P, K)
  return out[0] if squeeze else out


def pick_best(selection_scores) -> np.ndarray:
  """Index of the best-of-n sample per prompt: argmax_j selection_scores[p, j]; (P, n) -> (P,).

  For building rejection-sampling outputs; ties go to the lowest index.
  """
  return np.argmax(np.asarray(selection_scores), axis=-1)
