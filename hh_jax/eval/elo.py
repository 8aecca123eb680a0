"""Elo: conversion from PM-score gaps, win fractions, and the maximum-likelihood Elo fit.

Sign convention: `delta_elo = E_self - E_other` everywhere in this module, so a
positive delta means "self is stronger" and

    win_fraction(delta_elo) = 1 / (1 + 10^(-delta_elo / 400)) = P(self beats other).

The paper writes the same thing as WinFrac = 1 / (1 + 10^(dElo / 400)) with
dElo = E_other - E_self. Elo is a logistic log-odds scale: r = (ln 10 / 400) * E is in
logits (nats of odds), so one logit = 400 / ln 10 = 173.7 Elo, which is why a PM
score gap (itself a Bradley-Terry logit) converts as dElo = 174 * dPM.
"""

from __future__ import annotations

import math

import numpy as np

ELO_PER_LOGIT = 400.0 / math.log(10.0)  # 173.72...


def elo_from_pm_delta(delta_pm):
  """dElo = (400 / ln 10) * dPM: a PM score gap (a logit) in Elo points."""
  return ELO_PER_LOGIT * np.asarray(delta_pm, dtype=np.float64)


def win_fraction(delta_elo):
  """P(self beats other) = 1 / (1 + 10^(-delta_elo / 400)), delta_elo = E_self - E_other."""
  return 1.0 / (1.0 + np.power(10.0, -np.asarray(delta_elo, dtype=np.float64) / 400.0))


def _strongly_connected(beats: np.ndarray) -> bool:
  """True when every player reaches every other along 'a beat b' edges (beats: (M, M) bool)."""
  m = beats.shape[0]
  for adjacency in (beats, beats.T):
    seen = np.zeros(m, bool)
    seen[0] = True
    frontier = [0]
    while frontier:
      nxt = np.flatnonzero(adjacency[frontier].any(axis=0) & ~seen)
      seen[nxt] = True
      frontier = list(nxt)
    if not seen.all():
      return False
  return True


def _log_likelihood(r, wins, ridge):
  diff = r[:, None] - r[None, :]  # (M, M) r_a - r_b
  log_sig = -np.logaddexp(0.0, -diff)  # log sigmoid(r_a - r_b), stable
  return float(np.sum(wins * log_sig) - 0.5 * ridge * np.sum(r**2))


def fit_elo(wins, anchor: int = 0, ridge: float = 0.0, tol: float = 1e-10, max_iter: int = 200):
  """Maximum-likelihood Elo ratings from pairwise win counts (the paper's Elo fit, Sec. 5).

  Maximises the concave log-likelihood

    log P(r) = sum_{a, b} wins[a, b] * log sigmoid(r_a - r_b) - (ridge / 2) * sum_a r_a^2,

  with r = (ln 10 / 400) * E (logits) and the anchor's r fixed to 0, by Newton's
  method with a backtracking line search. With n_ab = wins[a, b] + wins[b, a] and
  p_ab = sigmoid(r_a - r_b):

    d logP / d r_a = sum_b (wins[a, b] - n_ab p_ab) - ridge r_a
    d2 logP / d r_a d r_b = n_ab p_ab (1 - p_ab)  (a != b),   diagonal = -sum_b n_ab p_ab (1 - p_ab) - ridge.

  Standard errors are sqrt(diag((-H)^{-1})) over the non-anchor players (the inverse
  observed Fisher information with the anchor removed), in Elo; the anchor's is 0.

  A finite MLE exists only when the 'a beat b' graph is strongly connected (Zermelo
  1929; Ford 1957): a player who never loses (or never wins) would go to +-infinity.
  With ridge = 0 that case raises ValueError; pass ridge > 0 (a Gaussian prior
  N(0, 1/ridge) in logits on each rating relative to the anchor; e.g. ridge = 1e-2 is a
  prior sd of ~1700 Elo, which moves well-measured ratings negligibly) to fit anyway.

  Args:
    wins: (M, M) non-negative counts, wins[a, b] = number of times a beat b (diagonal ignored).
    anchor: the player whose Elo is fixed to 0.
    ridge: L2 penalty in logit units (see above).
  Returns:
    elo (M,), stderr (M,), both in Elo points.
  """
  wins = np.array(wins, dtype=np.float64)
  if wins.ndim != 2 or wins.shape[0] != wins.shape[1]:
    raise ValueError(f"fit_elo: wins must be a square (M, M) array, got shape {wins.shape}")
  if not np.all(np.isfinite(wins)) or np.any(wins < 0):
    raise ValueError("fit_elo: wins must be finite and non-negative")
  m = wins.shape[0]
  if not 0 <= anchor < m:
    raise ValueError(f"fit_elo: anchor {anchor} out of range for {m} players")
  np.fill_diagonal(wins, 0.0)
  if m == 1:
    return np.zeros(1), np.zeros(1)
  if ridge <= 0 and m > 1 and not _strongly_connected(wins > 0):
    raise ValueError(
        "fit_elo: the maximum-likelihood Elo is infinite because some group of players never "
        "loses (or never wins) against the rest; pass ridge > 0 to regularise")
  free = np.array([a for a in range(m) if a != anchor], dtype=int)
  games = wins + wins.T  # (M, M) n_ab

  def grad_hess(r):
    p = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))  # (M, M) p_ab
    grad = np.sum(wins - games * p, axis=1) - ridge * r
    curv = games * p * (1.0 - p)  # (M, M)
    neg_hess = np.diag(np.sum(curv, axis=1) + ridge) - curv  # -H, positive (semi)definite
    return grad[free], neg_hess[np.ix_(free, free)]

  r = np.zeros(m)
  for _ in range(max_iter):
    grad, neg_hess = grad_hess(r)
    step = np.linalg.solve(neg_hess, grad)
    current = _log_likelihood(r, wins, ridge)
    scale = 1.0
    while scale > 1e-8:  # backtracking: Newton on a concave function, keep only ascent steps
      trial = r.copy()
      trial[free] += scale * step
      if _log_likelihood(trial, wins, ridge) >= current - 1e-12:
        break
      scale *= 0.5
    r = trial
    if np.max(np.abs(scale * step)) < tol:
      break
  _, neg_hess = grad_hess(r)
  stderr = np.zeros(m)
  stderr[free] = np.sqrt(np.diag(np.linalg.inv(neg_hess)))
  return ELO_PER_LOGIT * r, ELO_PER_LOGIT * stderr
