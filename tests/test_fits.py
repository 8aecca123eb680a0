"""Tests for analysis.fits: known coefficients from synthetic data, hand examples, scipy cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from analysis import fits

# ----------------------------------------------------------------------------- linear


def test_linear_fit_exact_line():
  # y = 2 - 3x exactly: slope -3, intercept 2, R^2 = 1, zero stderr.
  x = np.array([0.0, 1.0, 2.5, 4.0])
  out = fits.linear_fit(x, 2.0 - 3.0 * x)
  assert out["slope"] == pytest.approx(-3.0) and out["intercept"] == pytest.approx(2.0)
  assert out["r2"] == pytest.approx(1.0) and out["slope_stderr"] == pytest.approx(0.0, abs=1e-12)


def test_linear_fit_matches_scipy_linregress():
  # Independent implementation of OLS slope, intercept, r and their standard errors.
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 5, size=30)
  y = 0.4 + 1.7 * x + rng.normal(size=30)
  out = fits.linear_fit(x, y)
  ref = scipy.stats.linregress(x, y)
  assert out["slope"] == pytest.approx(ref.slope)
  assert out["intercept"] == pytest.approx(ref.intercept)
  assert out["r2"] == pytest.approx(ref.rvalue**2)
  assert out["slope_stderr"] == pytest.approx(ref.stderr)
  assert out["intercept_stderr"] == pytest.approx(ref.intercept_stderr)


def test_linear_fit_bad_input():
  with pytest.raises(ValueError, match="y has length 2"):
    fits.linear_fit([1.0, 2.0, 3.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="non-finite"):
    fits.linear_fit([1.0, 2.0, 3.0], [1.0, np.nan, 2.0])
  with pytest.raises(ValueError, match="rank"):
    fits.linear_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- log-linear scaling law

# The paper's helpful-only law: acc = 0.72 + 0.007 ln(P / 1e11) + 0.015 ln(D / 8e4).
A, B, C, P0, D0 = 0.72, 0.007, 0.015, 1e11, 8e4
PARAMS = np.array([1e4, 1e5, 1e6, 1e7])
DATA = np.array([1e3, 4e3, 1.6e4, 6.4e4])


def _law(p, d):
  return A + B * np.log(p / P0) + C * np.log(d / D0)


def test_loglinear_fit_recovers_paper_law_exactly():
  p, d = [g.ravel() for g in np.meshgrid(PARAMS, DATA)]
  out = fits.loglinear_fit(_law(p, d), p, d, p0=P0, d0=D0)
  assert out["a"] == pytest.approx(A, abs=1e-10)
  assert out["b"] == pytest.approx(B, abs=1e-10)
  assert out["c"] == pytest.approx(C, abs=1e-10)
  assert out["r2"] == pytest.approx(1.0)
  # Without a reference point (P0 = D0 = 1) only a moves: a' = a - b ln 1e11 - c ln 8e4.
  plain = fits.loglinear_fit(_law(p, d), p, d)
  assert plain["a"] == pytest.approx(A - B * math.log(P0) - C * math.log(D0), abs=1e-9)
  assert plain["b"] == pytest.approx(B, abs=1e-10)
  with pytest.raises(ValueError, match="> 0"):
    fits.loglinear_fit([0.5, 0.6, 0.7], [1.0, 0.0, 2.0], [1.0, 2.0, 3.0])



def test_loglinear_curve_is_the_law():
  # The paper's law at a 100B model and 80k comparisons is a = 0.72; one e-fold more of each adds b + c.
  law = {"a": A, "b": B, "c": C, "p0": P0, "d0": D0}
  assert fits.loglinear_curve(law, P0, D0) == pytest.approx(A)
  assert fits.loglinear_curve(law, P0 * math.e, D0 * math.e) == pytest.approx(A + B + C)
  assert fits.loglinear_curve(law, PARAMS[:, None], DATA[None, :]) == pytest.approx(_law(PARAMS[:, None], DATA[None, :]))

def _noisy_records(seeds_per_cell=4, noise=0.004, seed=0):
  rng = np.random.default_rng(seed)
  return [{"params": p, "data": d, "seed": s, "acc": _law(p, d) + noise * rng.normal()}
          for p in PARAMS for d in DATA for s in range(seeds_per_cell)]


def test_bootstrap_loglinear_ci_shape_and_width():
  out = fits.bootstrap_loglinear(_noisy_records(), n_boot=300, seed=1, p0=P0, d0=D0)
  assert out["n_cells"] == 16
  for name in "abc":
    lo, hi = out["ci"][name]
    assert lo < out["fit"][name] < hi
    # A bootstrap over seeds should be about as wide as the OLS interval (+-1.96 stderr): within 2x.
    ols_width = 2 * 1.96 * out["fit"][f"{name}_stderr"]
    assert 0.5 < (hi - lo) / ols_width < 2.0
  lo, hi = out["ci"]["r2"]
  assert 0.0 < lo <= hi <= 1.0
  assert out["boot"]["a"].shape == (300,)


def test_cell_mean_fit_removes_seed_noise_that_cancels_within_cells():
  # Two seeds per cell at law +- e: each cell's mean is the law exactly, so the fit to the
  # seed means recovers (a, b, c) with R^2 = 1, while the run-level R^2 is
  # 1 - e^2 / (var(law) + e^2) (the runs' residuals are exactly +-e).
  e = 0.01
  records = [{"params": p, "data": d, "seed": s, "acc": _law(p, d) + (e if s else -e)}
             for p in PARAMS for d in DATA for s in (0, 1)]
  out = fits.bootstrap_loglinear(records, n_boot=50, seed=0, p0=P0, d0=D0)
  cells = out["fit_cells"]
  assert (cells["a"], cells["b"], cells["c"]) == pytest.approx((A, B, C), abs=1e-10)
  assert cells["r2"] == pytest.approx(1.0)
  # A balanced design: the run-level coefficients are the same, the R^2 is not.
  assert (out["fit"]["b"], out["fit"]["c"]) == pytest.approx((B, C), abs=1e-10)
  law = np.array([_law(p, d) for p in PARAMS for d in DATA])
  assert out["fit"]["r2"] == pytest.approx(1 - e**2 / (law.var() + e**2))
  # Resampling seeds with replacement can draw the same seed twice, so replicates fall below 1.
  lo, hi = out["ci"]["r2_cells"]
  assert 0.0 < lo <= hi < 1.0


def test_bootstrap_loglinear_ci_covers_truth():
  # Over 20 independent synthetic sweeps, the 95% CIs of a, b, c must contain the true law most
  # of the time. (Resampling k = 4 seeds per cell shrinks the variance by (k - 1) / k, so the
  # nominal 95% is really ~92%; require >= 80% of the 60 intervals.)
  covered = []
  for data_seed in range(20):
    out = fits.bootstrap_loglinear(_noisy_records(seed=100 + data_seed), n_boot=200, seed=data_seed,
                                   p0=P0, d0=D0)
    covered += [out["ci"][k][0] < v < out["ci"][k][1] for k, v in (("a", A), ("b", B), ("c", C))]
  assert np.mean(covered) >= 0.8, np.mean(covered)


def test_bootstrap_single_seed_cells_collapse_and_bad_record():
  recs = _noisy_records(seeds_per_cell=1)
  out = fits.bootstrap_loglinear(recs, n_boot=5, seed=0)
  lo, hi = out["ci"]["b"]
  assert lo == pytest.approx(hi) == pytest.approx(out["fit"]["b"])
  with pytest.raises(ValueError, match="record 1 is missing field"):
    fits.bootstrap_loglinear([recs[0], {"params": 1.0, "data": 2.0, "acc": 0.5}], n_boot=2)


def test_per_slice_fits():
  p, d = [g.ravel() for g in np.meshgrid(PARAMS, DATA)]
  out = fits.per_slice_fits(_law(p, d), p, d)
  assert sorted(out["by_params"]) == sorted(PARAMS.tolist())
  for fit in out["by_params"].values():  # acc vs ln D at fixed P: slope c
    assert fit["slope"] == pytest.approx(C) and fit["r2"] == pytest.approx(1.0)
  for fit in out["by_data"].values():  # acc vs ln P at fixed D: slope b
    assert fit["slope"] == pytest.approx(B)
  # A slice with one distinct x value is left out.
  out = fits.per_slice_fits([0.6, 0.7, 0.65], [1e5, 1e5, 1e6], [1e3, 1e4, 1e3])
  assert list(out["by_params"]) == [1e5] and list(out["by_data"]) == [1e3]


# ----------------------------------------------------------------------------- calibration


def test_calibration_bins_hand_example():
  # Chosen-minus-rejected gaps d = [-1, 1, 1, 3, -3, 3]; uniform bins on [0, 3]: edges 0, 1.5, 3.
  #   bin 0: |d| = 1 (x3), PM right on d > 0 -> [0, 1, 1] -> 2/3; predicted sigmoid(1) = 0.7310586
  #   bin 1: |d| = 3 (x3), [1, 0, 1] -> 2/3; predicted sigmoid(3) = 0.9525741
  #   ECE = 0.5 |2/3 - 0.7310586| + 0.5 |2/3 - 0.9525741| = 0.1751497
  out = fits.calibration_bins([-1.0, 1.0, 1.0, 3.0, -3.0, 3.0], n_bins=2, strategy="uniform")
  np.testing.assert_allclose(out["centers"], [1.0, 3.0])
  np.testing.assert_allclose(out["accuracy"], [2 / 3, 2 / 3])
  np.testing.assert_array_equal(out["counts"], [3, 3])
  np.testing.assert_allclose(out["predicted"], [0.7310586, 0.9525741], atol=1e-7)
  assert out["ece"] == pytest.approx(0.1751497, abs=1e-7)
  # A zero gap counts half.
  tie = fits.calibration_bins([0.0, 0.0], n_bins=1)
  np.testing.assert_allclose(tie["accuracy"], [0.5])


def test_calibration_bins_perfectly_calibrated_model():
  # Labels drawn from the PM's own Bradley-Terry probability: observed accuracy per bin must match
  # the prediction within binomial noise (4 stderr).
  rng = np.random.default_rng(0)
  d = rng.normal(scale=1.5, size=20_000)  # PM(A) - PM(B)
  first_preferred = (rng.uniform(size=d.shape) < 1 / (1 + np.exp(-d))).astype(float)
  out = fits.calibration_bins(d, n_bins=10, first_preferred=first_preferred)
  tol = 4 * np.sqrt(out["predicted"] * (1 - out["predicted"]) / out["counts"])
  assert np.all(np.abs(out["accuracy"] - out["predicted"]) < tol)
  assert out["ece"] < 0.02
  assert out["counts"].sum() == 20_000
  # The same pairs given as chosen-minus-rejected gaps give the same bins.
  chosen_minus_rejected = np.where(first_preferred == 1, d, -d)
  same = fits.calibration_bins(chosen_minus_rejected, n_bins=10)
  np.testing.assert_allclose(same["accuracy"], out["accuracy"])
  # An over-confident PM (scores doubled) predicts more than it achieves.
  over = fits.calibration_bins(2 * chosen_minus_rejected, n_bins=10)
  assert np.all(over["accuracy"][3:] < over["predicted"][3:]) and over["ece"] > 0.05


# ----------------------------------------------------------------------------- Gao et al. forms


def test_gao_fits_exact_and_peaks():
  d = np.linspace(0.0, 4.0, 9)  # includes d = 0 (the initial policy, gold 0)
  # RL form, alpha = 1, beta = 0.5: peak where 1 - 0.5 (ln d + 1) = 0 -> d* = e.
  gold_rl = d * (1.0 - 0.5 * np.log(np.where(d > 0, d, 1.0)))
  rl = fits.gao_rl_fit(d, gold_rl)
  assert rl["alpha"] == pytest.approx(1.0) and rl["beta"] == pytest.approx(0.5)
  assert rl["r2"] == pytest.approx(1.0) and rl["d_peak"] == pytest.approx(math.e)
  np.testing.assert_allclose(fits.gao_rl_curve(d, 1.0, 0.5), gold_rl)
  # BoN form, alpha = 1, beta = 0.25: peak at alpha / (2 beta) = 2.
  gold_bon = d * (1.0 - 0.25 * d)
  bon = fits.gao_bon_fit(d, gold_bon)
  assert bon["alpha"] == pytest.approx(1.0) and bon["beta"] == pytest.approx(0.25)
  assert bon["r2"] == pytest.approx(1.0) and bon["d_peak"] == pytest.approx(2.0)
  np.testing.assert_allclose(fits.gao_bon_curve(d, 1.0, 0.25), gold_bon)


def test_gao_fits_noisy_within_stderr():
  rng = np.random.default_rng(0)
  d = np.sqrt(np.linspace(0.0, 20.0, 60))
  rl = fits.gao_rl_fit(d, d * (0.8 - 0.3 * np.log(np.where(d > 0, d, 1.0))) + 0.02 * rng.normal(size=60))
  assert abs(rl["alpha"] - 0.8) < 3 * rl["alpha_stderr"] and abs(rl["beta"] - 0.3) < 3 * rl["beta_stderr"]
  bon = fits.gao_bon_fit(d, d * (0.8 - 0.1 * d) + 0.02 * rng.normal(size=60))
  assert abs(bon["alpha"] - 0.8) < 3 * bon["alpha_stderr"] and abs(bon["beta"] - 0.1) < 3 * bon["beta_stderr"]
  with pytest.raises(ValueError, match="sqrt"):
    fits.gao_bon_fit([-1.0, 1.0, 2.0], [0.0, 1.0, 2.0])


def test_calibration_bins_with_empty_bins_from_tied_gaps():
  """Many identical gaps make duplicate quantile edges, so some bins are empty; the
  returned arrays must still line up (one entry per non-empty bin)."""
  gap = np.concatenate([np.zeros(50), np.full(50, 2.0), np.linspace(0.1, 3.0, 20)])
  out = fits.calibration_bins(gap, n_bins=10)
  n = len(out["counts"])
  assert n < 10 and all(len(out[k]) == n for k in ("centers", "accuracy", "predicted"))
  assert out["counts"].sum() == len(gap)
  # Count-weighted bin means recover the overall means: mean |gap| and mean correctness
  # (every positive gap is "right", each of the 50 ties counts 0.5).
  assert np.sum(out["counts"] * out["centers"]) / len(gap) == pytest.approx(np.abs(gap).mean())
  assert np.sum(out["counts"] * out["accuracy"]) / len(gap) == pytest.approx((70 + 25) / 120)
