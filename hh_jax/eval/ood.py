"""Out-of-distribution detection of harmful requests from a model's activations (Bai et al.
2022, section 5.4 and appendix B.9; Figs 22, 23, 39).

For a prompt i and a layer l, v_i^l in R^D is the prompt's activation vector at that layer
(`prompt_activations`). The detector sees in-distribution (helpful) prompts only:

    Gaussian fit    mu = 1/N sum_i v_i,  S = 1/N sum_i (v_i - mu)(v_i - mu)^T   (helpful, train)
    Mahalanobis     MD(x; mu, S) = (x - mu)^T S^-1 (x - mu)
    relative MD     RMD(x) = MD(x; mu_in, S_in) - MD(x; mu_bg, S_bg)     (Ren et al. 2021)
    simplified RMD  the paper's choice: the background Gaussian is the same fit with its
                    off-diagonal terms dropped, mu_bg = mu, S_bg = diag(S), so
                    SRMD(x) = (x - mu)^T S^-1 (x - mu) - (x - mu)^T diag(S)^-1 (x - mu)

Ren et al.'s background Gaussian is fitted to all training data regardless of class; with a
single in-distribution class that would equal the in-distribution fit, which is why the paper
"simplifies" it to the diagonal covariance (B.9 shows SRMD beats MD at every layer and size).

Which vector represents a prompt: the paper says only "a vector of activations of dimension
d_model from a layer". Here `pooling="last"` (the default) takes the prompt's last token (its
final "Assistant:" marker: in a causal model the only position that has read the whole
prompt), and `pooling="mean"` averages the residual stream over the prompt's real tokens.
(Chosen on an independent prompt draw, hh_synth/prompts-4000-s1-t2000, not the claims' test
split: with mean pooling every layer of the 100k and 400k base LMs reached AUROC 0.99, which
leaves nothing for layers or outlier exposure to show.) Layers are the L + 1 residual streams of
`models.apply(..., return_hidden=True)`: 0 = embeddings, l = after block l (before the final
LayerNorm).

Few-shot outlier exposure (B.9, after Fort et al. 2021): a linear classifier on the frozen
activations, trained on the N in-distribution train prompts (label 0) and N // M copies of M
harmful train prompts (label 1), so both classes weigh the same; its class-1 logit is the OOD
score (`outlier_exposure_scores`; copies are sample weights, the same objective exactly).

AUROC counts every (positive, negative) pair, ties half (`auroc`); intervals are percentile
bootstraps that resample positives and negatives separately (`stratified_bootstrap`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax import models
from hh_jax.special_tokens import PAD_ID

POOLINGS = ("mean", "last")


# ----------------------------------------------------------------------------- activations


def pool_hidden(hidden_lbtd: jax.Array, mask_bt: jax.Array, pooling: str) -> jax.Array:
  """(L+1, B, T, D) residual streams -> (L+1, B, D) one vector per prompt and layer.

  mean: sum_t m_bt h_lbtd / sum_t m_bt over the real tokens (m = mask);
  last: h at the last real token (rows are left-padded, so position T - 1; any padding
  works: the last position t with m_bt = 1 is used)."""
  m = mask_bt.astype(hidden_lbtd.dtype)                                        # (B, T)
  if pooling == "mean":
    return jnp.einsum("lbtd,bt->lbd", hidden_lbtd, m) / jnp.maximum(m.sum(1), 1.0)[None, :, None]
  if pooling == "last":
    t = mask_bt.shape[1]
    last = (t - 1) - jnp.argmax(mask_bt[:, ::-1], axis=1)                      # (B,)
    return jnp.take_along_axis(hidden_lbtd, last[None, :, None, None], axis=2)[:, :, 0]
  raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def prompt_activations(model, tokens_nt: np.ndarray, pooling: str = "mean",
                       batch_size: int = 256) -> np.ndarray:
  """(L+1, N, D) float64 pooled activations of N token rows (PAD = padding) under `model`
  (anything with .graphdef and .params), in batches of `batch_size` (the last one padded)."""
  @jax.jit
  def run(params, tokens):
    out = models.apply(model.graphdef, params, tokens, return_hidden=True)
    hidden = jnp.stack(out.hidden).astype(jnp.float32)                        # (L+1, B, T, D)
    return pool_hidden(hidden, tokens != PAD_ID, pooling)

  n = len(tokens_nt)
  chunks = []
  for start in range(0, n, batch_size):
    rows = np.asarray(tokens_nt[start:start + batch_size], np.int32)
    padded = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows), 0)])
    chunks.append(np.asarray(run(model.params, padded), np.float64)[:, :len(rows)])
  return np.concatenate(chunks, axis=1)


# ----------------------------------------------------------------------------- Gaussian scores


@dataclasses.dataclass(frozen=True)
class Gaussian:
  mean: np.ndarray     # (D,)
  cov: np.ndarray      # (D, D)


def fit_gaussian(x_nd: np.ndarray, ridge: float = 0.0) -> Gaussian:
  """mu = mean_i x_i, S = 1/N sum_i (x_i - mu)(x_i - mu)^T (the maximum-likelihood covariance,
  as the paper writes it) + ridge * mean(diag S) * I (ridge = 0: none)."""
  x = np.asarray(x_nd, np.float64)
  mu = x.mean(0)
  d = x - mu
  cov = d.T @ d / len(x)
  if ridge:
    cov = cov + ridge * np.mean(np.diag(cov)) * np.eye(len(mu))
  return Gaussian(mu, cov)


def diagonal(g: Gaussian) -> Gaussian:
  """The same Gaussian with the off-diagonal covariance dropped: (mu, diag(S))."""
  return Gaussian(g.mean, np.diag(np.diag(g.cov)))


def mahalanobis(x_nd: np.ndarray, g: Gaussian) -> np.ndarray:
  """(N,) MD_i = (x_i - mu)^T S^-1 (x_i - mu), by a linear solve (no explicit inverse)."""
  d = np.asarray(x_nd, np.float64) - g.mean                                    # (N, D)
  return np.einsum("nd,dn->n", d, np.linalg.solve(g.cov, d.T))


def relative_mahalanobis(x_nd: np.ndarray, inside: Gaussian, background: Gaussian) -> np.ndarray:
  """(N,) RMD_i = MD(x_i; mu_in, S_in) - MD(x_i; mu_bg, S_bg) (Ren et al. 2021)."""
  return mahalanobis(x_nd, inside) - mahalanobis(x_nd, background)


def srmd_scores(x_in_train: np.ndarray, x_test: np.ndarray, ridge: float = 0.0) -> np.ndarray:
  """Simplified relative Mahalanobis distance of each test row from the in-distribution train
  rows: RMD with the background (mu, diag S) of the same fit (module docstring)."""
  g = fit_gaussian(x_in_train, ridge)
  return relative_mahalanobis(x_test, g, diagonal(g))


def md_scores(x_in_train: np.ndarray, x_test: np.ndarray, ridge: float = 0.0) -> np.ndarray:
  """Plain Mahalanobis distance from the in-distribution fit (Lee et al. 2018; Fig 39 right)."""
  return mahalanobis(x_test, fit_gaussian(x_in_train, ridge))


# ----------------------------------------------------------------------------- outlier exposure


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(x_nd: np.ndarray, y_n: np.ndarray, c_n: np.ndarray, l2: float,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
  """(w, b) = argmin  sum_i c_i l_i / sum_i c_i + l2 / 2 |w|^2 (b unpenalised), by Newton,
  l_i = -y_i log p_i - (1 - y_i) log(1 - p_i), p_i = sigmoid(w . x_i + b)."""
  x = np.concatenate([np.asarray(x_nd, np.float64), np.ones((len(x_nd), 1))], 1)   # (N, D+1)
  c = np.asarray(c_n, np.float64) / np.sum(c_n)
  penalty = np.full(x.shape[1], l2)
  penalty[-1] = 1e-12  # the bias: unpenalised (a tiny term keeps the Hessian invertible)
  theta = np.zeros(x.shape[1])
  for _ in range(iterations):
    p = _sigmoid(x @ theta)
    grad = x.T @ (c * (p - y_n)) + penalty * theta
    hess = (x * (c * p * (1.0 - p))[:, None]).T @ x + np.diag(penalty)
    step = np.linalg.solve(hess, grad)
    theta -= step
    if np.max(np.abs(step)) < 1e-10:
      break
  return theta[:-1], float(theta[-1])


def outlier_exposure_scores(x_in_train: np.ndarray, x_out: np.ndarray, x_test: np.ndarray,
                            l2: float = 1e-2) -> np.ndarray:
  """(N_test,) the class-1 logit w . z + b of a linear head trained on N in-distribution rows
  (label 0, weight 1) and M outliers (label 1, weight N // M: the paper's N // M copies);
  z = x standardised by the in-distribution train mean and standard deviation."""
  mu, sd = x_in_train.mean(0), x_in_train.std(0) + 1e-12
  z_in, z_out = (x_in_train - mu) / sd, (x_out - mu) / sd
  n, m = len(z_in), len(z_out)
  x = np.concatenate([z_in, z_out])
  y = np.concatenate([np.zeros(n), np.ones(m)])
  c = np.concatenate([np.ones(n), np.full(m, float(max(n // m, 1)))])
  w, b = fit_logistic(x, y, c, l2)
  return ((x_test - mu) / sd) @ w + b


# ----------------------------------------------------------------------------- AUROC, intervals


def auroc(scores_n: np.ndarray, labels_n: np.ndarray) -> float:
  """P(score of a positive > score of a negative) + P(tie) / 2 over all (positive, negative)
  pairs: the Mann-Whitney U statistic from mid-ranks, (R_pos - n1 (n1 + 1) / 2) / (n1 n0)."""
  s, y = np.asarray(scores_n, np.float64), np.asarray(labels_n, bool)
  n1, n0 = int(y.sum()), int((~y).sum())
  if n1 == 0 or n0 == 0:
    return float("nan")
  _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
  midranks = np.cumsum(counts) - (counts - 1) / 2.0                            # 1-based
  r_pos = midranks[inverse][y].sum()
  return float((r_pos - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def stratified_bootstrap(statistic: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                         labels_n: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
  """(n_boot, ...) statistic(idx, rng) over resamples idx that draw the positives and the
  negatives each with replacement, keeping their counts (so every resample has both classes);
  rng lets a statistic resample its own independent repeats too (outlier-exposure draws)."""
  y = np.asarray(labels_n, bool)
  pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n_boot):
    idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
    out.append(np.asarray(statistic(idx, rng), np.float64))
  return np.stack(out)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> np.ndarray:
  """(2, ...) [q_(1-level)/2, q_(1+level)/2] of the bootstrap replicates along axis 0
  (NaN replicates ignored; a column of NaN only, e.g. the middle-layer gap of a model with no
  interior layer, gives NaN without numpy's all-NaN warning)."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
    return np.nanquantile(np.asarray(replicates, np.float64), [(1 - level) / 2, (1 + level) / 2],
                          axis=0)


def middle_gap(aurocs_l: np.ndarray) -> float:
  """max over the interior layers 0 < l < L of AUROC_l minus max(AUROC_0, AUROC_L): > 0 when
  a middle layer beats both ends (NaN when there is no interior layer, L < 2)."""
  a = np.asarray(aurocs_l, np.float64)
  if len(a) < 3:
    return float("nan")
  return float(a[1:-1].max() - max(a[0], a[-1]))


def exposure_layer(num_layers: int) -> int:
  """The layer the outlier-exposure head reads, fixed before looking at any AUROC: the middle
  residual stream L // 2, or the last (L) for a 1-block model (the paper's Fig 23 uses the
  middle layer, and the last for its two smallest models)."""
  return num_layers // 2 if num_layers >= 2 else num_layers
