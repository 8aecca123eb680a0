"""Least-squares fits behind the paper-style figures: pure NumPy, no training code.

- `linear_fit`: y = intercept + slope * x, with standard errors.
- `loglinear_fit`, `loglinear_curve`, `bootstrap_loglinear`, `per_slice_fits`: the PM scaling law
  acc = a + b ln(P / P0) + c ln(D / D0)  (paper, helpful-only: 0.72 + 0.007 ln(P/1e11) + 0.015 ln(D/8e4)).
- `calibration_bins`: binned PM score gap vs observed accuracy beside 1/(1 + e^-d) (paper Fig 9).
- `gao_rl_fit`, `gao_bon_fit`: Gao et al. (2022) over-optimisation forms in d = sqrt(KL).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _as_1d(name: str, x, length: int | None = None) -> np.ndarray:
  if np.ndim(x) > 1:
    raise ValueError(f"{name} must be 1-D, got shape {np.shape(x)}")
  arr = np.atleast_1d(np.asarray(x, dtype=np.float64))
  if length is not None and arr.shape[0] != length:
    raise ValueError(f"{name} has length {arr.shape[0]}, expected {length}")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} contains non-finite values at indices {np.flatnonzero(~np.isfinite(arr))[:5].tolist()}")
  return arr


def _r2(y: np.ndarray, residual: np.ndarray) -> float:
  """R^2 = 1 - SS_res / SS_tot with SS_tot = sum (y - mean y)^2 (the centred form, also for no-intercept fits)."""
  ss_tot = float(np.sum((y - y.mean()) ** 2))
  ss_res = float(np.sum(residual**2))
  return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else float("nan"))


def _least_squares(design: np.ndarray, y: np.ndarray):
  """OLS: coef = argmin |y - X coef|^2; stderr = sqrt(diag(s^2 (X^T X)^-1)), s^2 = SS_res / (n - k).

  Returns (coef (k,), stderr (k,), r2). stderr is NaN when n <= k (no residual degrees of freedom).
  """
  n, k = design.shape
  if np.linalg.matrix_rank(design) < k:
    raise ValueError(f"least squares: design matrix has rank < {k} (need >= {k} distinct, non-collinear points)")
  coef, *_ = np.linalg.lstsq(design, y, rcond=None)
  residual = y - design @ coef
  if n > k:
    sigma2 = float(np.sum(residual**2)) / (n - k)
    stderr = np.sqrt(np.diag(sigma2 * np.linalg.inv(design.T @ design)))
  else:
    stderr = np.full(k, np.nan)
  return coef, stderr, _r2(y, residual)


# ----------------------------------------------------------------------------- straight lines


def linear_fit(x, y) -> dict[str, float]:
  """Ordinary least squares y = intercept + slope * x.

  slope_stderr = sqrt(s^2 / sum (x - mean x)^2) with s^2 = SS_res / (n - 2) (the OLS standard
  error; NaN with only 2 points). Returns slope, intercept, r2, slope_stderr, intercept_stderr, n.
  """
  x = _as_1d("x", x)
  y = _as_1d("y", y, len(x))
  coef, stderr, r2 = _least_squares(np.stack([np.ones_like(x), x], axis=1), y)
  return {"slope": float(coef[1]), "intercept": float(coef[0]), "r2": r2,
          "slope_stderr": float(stderr[1]), "intercept_stderr": float(stderr[0]), "n": len(x)}


# ----------------------------------------------------------------------------- PM scaling law


def loglinear_fit(acc, params, data, p0: float = 1.0, d0: float = 1.0) -> dict[str, float]:
  """Least squares acc = a + b ln(P / P0) + c ln(D / D0).

  P = non-embedding parameters, D = number of comparisons. P0 = D0 = 1 gives the plain
  a + b ln P + c ln D; the paper's reference point is P0 = 1e11, D0 = 8e4 (changing the
  reference changes a only). Returns a, b, c, their stderr (a_stderr, ...), r2, n, p0, d0.
  """
  acc = _as_1d("acc", acc)
  params = _as_1d("params", params, len(acc))
  data = _as_1d("data", data, len(acc))
  if np.any(params <= 0) or np.any(data <= 0) or p0 <= 0 or d0 <= 0:
    raise ValueError("loglinear_fit: params, data, p0 and d0 must all be > 0")
  design = np.stack([np.ones_like(acc), np.log(params / p0), np.log(data / d0)], axis=1)
  coef, stderr, r2 = _least_squares(design, acc)
  out = {name: float(v) for name, v in zip("abc", coef)}
  out.update({f"{name}_stderr": float(s) for name, s in zip("abc", stderr)})
  out.update({"r2": r2, "n": len(acc), "p0": float(p0), "d0": float(d0)})
  return out


def loglinear_curve(fit: Mapping[str, float], params, data) -> np.ndarray:
  """acc = a + b ln(P / P0) + c ln(D / D0) for a `loglinear_fit` result, at any (P, D) (broadcast)."""
  return (fit["a"] + fit["b"] * np.log(np.asarray(params, np.float64) / fit["p0"])
          + fit["c"] * np.log(np.asarray(data, np.float64) / fit["d0"]))


def _records_to_arrays(records: Sequence[Mapping[str, Any]]):
  fields = ("params", "data", "seed", "acc")
  rows = []
  for i, rec in enumerate(records):
    missing = [f for f in fields if f not in rec]
    if missing:
      raise ValueError(f"bootstrap_loglinear: record {i} is missing field(s) {missing}; needs {fields}")
    rows.append([float(rec["params"]), float(rec["data"]), float(rec["acc"])])
  if not rows:
    raise ValueError("bootstrap_loglinear: no records")
  arr = np.asarray(rows)
  return arr[:, 0], arr[:, 1], arr[:, 2]


def bootstrap_loglinear(records: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0,
                        p0: float = 1.0, d0: float = 1.0) -> dict[str, Any]:
  """Percentile-bootstrap 95% CIs for the `loglinear_fit` coefficients, resampling seeds within cells.

  Each record is one trained PM: {"params": P, "data": D, "seed": s, "acc": accuracy}.
  One bootstrap replicate redraws, independently in every (P, D) cell, as many records
  as that cell has, with replacement, and refits on all drawn records. This keeps the
  design (which sizes were trained) fixed and puts the seed-to-seed noise into the CI.
  A cell with a single seed contributes no resampling noise, so with one seed per cell
  the CIs collapse to the point estimate (report seeds beside the CI). With k seeds per
  cell the resampled variance is (k - 1)/k of the true one, so CIs are somewhat narrow
  for small k (about 92% coverage at k = 4).

  Also fits the seed means of the cells ("fit_cells"): the law describes a PM's *expected*
  accuracy at (P, D), and with k seeds per cell the run-level R^2 is capped by the
  seed-to-seed variance, which the mean of a cell divides by k. The coefficients agree with
  the run-level fit whenever every cell has the same number of seeds; the two R^2 differ.
  "r2_cells" is resampled with the rest (the mean of each replicate's drawn records).

  Returns {"fit": loglinear_fit on all records, "fit_cells": loglinear_fit on the cell means,
  "ci": {"a": (lo, hi), "b": ..., "c": ..., "r2": ..., "r2_cells": ...},
  "boot": {"a": (n_boot,) array, ...}, "n_cells": int}.
  """
  params, data, acc = _records_to_arrays(records)
  point = loglinear_fit(acc, params, data, p0, d0)
  cells: dict[tuple[float, float], list[int]] = {}
  for i, key in enumerate(zip(params, data)):
    cells.setdefault(key, []).append(i)
  cell_members = [np.asarray(m) for m in cells.values()]
  cell_p = np.array([params[m[0]] for m in cell_members])
  cell_d = np.array([data[m[0]] for m in cell_members])

  def cell_fit(draws: list[np.ndarray]) -> dict[str, float]:
    return loglinear_fit(np.array([acc[m].mean() for m in draws]), cell_p, cell_d, p0, d0)

  point_cells = cell_fit(cell_members)
  rng = np.random.default_rng(seed)
  boot = {k: np.empty(n_boot) for k in ("a", "b", "c", "r2", "r2_cells")}
  for j in range(n_boot):
    draws = [m[rng.integers(0, len(m), size=len(m))] for m in cell_members]
    idx = np.concatenate(draws)
    fit = loglinear_fit(acc[idx], params[idx], data[idx], p0, d0)
    for k in ("a", "b", "c", "r2"):
      boot[k][j] = fit[k]
    boot["r2_cells"][j] = cell_fit(draws)["r2"]
  ci = {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in boot.items()}
  return {"fit": point, "fit_cells": point_cells, "ci": ci, "boot": boot,
          "n_cells": len(cell_members)}


def per_slice_fits(acc, params, data) -> dict[str, dict[float, dict[str, float]]]:
  """Straight-line fits on each slice of the (P, D) grid (paper Fig 7/31/32, one line per size).

    by_params[P] = linear_fit(ln D, acc) over runs with that P (slope = d acc / d ln D),
    by_data[D]   = linear_fit(ln P, acc) over runs with that D (slope = d acc / d ln P).

  Slices with fewer than 2 distinct x values are left out.
  """
  acc = _as_1d("acc", acc)
  params = _as_1d("params", params, len(acc))
  data = _as_1d("data", data, len(acc))
  out: dict[str, dict[float, dict[str, float]]] = {"by_params": {}, "by_data": {}}
  for name, group, x in (("by_params", params, data), ("by_data", data, params)):
    for value in np.unique(group):
      sel = group == value
      if len(np.unique(x[sel])) >= 2:
        out[name][float(value)] = linear_fit(np.log(x[sel]), acc[sel])
  return out


# ----------------------------------------------------------------------------- calibration


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def calibration_bins(score_gap, n_bins: int = 10, first_preferred=None, strategy: str = "quantile") -> dict[str, Any]:
  """PM calibration (paper Fig 9): binned |score gap| vs observed accuracy, beside 1/(1 + e^-|d|).

  A Bradley-Terry PM predicts P(A preferred over B) = sigmoid(d), d = PM(A) - PM(B).
  By default `score_gap` is chosen-minus-rejected, d = PM(chosen) - PM(rejected), and the
  event scored is "the PM prefers the chosen response" (d > 0). To fold onto positive
  gaps, each pair is oriented so that the PM's preferred response comes first: the gap
  becomes |d| and the prediction sigmoid(|d|) is the PM's confidence that it is right;
  the outcome is 1 when the PM's preferred response is the labelled-preferred one
  (a tie d = 0 counts 0.5). If pairs are stored in another orientation, pass
  `first_preferred` (1 when the labeller preferred A, 0 when B) with d = PM(A) - PM(B).

  Bins: `strategy="quantile"` (equal counts of |d|) or `"uniform"` (equal widths on
  [0, max |d|]); empty bins are dropped.

  Returns arrays over non-empty bins: centers (mean |d| in the bin), accuracy,
  accuracy_stderr (binomial sqrt(acc (1 - acc) / count)), counts, predicted (mean of
  sigmoid(|d|) in the bin), and ece = sum_bins (count / N) |accuracy - predicted|.
  """
  gap = _as_1d("score_gap", score_gap)
  if first_preferred is None:
    label = np.ones_like(gap)
  else:
    label = _as_1d("first_preferred", first_preferred, len(gap))
    if not np.all((label == 0) | (label == 1)):
      raise ValueError("calibration_bins: first_preferred must be 0/1")
  if n_bins < 1 or len(gap) == 0:
    raise ValueError(f"calibration_bins: need n_bins >= 1 and some pairs, got n_bins={n_bins}, {len(gap)} pairs")
  abs_gap = np.abs(gap)
  pm_right = np.where(gap == 0, 0.5, ((gap > 0) == (label == 1)).astype(np.float64))
  if strategy == "quantile":
    edges = np.quantile(abs_gap, np.linspace(0.0, 1.0, n_bins + 1))
  elif strategy == "uniform":
    edges = np.linspace(0.0, abs_gap.max(), n_bins + 1)
  else:
    raise ValueError(f"calibration_bins: strategy must be 'quantile' or 'uniform', got {strategy!r}")
  bin_index = np.clip(np.searchsorted(edges[1:-1], abs_gap, side="right"), 0, n_bins - 1)
  counts = np.bincount(bin_index, minlength=n_bins)
  keep = counts > 0

  def per_bin_mean(values):
    return np.bincount(bin_index, weights=values, minlength=n_bins)[keep] / counts[keep]

  accuracy = per_bin_mean(pm_right)
  predicted = per_bin_mean(_sigmoid(abs_gap))
  centers = per_bin_mean(abs_gap)
  counts = counts[keep]      # after the last per_bin_mean: it indexes the full-length counts
  return {
      "centers": centers,
      "accuracy": accuracy,
      "accuracy_stderr": np.sqrt(accuracy * (1.0 - accuracy) / counts),
      "counts": counts,
      "predicted": predicted,
      "ece": float(np.sum(counts * np.abs(accuracy - predicted)) / counts.sum()),
  }


# ----------------------------------------------------------------------------- over-optimisation (Gao et al. 2022)


def _gao_fit(d, gold, shape_term) -> dict[str, float]:
  d = _as_1d("d", d)
  gold = _as_1d("gold", gold, len(d))
  if np.any(d < 0):
    raise ValueError("gao fit: d = sqrt(KL) must be >= 0")
  design = np.stack([d, -shape_term(d)], axis=1)
  coef, stderr, r2 = _least_squares(design, gold)
  alpha, beta = float(coef[0]), float(coef[1])
  return {"alpha": alpha, "beta": beta, "alpha_stderr": float(stderr[0]),
          "beta_stderr": float(stderr[1]), "r2": r2, "n": len(d)}


def _d_log_d(d):
  return d * np.log(np.where(d > 0, d, 1.0))  # d ln d -> 0 as d -> 0


def gao_rl_curve(d, alpha, beta):
  """Gao et al. RL form: gold(d) = d (alpha - beta ln d), d = sqrt(KL); gold(0) = 0."""
  d = np.asarray(d, dtype=np.float64)
  return alpha * d - beta * _d_log_d(d)


def gao_bon_curve(d, alpha, beta):
  """Gao et al. best-of-n form: gold(d) = d (alpha - beta d), d = sqrt(KL); gold(0) = 0."""
  d = np.asarray(d, dtype=np.float64)
  return d * (alpha - beta * d)


def gao_rl_fit(d, gold) -> dict[str, float]:
  """Fit gold = d (alpha - beta ln d) by linear least squares in (alpha, beta), no intercept.

  d = sqrt(KL(pi || pi0)); `gold` must be measured relative to the initial policy
  (gold(pi) - gold(pi0)), since the form has gold(0) = 0 - subtract it before calling.
  r2 is the centred R^2. Also returns d_peak = exp(alpha / beta - 1), where
  d gold / d d = alpha - beta (ln d + 1) = 0 (inf when beta <= 0: no peak).
  """
  out = _gao_fit(d, gold, _d_log_d)
  out["d_peak"] = float(np.exp(out["alpha"] / out["beta"] - 1.0)) if out["beta"] > 0 else float("inf")
  return out


def gao_bon_fit(d, gold) -> dict[str, float]:
  """Fit gold = d (alpha - beta d) by linear least squares in (alpha, beta), no intercept.

  d = sqrt(KL) with KL = log n - (n - 1)/n for best-of-n; gold relative to n = 1 (gold(0) = 0).
  r2 is the centred R^2. Also returns d_peak = alpha / (2 beta) (inf when beta <= 0).
  """
  out = _gao_fit(d, gold, lambda x: x**2)
  out["d_peak"] = out["alpha"] / (2.0 * out["beta"]) if out["beta"] > 0 else float("inf")
  return out


# ----------------------------------------------------------------------------- intervals over seeds

# Student's t 0.975 quantiles for 1..30 degrees of freedom (two-sided 95%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t975(df: int) -> float:
  """The 0.975 quantile of Student's t with `df` degrees of freedom (table to 30, then the
  Cornish-Fisher series z + (z^3 + z) / (4 df) + (5 z^5 + 16 z^3 + 3 z) / (96 df^2))."""
  if df < 1:
    raise ValueError(f"t975: need df >= 1, got {df}")
  if df <= len(_T975):
    return _T975[df - 1]
  z = _Z975
  return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval_values(si: dict, prefix: str = "") -> dict[str, float | None]:
  """A seed_interval as named values: {prefix or "value": mean, prefix_ci_low, prefix_ci_high}
  (the claims' statistic format; ci_low / ci_high without a prefix)."""
  ci = si["ci"] or [None, None]
  head = prefix or "value"
  low, high = (f"{prefix}_ci_low", f"{prefix}_ci_high") if prefix else ("ci_low", "ci_high")
  return {head: si["mean"], low: ci[0], high: ci[1]}


def seed_values(values, prefix: str = "") -> dict[str, float | None]:
  """interval_values of the seed_interval of values."""
  return interval_values(seed_interval(values), prefix)


def seed_interval(values) -> dict[str, Any]:
  """Mean of one statistic over independent seeds and its 95% t interval.

  mean = sum x_s / k, sd = sqrt(sum (x_s - mean)^2 / (k - 1)),
  ci = mean -+ t_{0.975, k-1} sd / sqrt(k). Non-finite values are left out; with one seed
  the interval is None (a single run says nothing about seed-to-seed variation).
  Returns {"mean", "ci": [lo, hi] or None, "sd", "n", "values"}.
  """
  x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
  if len(x) == 0:
    return {"mean": None, "ci": None, "sd": None, "n": 0, "values": []}
  mean = float(x.mean())
  if len(x) == 1:
    return {"mean": mean, "ci": None, "sd": None, "n": 1, "values": x.tolist()}
  sd = float(x.std(ddof=1))
  half = t975(len(x) - 1) * sd / np.sqrt(len(x))
  return {"mean": mean, "ci": [mean - half, mean + half], "sd": sd, "n": len(x), "values": x.tolist()}
