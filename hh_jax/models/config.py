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
    dtype: compute dtype ("float32", or "bfloat16" on accelerators). Parameters are
      always stored in float32.
    dropout: dropout rate (0.0: off, as RLHF needs).
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

  def __post_init__(self):
    if self.d_model % self.n_heads:
      raise ValueError(
          f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
    for field in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
      if getattr(self, field) <= 0:
        raise ValueError(f"ModelConfig.{field} must be positive, got {getattr(self, field)}")
    if self.dtype not in ("float32", "bfloat16", "float16"):
      raise ValueError(f"ModelConfig.dtype must be float32/bfloat16/float16, got {self.dtype!r}")

  @property
  def ff_dim(self) -> int:
    return self.d_ff if self.d_ff is not None else 4 * self.d_model

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

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
  """Parameter count derived from the config alone (see the module docstring)."""
  d, f, L = cfg.d_model, cfg.ff_dim, cfg.n_layers
  attn = 4 * d * d + 4 * d
  mlp = 2 * d * f + f + d
  norms = 4 * d
  heads = 2 * (d + 1)
  total = L * (attn + mlp + norms) + 2 * d + heads
  if non_embedding:
    return total
  embed = cfg.vocab_size * d + cfg.max_len * d
  unembed = 0 if cfg.tie_embeddings else cfg.vocab_size * d
  return total + embed + unembed


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, lm_head: bool = False) -> float:
  """Matmul FLOPs of one forward pass, per token (PaLM appendix B convention).

      2 N_nonembed                 (every weight used once: multiply + add)
      + 4 L T d                    (q.k scores and attention-weighted values over T keys;
                                    the causal half is computed too, so it is counted)
      + 2 d V                      (LM head, only if logits are computed)

  A train step (forward + backward) costs 3x this.
  """
  flops = 2 * count_params(cfg) + 4 * cfg.n_layers * seq_len * cfg.d_model
  if lm_head:
    flops += 2 * cfg.d_model * cfg.vocab_size
  return float(flops)


__all__ = ["ModelConfig", "LADDER", "LAPTOP_LADDER", "PAPER_LADDER", "ladder_config",
           "count_params", "forward_flops_per_token"]
