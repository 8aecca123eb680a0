"""Rotary position embeddings (Su et al. 2021) with the scaling variants of HF checkpoints.

    R           = rotary dims of a head = int(head_dim * rotary_fraction)
    inv_freq_i  = theta^(-2i / R),  i = 0 .. R/2 - 1       (then rescaled, see below)
    angle_bti   = pos_bt * inv_freq_i
    cos, sin    = a cos([angle, angle]), a sin([angle, angle])     (B, T, R); a = attention factor
    rope(x)     = [x_r * cos + rotate_half(x_r) * sin, x_pass],  rotate_half([u1, u2]) = [-u2, u1]

x_r is the first R dims of each head and x_pass the rest (GPT-NeoX's partial rotary; Llama
rotates all dims). This is the "rotate half" layout that GPT-NeoX, Llama and Qwen2 checkpoints
use in Hugging Face format. Scalings of inv_freq (`ModelConfig.rope_scaling`, HF's
`rope_parameters`):

    linear   inv_freq / factor
    llama3   Llama 3.1+: wavelengths 2 pi / inv_freq above original_max / low_freq_factor are
             divided by factor, below original_max / high_freq_factor kept, and in between
             interpolated with s = (original_max / wavelen - low) / (high - low):
             (1 - s) inv_freq / factor + s inv_freq
    yarn     YaRN (Peng et al. 2023): a linear ramp between interpolated (inv_freq / factor) and
             original frequencies over the dims between beta_fast and beta_slow rotations, and
             a = 0.1 ln(factor) + 1 (or the configured attention_factor / mscale ratio)

Tables are computed in float32, as transformers computes them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from hh_jax.models.config import ModelConfig

ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def _base_inv_freq(theta: float, dims: int) -> np.ndarray:
  """theta^(-2i / R) for i < R/2, float32 -> (R/2,)."""
  exponents = np.arange(0, dims, 2).astype(np.float32) / np.float32(dims)
  return (np.float32(1.0) / np.float32(theta) ** exponents).astype(np.float32)


def _llama3(inv_freq: np.ndarray, p: dict) -> np.ndarray:
  """Llama 3.1 frequency scaling (module docstring)."""
  factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
  old_len = p["original_max_position_embeddings"]
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def _yarn_attention_factor(p: dict, factor: float) -> float:
  """a = 0.1 mscale ln(factor) + 1 (ratio with mscale_all_dim when both are given)."""
  if p.get("attention_factor") is not None:
    return float(p["attention_factor"])

  def mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

  if p.get("mscale") and p.get("mscale_all_dim"):
    return float(mscale(factor, p["mscale"]) / mscale(factor, p["mscale_all_dim"]))
  return mscale(factor)


def _yarn(theta: float, dims: int, p: dict, max_len: int) -> tuple[np.ndarray, float]:
  """YaRN inverse frequencies and attention factor (module docstring)."""
  old_len = p["original_max_position_embeddings"]
  factor = p.get("factor") or max_len / old_len
  beta_fast, beta_slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

  def correction_dim(rotations):
    return dims * math.log(old_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

  low, high = correction_dim(beta_fast), correction_dim(beta_slow)
  if p.get("truncate", True):
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dims - 1)
  high = high + 0.001 if low == high else high
  ramp = np.clip((np.arange(dims // 2, dtype=np.float32) - low) / (high - low), 0, 1)
  keep = (1 - ramp).astype(np.float32)                     # 1: original frequency
  pos_freqs = np.float32(theta) ** (np.arange(0, dims, 2).astype(np.float32) / np.float32(dims))
  inv_freq = (1.0 / (factor * pos_freqs)) * (1 - keep) + (1.0 / pos_freqs) * keep
  return inv_freq.astype(np.float32), _yarn_attention_factor(p, factor)


def inverse_frequencies(cfg: ModelConfig) -> tuple[np.ndarray, float]:
  """(inv_freq (R/2,) float32, attention factor a) for the config's RoPE and its scaling."""
  p = dict(cfg.rope_scaling)
  kind = p.get("rope_type", p.get("type", "default"))
  if kind not in ROPE_TYPES:
    raise ValueError(f"RoPE scaling {kind!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
  dims = cfg.rotary_dims
  if kind == "yarn":
    return _yarn(cfg.rope_theta, dims, p, cfg.max_len)
  inv_freq = _base_inv_freq(cfg.rope_theta, dims)
  if kind == "linear":
    inv_freq = (inv_freq / np.float32(p["factor"])).astype(np.float32)
  elif kind == "llama3":
    inv_freq = _llama3(inv_freq, p)
  return inv_freq, 1.0


def rope_tables(cfg: ModelConfig, positions_bt: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """cos, sin (B, T, R) in the compute dtype for integer positions (B, T)."""
  inv_freq, factor = inverse_frequencies(cfg)
  angle = positions_bt.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)   # (B, T, R/2)
  angle = jnp.concatenate([angle, angle], axis=-1)                              # (B, T, R)
  dtype = cfg.compute_dtype
  return (jnp.cos(angle) * factor).astype(dtype), (jnp.sin(angle) * factor).astype(dtype)


def apply_rope(x_btnh: jnp.ndarray, cos_btr: jnp.ndarray, sin_btr: jnp.ndarray) -> jnp.ndarray:
  """rope(x) (module docstring) on the first R dims of every head of x (B, T, N, H)."""
  r = cos_btr.shape[-1]
  x_rot, x_pass = x_btnh[..., :r], x_btnh[..., r:]
  u1, u2 = x_rot[..., :r // 2], x_rot[..., r // 2:]
  rotated = jnp.concatenate([-u2, u1], axis=-1)
  cos, sin = cos_btr[:, :, None], sin_btr[:, :, None]                            # (B, T, 1, R)
  return jnp.concatenate([x_rot * cos + rotated * sin, x_pass], axis=-1)
