"""Model configuration, the named size ladder, and the analytic parameter count.

Parameter counts follow the paper (Kaplan et al. 2020 convention): "non-embedding"
excludes the token and position embeddings. With the LM head tied to the token
embedding (the default), the only non-embedding parameters are in the blocks, the
final norm and the two scalar heads:

    per block  = attn: 4 d^2 + 4 d   (q, k, v, o kernels and biases)
               + mlp:  2 d f + f + d (up, down kernels and biases)
               + 2 LayerNorms: 4 d
    total      = L * block + 2 d (final norm) + 2 (d + 1) (score and value heads)

so N ~ 12 L d^2 for f = 4d, as in the paper's model family.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


_DTYPES = ("float32", "bfloat16", "float16")
_CHOICES = {"dtype": _DTYPES, "param_dtype": _DTYPES, "positions": ("learned", "rotary"),
            "norm": ("layernorm", "rmsnorm"), "activation": ("gelu_tanh", "gelu", "silu", "relu")}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of the decoder-only transformer.

  Attributes:
    vocab_size: number of token ids (the tokenizer's `vocab_size`).
    d_model: residual width d.
    n_layers: number of pre-LayerNorm blocks L.
    n_heads: attention heads; head_dim = d_model // n_heads.
    d_ff: MLP hidden width f (4 d by default).
    max_len: number of learned absolute positions (the longest sequence).
    tie_embeddings: LM head = token embedding transposed (no extra parameters).
    dtype: compute dtype ("float32", or "bfloat16" on accelerators).
    dropout: dropout rate (0.0: off, as RLHF needs).

  Architecture options. The defaults are the GPT-2-style ladder model above; together the
  options cover GPT-2, GPT-NeoX (Pythia) and the Llama family (Llama 3.x, Qwen2.5,
  SmolLM2) as one model (`hh_jax.models.hf` maps each checkpoint's config.json onto them):
    positions: "learned" absolute embeddings (GPT-2), or "rotary" (RoPE on q and k).
    rotary_fraction: the fraction of each head's dims that RoPE rotates (GPT-NeoX rotary_pct).
    rope_theta: RoPE base; inv_freq_i = theta^(-2i / rotary_dims).
    rope_scaling: HF `rope_parameters` beyond theta, as sorted (key, value) pairs, e.g.
      (("factor", 32.0), ("rope_type", "llama3"), ...); () is plain RoPE. Types: linear,
      llama3, yarn (`hh_jax.models.rope`).
    norm: "layernorm" (GPT-2, NeoX) or "rmsnorm" (Llama); norm_eps its epsilon.
    activation: "gelu_tanh" (GPT-2's gelu_new), "gelu" (exact erf; NeoX), "silu", "relu".
    gated_mlp: MLP(x) = W_down (act(W_gate x) * W_up x) (SwiGLU with silu), else W2 act(W1 x).
    parallel_residual: h' = h + Attn(LN1(h)) + MLP(LN2(h)) (GPT-NeoX), else sequential.
    n_kv_heads: key/value heads for grouped-query attention (None: n_heads).
    d_head: per-head width (None: d_model // n_heads).
    qkv_bias, attn_out_bias, mlp_bias: whether those projections have biases.
    param_dtype: parameter storage dtype ("float32" for training; "bfloat16" to run a large
      checkpoint as stored).
  """

  vocab_size: int = 259
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4
  d_ff: int | None = None
  max_len: int = 64
  tie_embeddings: bool = True
  dtype: str = "float32"
  dropout: float = 0.0
  positions: str = "learned"
  rotary_fraction: float = 1.0
  rope_theta: float = 10000.0
  rope_scaling: tuple = ()
  norm: str = "layernorm"
  norm_eps: float = 1e-6
  activation: str = "gelu_tanh"
  gated_mlp: bool = False
  parallel_residual: bool = False
  n_kv_heads: int | None = None
  d_head: int | None = None
  qkv_bias: bool = True
  attn_out_bias: bool = True
  mlp_bias: bool = True
  param_dtype: str = "float32"

  def __post_init__(self):
    # model.json stores rope_scaling as a list of [key, value] lists (or a dict): keep it
    # a hashable tuple, since the config is part of the static graphdef.
    scaling = self.rope_scaling.items() if isinstance(self.rope_scaling, dict) else self.rope_scaling
    object.__setattr__(self, "rope_scaling", tuple(sorted((str(k), v) for k, v in scaling)))
    if self.d_head is None and self.d_model % self.n_heads:
      raise ValueError(
          f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
    if self.n_heads % self.kv_heads:
      raise ValueError(f"ModelConfig.n_heads={self.n_heads} is not a multiple of "
                       f"n_kv_heads={self.n_kv_heads}")
    for field, allowed in _CHOICES.items():
      if getattr(self, field) not in allowed:
        raise ValueError(f"ModelConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}")
    if not 0 < self.rotary_fraction <= 1:
      raise ValueError(f"ModelConfig.rotary_fraction must be in (0, 1], got {self.rotary_fraction}")
    for field in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
      if getattr(self, field) <= 0:
        raise ValueError(f"ModelConfig.{field} must be positive, got {getattr(self, field)}")

  @property
  def ff_dim(self) -> int:
    return self.d_ff if self.d_ff is not None else 4 * self.d_model

  @property
  def head_dim(self) -> int:
    return self.d_head if self.d_head is not None else self.d_model // self.n_heads

  @property
  def kv_heads(self) -> int:
    return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

  @property
  def rotary_dims(self) -> int:
    """Dims of each head that RoPE rotates: int(head_dim * rotary_fraction), as HF rounds."""
    return int(self.head_dim * self.rotary_fraction)

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self) -> Any:
    return jnp.dtype(self.param_dtype)

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)


