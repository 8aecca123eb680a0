"""Tests for hh_jax.eval.best_of_n and hh_jax.eval.elo against brute force and hand derivations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hh_jax.eval import best_of_n, elo

# ----------------------------------------------------------------------------- best-of-n KL


def test_best_of_n_kl_hand_values():
  # n = 1: log 1 - 0 = 0.  n = 64: ln 64 - 63/64 = 4.1588830834 - 0.984375 = 3.1745080834.
  assert best_of_n.best_of_n_kl(1) == 0.0
  assert best_of_n.best_of_n_kl(64) == pytest.approx(3.1745080834, abs=1e-9)
  # n = 2: ln 2 - 1/2 = 0.1931471806.
  np.testing.assert_allclose(best_of_n.best_of_n_kl([2, 64]), [0.1931471806, 3.1745080834], atol=1e-9)
  with pytest.raises(ValueError):
    best_of_n.best_of_n_kl(0)


def test_best_of_n_kl_monte_carlo():
  # Independent check: in quantile space the base is U(0,1) and best-of-n has density n u^(n-1),
  # so KL = E_{u ~ best-of-n}[log(n u^(n-1))]; sample u = U^(1/n) (max of n uniforms).
  rng = np.random.default_rng(0)
  for n in (4, 16):
    u = rng.uniform(size=200_000) ** (1.0 / n)
    kl_mc = np.mean(np.log(n) + (n - 1) * np.log(u))
    assert kl_mc == pytest.approx(best_of_n.best_of_n_kl(n), abs=0.01)


# ----------------------------------------------------------------------------- expected best-of-n


def _brute_best_of_n(scores, n):
  """Average over all n-subsets of the subset maximum."""
  return np.mean([max(c) for c in itertools.combinations(scores, n)])


def _brute_selected(sel, ev, n):
  """Average over all n-subsets of the eval score of the selected sample (ties: uniform)."""
  vals = []
  for subset in itertools.combinations(range(len(sel)), n):
    top = max(sel[j] for j in subset)
    vals.append(np.mean([ev[j] for j in subset if sel[j] == top]))
  return np.mean(vals)


def test_expected_best_of_n_matches_enumeration():
  rng = np.random.default_rng(1)
  scores = rng.normal(size=8)
  tied = rng.integers(0, 3, size=7).astype(float)  # many ties
  for s in (scores, tied):
    for n in range(1, len(s) + 1):
      assert best_of_n.expected_best_of_n(s, n) == pytest.approx(_brute_best_of_n(s, n), abs=1e-12)


def test_expected_best_of_n_endpoints_and_curve():
  scores = np.array([3.0, -1.0, 0.5, 2.0, 7.0])
  assert best_of_n.expected_best_of_n(scores, 1) == pytest.approx(scores.mean())
  assert best_of_n.expected_best_of_n(scores, 5) == pytest.approx(7.0)
  # N = 5, n = 4: weights C(i-1,3)/C(5,4) = [0,0,0,1/5,4/5] on the sorted [-1, 0.5, 2, 3, 7]:
  # 3/5 + 28/5 = 6.2.
  assert best_of_n.expected_best_of_n(scores, 4) == pytest.approx(6.2)
  two_prompts = np.stack([scores, -scores])
  # n = 1: mean (3 - 1 + 0.5 + 2 + 7) / 5 = 2.3; n = 5: the max (7, and 1 for the negated row).
  curve = best_of_n.expected_best_of_n_curve(two_prompts, [1, 4, 5])
  np.testing.assert_allclose(curve, [[2.3, 6.2, 7.0], [-2.3, _brute_best_of_n(-scores, 4), 1.0]])
  with pytest.raises(ValueError, match="1 <= n <= N"):
    best_of_n.expected_best_of_n(scores, 6)


def test_best_of_n_weights_large_n_are_stable():
  w = best_of_n.best_of_n_weights(5000, 64)
  assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0, abs=1e-9)
  assert np.all(w[:63] == 0.0)
  # The top-ranked sample is the max of a random 64-subset with probability 64 / 5000.
  assert w[-1] == pytest.approx(64 / 5000)


def test_selected_score_matches_enumeration_with_ties():
  rng = np.random.default_rng(2)
  sel = rng.integers(0, 4, size=(3, 7)).astype(float)  # selection scores with ties
  ev = rng.normal(size=(3, 7))
  ns = [1, 2, 3, 5, 7]
  got = best_of_n.best_of_n_selected_score(sel, ev, ns)
  want = np.array([[_brute_selected(sel[p], ev[p], n) for n in ns] for p in range(3)])
  np.testing.assert_allclose(got, want, atol=1e-12)
  # n = 1 is the mean of the evaluation scores, whatever the selection.
  np.testing.assert_allclose(got[:, 0], ev.mean(axis=1))


def test_pick_best():
  np.testing.assert_array_equal(best_of_n.pick_best([[0.1, 0.9, 0.3], [2.0, 2.0, 1.0]]), [1, 0])


# ----------------------------------------------------------------------------- Elo


def test_elo_conversions_hand_values():
  # 400 / ln 10 = 173.7177928.
  assert elo.ELO_PER_LOGIT == pytest.approx(173.7177928, abs=1e-6)
  assert float(elo.elo_from_pm_delta(1.0)) == pytest.approx(173.7177928, abs=1e-6)
  assert float(elo.win_fraction(0.0)) == 0.5
  # +400 Elo: 1 / (1 + 10^-1) = 10/11; -400 Elo: 1/11.
  np.testing.assert_allclose(elo.win_fraction([400.0, -400.0]), [10 / 11, 1 / 11])
  # A PM gap d converts to an Elo gap whose win fraction is sigmoid(d) (Bradley-Terry consistency).
  d = 0.7
  assert float(elo.win_fraction(elo.elo_from_pm_delta(d))) == pytest.approx(1 / (1 + math.exp(-d)))


def test_fit_elo_two_players_three_to_one():
  # logP(d) = 3 log sigmoid(d) + log sigmoid(-d); dlogP/dd = 3 (1 - s) - s = 0 -> s = 3/4 -> d = ln 3 logits
  # -> Elo gap = (400 / ln 10) ln 3 = 400 log10 3 = 190.8485019.
  # Fisher info: n p (1 - p) = 4 * 3/4 * 1/4 = 3/4 -> stderr = (400 / ln 10) / sqrt(3/4) = 200.5920.
  wins = np.array([[0, 3], [1, 0]])
  ratings, stderr = elo.fit_elo(wins, anchor=1)
  np.testing.assert_allclose(ratings, [400 * math.log10(3), 0.0], atol=1e-8)
  np.testing.assert_allclose(stderr, [elo.ELO_PER_LOGIT / math.sqrt(0.75), 0.0], atol=1e-8)
  assert float(elo.win_fraction(ratings[0] - ratings[1])) == pytest.approx(0.75)
  ratings0, _ = elo.fit_elo(wins, anchor=0)
  np.testing.assert_allclose(ratings0, [0.0, -400 * math.log10(3)], atol=1e-8)


TRUE_ELO = np.array([0.0, 100.0, -150.0, 300.0, 50.0])


def _expected_wins(games_per_pair):
  p = elo.win_fraction(TRUE_ELO[:, None] - TRUE_ELO[None, :])
  wins = games_per_pair * p
  np.fill_diagonal(wins, 0.0)
  return wins


def test_fit_elo_exact_on_expected_counts_and_stderr_shrinks():
  # With (fractional) expected win counts the score equation holds at the truth, so the MLE is exact;
  # the Fisher information is proportional to the number of games, so stderr scales as 1/sqrt(games).
  fit_small, se_small = elo.fit_elo(_expected_wins(100))
  fit_large, se_large = elo.fit_elo(_expected_wins(1600))
  np.testing.assert_allclose(fit_small, TRUE_ELO, atol=1e-6)
  np.testing.assert_allclose(fit_large, TRUE_ELO, atol=1e-6)
  np.testing.assert_allclose(se_large[1:], se_small[1:] / 4.0, rtol=1e-6)
  assert np.all(se_large[1:] > 0)


def test_fit_elo_recovers_simulated_ratings_within_3_stderr():
  rng = np.random.default_rng(3)
  games = 1000
  p = elo.win_fraction(TRUE_ELO[:, None] - TRUE_ELO[None, :])
  upper = np.triu(rng.binomial(games, p), 1)  # a beat b, for a < b
  wins = upper + np.tril(games - upper.T, -1)  # b beat a = the rest of those games
  ratings, stderr = elo.fit_elo(wins)
  assert np.all(np.abs(ratings - TRUE_ELO)[1:] < 3 * stderr[1:])
  assert np.all(stderr[1:] < 20.0)


def test_fit_elo_unbeaten_player_needs_ridge():
  wins = np.array([[0, 5, 2], [0, 0, 3], [0, 1, 0]])  # player 0 never loses
  with pytest.raises(ValueError, match="ridge"):
    elo.fit_elo(wins)
  ratings, stderr = elo.fit_elo(wins, ridge=1e-2)
  assert np.all(np.isfinite(ratings)) and np.all(np.isfinite(stderr))
  assert ratings[1] < 0 and ratings[2] < 0  # both lost to the anchor
  with pytest.raises(ValueError, match="square"):
    elo.fit_elo(np.zeros((2, 3)))