# Named ladder: name -> (n_layers, d_model, n_heads). Names give the nominal
# non-embedding parameter count, as the paper names its models.
LADDER: dict[str, tuple[int, int, int]] = {
    # Laptop rungs: ~1e3 .. ~3e6 non-embedding parameters (3+ orders of magnitude).
    "1k": (1, 8, 2), "6k": (2, 16, 2), "25k": (2, 32, 4), "100k": (2, 64, 4),
    "400k": (2, 128, 4), "800k": (4, 128, 4), "3M": (6, 192, 6),
    # The paper's seven shapes (N ~ 12 L d^2), head_dim 64..128.
    "13M": (4, 512, 8), "42M": (6, 768, 12), "197M": (10, 1280, 10), "810M": (16, 2048, 16),
    "2.7B": (32, 2560, 20), "13B": (40, 5120, 40), "52B": (64, 8192, 64),
}
_FIRST_PAPER_RUNG = list(LADDER).index("13M")
LAPTOP_LADDER = dict(list(LADDER.items())[:_FIRST_PAPER_RUNG])
PAPER_LADDER = dict(list(LADDER.items())[_FIRST_PAPER_RUNG:])


def ladder_config(name: str, *, vocab_size: int, max_len: int, **overrides) -> ModelConfig:
  """The ModelConfig of a named rung (e.g. "100k", "52B")."""
  if name not in LADDER:
    raise KeyError(f"unknown model size {name!r}; known sizes: {', '.join(LADDER)}")
  n_layers, d_model, n_heads = LADDER[name]
  return ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                     n_heads=n_heads, max_len=max_len, **overrides)


def count_params(cfg: ModelConfig, non_embedding: bool = True) -> int:
  """Parameter count derived from the config alone (see the module docstring).

  With the architecture options (n = n_heads, k = kv_heads, h = head_dim):
      attn  = d (n + 2k) h + (n + 2k) h [qkv_bias] + n h d + d [attn_out_bias]
      mlp   = (3 if gated else 2) d f + (2f if gated else f) + d   [biases if mlp_bias]
      norm  = 2d (LayerNorm: scale and bias) or d (RMSNorm)
  and embeddings V d (+ max_len d for learned positions; + V d for an untied head).
  """
  d, f, L, h = cfg.d_model, cfg.ff_dim, cfg.n_layers, cfg.head_dim
  qkv = (cfg.n_heads + 2 * cfg.kv_heads) * h
  attn = d * qkv + qkv * cfg.qkv_bias + cfg.n_heads * h * d + d * cfg.attn_out_bias
  n_in = 2 if cfg.gated_mlp else 1
  mlp = (n_in + 1) * d * f + (n_in * f + d) * cfg.mlp_bias
  norm = 2 * d if cfg.norm == "layernorm" else d
  heads = 2 * (d + 1)
  total = L * (attn + mlp + 2 * norm) + norm + heads
  if non_embedding:
    return total
  embed = cfg.vocab_size * d + (cfg.max_len * d if cfg.positions == "learned" else 0)
  unembed = 0 if cfg.tie_embeddings else cfg.vocab_size * d
  return total + embed + unembed


# Query rows per block of the transformer's causal blocked attention; None: always dense.
CAUSAL_BLOCK: int | None = 256


def computed_keys(seq_len: int) -> float:
  """Keys each of seq_len queries is scored against, on average, by the transformer's
  attention over seq_len keys: all T when dense; C (m + 1) / 2 when T = m C is computed by
  causal blocks of C = CAUSAL_BLOCK rows (m >= 2), query block i reading keys [0, (i+1) C)."""
  c = CAUSAL_BLOCK
  if c is None or seq_len < 2 * c or seq_len % c:
    return float(seq_len)
  return c * (seq_len // c + 1) / 2


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, lm_head: bool = False) -> float:
  """Matmul FLOPs of one forward pass, per token (PaLM appendix B convention).

      2 N_nonembed                 (every weight used once: multiply + add)
      + 4 L S n h                  (q.k scores and attention-weighted values over the
                                    S = computed_keys(T) keys computed, masked ones included)
      + 2 d V                      (LM head, only if logits are computed)

  A train step (forward + backward) costs 3x this.
  """
  keys = computed_keys(seq_len)
  flops = 2 * count_params(cfg) + 4 * cfg.n_layers * keys * cfg.n_heads * cfg.head_dim
  if lm_head:
    flops += 2 * cfg.d_model * cfg.vocab_size
  return float(flops)


__all__ = ["ModelConfig", "LADDER", "LAPTOP_LADDER", "PAPER_LADDER", "ladder_config",
           "count_params", "computed_keys", "forward_flops_per_token"]
