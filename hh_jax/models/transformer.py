"""The decoder-only transformer shared by LMs, preference models, policies and value functions.

Architecture (GPT-2 style, as in Askell et al. 2021 / Bai et al. 2022):

    h_0 = E[tokens] + P[positions]                     learned absolute positions
    a   = h + Attn(LN(h))                              pre-LayerNorm blocks
    h'  = a + MLP(LN(a)),   MLP(x) = W2 gelu(W1 x)
    out = LN_f(h_L)
    logits = out E^T                                   LM head tied to the token embedding
    score  = w_s . out[b, eoc_index[b]] + b_s          PM head at the end-of-context token
    value  = w_v . out[b, t] + b_v                     per-token value head (PPO)

Positions are counted over real (non-pad) tokens only, `pos = cumsum(mask) - 1`, so a
left-padded prompt (used for batched generation) gets exactly the positions it would
have unpadded, and right padding changes nothing before it. Attention is causal over
key slots and never attends to padding keys (a query always sees itself, so rows of
padding stay finite).

The same `__call__` serves the plain forward pass and KV-cached decoding: with a cache
the new keys/values are written at slots [index, index + T) of a fixed-size buffer and
queries attend over the whole buffer, so prefill (T = prompt length) and a decode step
(T = 1) have fixed shapes and run inside `lax.scan` / `while_loop` under `jit`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from hh_jax.models.config import ModelConfig


class KVCache(NamedTuple):
  """Fixed-shape decoding state for all layers.

  k, v:     tuples of L arrays (B, N, S, H), keys and values per layer, S = cache length
            (heads before slots: the layout the attention einsums read without a transpose).
            One buffer per layer, not one (L, ...) array: a decode step then writes each
            layer's new key/value in place and its attention reads that buffer directly,
            where slicing layer i out of a stacked array copied the layer's whole cache
            (2 x 3 MB per layer per token at 3M, a third of the decode step).
  valid:    (B, S) bool, which slots hold real (non-pad) tokens.
  index:    () int32, the next slot to write (same for every row).
  next_pos: (B,) int32, the position id of each row's next token.
  """

  k: jax.Array
  v: jax.Array
  valid: jax.Array
  index: jax.Array
  next_pos: jax.Array


def init_cache(cfg: ModelConfig, batch_size: int, cache_len: int) -> KVCache:
  """An empty cache of `cache_len` slots (prompt + generated tokens)."""
  if cache_len > cfg.max_len:
    raise ValueError(f"cache_len={cache_len} exceeds the model's max_len={cfg.max_len}")
  shape = (batch_size, cfg.n_heads, cache_len, cfg.head_dim)
  return KVCache(
      k=tuple(jnp.zeros(shape, cfg.compute_dtype) for _ in range(cfg.n_layers)),
      v=tuple(jnp.zeros(shape, cfg.compute_dtype) for _ in range(cfg.n_layers)),
      valid=jnp.zeros((batch_size, cache_len), bool),
      index=jnp.zeros((), jnp.int32),
      next_pos=jnp.zeros((batch_size,), jnp.int32),
  )


def _dropout(x, rate: float, key):
  """Inverted dropout: x * Bernoulli(1 - rate) / (1 - rate); identity when key is None."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class Attention(nnx.Module):
  """Multi-head causal self-attention with a fused q/k/v projection."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.cfg = cfg
    self.qkv = nnx.Linear(d, 3 * d, dtype=cfg.compute_dtype, rngs=rngs)
    self.out = nnx.Linear(d, d, dtype=cfg.compute_dtype, rngs=rngs)

  def __call__(self, x_btd, mask_bts, kv_cache=None, index=None, attend_new_only=False):
    """x (B,T,D), mask (B,T,S) bool -> (y (B,T,D), new keys/values).

    Without a cache the new keys/values are (k, v) of shape (B,N,T,H). With one,
    kv_cache = (k_cache, v_cache) of shape (B,N,S,H), this layer's buffers: the new
    keys/values are written at [:, :, index:index+T] in place (one buffer update per token
    instead of a copy of the cache), attention reads the updated buffers, and they are returned.
    attend_new_only (prefill into an empty cache, index 0): attention reads the T new
    keys/values themselves, mask (B,T,T), not the S-slot buffers (the other S - T slots are
    causally masked for every query anyway).

        y = softmax(q k^T / sqrt(H) masked) v        per head, as two einsums
    """
    b, t, _ = x_btd.shape
    n, h = self.cfg.n_heads, self.cfg.head_dim
    q, k, v = jnp.split(self.qkv(x_btd), 3, axis=-1)            # 3 x (B, T, D)
    q = q.reshape(b, t, n, h)                                    # (B, T, N, H)
    k, v = (z.reshape(b, t, n, h).transpose(0, 2, 1, 3) for z in (k, v))  # (B, N, T, H)
    new_kv = (k, v)
    if kv_cache is not None:
      k_cache, v_cache = kv_cache                                # (B, N, S, H)
      at = (0, 0, index, 0)
      new_kv = (jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), at),
                jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), at))
      if not attend_new_only:
        k, v = new_kv
    return self.out(_attention(q, k, v, mask_bts).reshape(b, t, n * h)), new_kv


def _attention(q_btnh, k_bnsh, v_bnsh, mask_bts):
  """softmax(q k^T / sqrt(H), masked) v as two einsums -> (B, T, N, H).

  Same maths as `jax.nn.dot_product_attention` (float32 logits, masked with the dtype's
  minimum), written out because on CPU its lowering (a vmapped, broadcast form) makes the
  backward pass ~2x slower at the small head dims (8..32) of the laptop ladder.
  """
  logits = jnp.einsum("btnh,bnsh->bnts", q_btnh, k_bnsh,
                      preferred_element_type=jnp.float32)          # (B, N, T, S)
  logits = logits * jnp.float32(q_btnh.shape[-1] ** -0.5)
  logits = jnp.where(mask_bts[:, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_bnsh.dtype)
  return jnp.einsum("bnts,bnsh->btnh", probs, v_bnsh)             # (B, T, N, H)


class MLP(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.up = nnx.Linear(cfg.d_model, cfg.ff_dim, dtype=cfg.compute_dtype, rngs=rngs)
    self.down = nnx.Linear(cfg.ff_dim, cfg.d_model, dtype=cfg.compute_dtype, rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x)))


class Block(nnx.Module):
  """Pre-LayerNorm block: h + Attn(LN(h)), then + MLP(LN(.))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.ln_attn = nnx.LayerNorm(cfg.d_model, dtype=cfg.compute_dtype, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.ln_mlp = nnx.LayerNorm(cfg.d_model, dtype=cfg.compute_dtype, rngs=rngs)
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, h, mask_bts, kv_cache=None, index=None, dropout_key=None,
               attend_new_only=False):
    k1, k2 = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    a, new_kv = self.attn(self.ln_attn(h), mask_bts, kv_cache, index, attend_new_only)
    h = h + _dropout(a, self.cfg.dropout, k1)
    h = h + _dropout(self.mlp(self.ln_mlp(h)), self.cfg.dropout, k2)
    return h, new_kv


class ModelOutputs(NamedTuple):
  """logits (B,T,V) float32; values (B,T) float32; scores (B,) float32 or None;
  hidden: tuple of L+1 residual streams (B,T,D) (embeddings, then each block) or None."""

  logits: jax.Array
  values: jax.Array
  scores: jax.Array | None
  hidden: tuple[jax.Array, ...] | None


class Transformer(nnx.Module):
  """Decoder-only transformer with LM, score (PM) and value (PPO) heads."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.d_model
    self.embed = nnx.Embed(cfg.vocab_size, d, dtype=cfg.compute_dtype,
                           embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.pos_embed = nnx.Embed(cfg.max_len, d, dtype=cfg.compute_dtype,
                               embedding_init=nnx.initializers.normal(0.01), rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.ln_f = nnx.LayerNorm(d, dtype=cfg.compute_dtype, rngs=rngs)
    if not cfg.tie_embeddings:
      self.unembed = nnx.Linear(d, cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype,
                                rngs=rngs)
    # Reward-head init N(0, 1/sqrt(d+1)) (Huang et al., "N implementation details of RLHF").
    head_init = nnx.initializers.normal(1.0 / (d + 1) ** 0.5)
    self.score_head = nnx.Linear(d, 1, kernel_init=head_init, rngs=rngs)
    self.value_head = nnx.Linear(d, 1, kernel_init=head_init, rngs=rngs)

  def __call__(self, tokens_bt, pad_mask_bt, *, score_index_b=None, cache: KVCache | None = None,
               dropout_key=None, return_hidden: bool = False, cache_empty: bool = False):
    """Forward pass; with `cache`, also returns the updated cache.

    cache_empty=True promises that `cache` is fresh from `init_cache` (index 0, no valid
    slot), as in a prefill: the keys/values are written at slot 0 and attention runs over
    the T new tokens only instead of all S cache slots (same result; the prefill of
    `rollout.generate` at 3M spends ~half as long in attention).
    """
    b, t = tokens_bt.shape
    pad_mask_bt = pad_mask_bt.astype(bool)
    if cache is None:
      positions = jnp.maximum(jnp.cumsum(pad_mask_bt, axis=1) - 1, 0)      # (B, T)
      key_valid_bs = pad_mask_bt                                            # (B, S=T)
      query_slot = jnp.arange(t)
      index = None
    else:
      positions = cache.next_pos[:, None] + jnp.cumsum(pad_mask_bt, axis=1) - 1
      positions = jnp.maximum(positions, 0)
      index = 0 if cache_empty else cache.index
      key_valid_bs = jax.lax.dynamic_update_slice(cache.valid, pad_mask_bt, (0, index))
      query_slot = index + jnp.arange(t)
    positions = jnp.minimum(positions, self.cfg.max_len - 1)
    key_slot = jnp.arange(key_valid_bs.shape[1])
    causal_ts = key_slot[None, :] <= query_slot[:, None]                   # (T, S)
    is_self_ts = key_slot[None, :] == query_slot[:, None]
    mask_bts = causal_ts[None] & (key_valid_bs[:, None, :] | is_self_ts[None])  # (B, T, S)
    attend_new_only = cache is not None and cache_empty
    if attend_new_only:
      mask_bts = mask_bts[:, :, :t]                                         # (B, T, T)

    h = self.embed(tokens_bt) + self.pos_embed(positions)                  # (B, T, D)
    hidden = [h] if return_hidden else None
    new_k, new_v = [], []
    for i, block in enumerate(self.blocks):
      layer_key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
      kv = None if cache is None else (cache.k[i], cache.v[i])            # (B, N, S, H)
      h, (k_i, v_i) = block(h, mask_bts, kv, index, layer_key, attend_new_only)
      new_k.append(k_i)
      new_v.append(v_i)
      if return_hidden:
        hidden.append(h)
    out = self.ln_f(h)                                                     # (B, T, D)

    if self.cfg.tie_embeddings:
      logits = self.embed.attend(out)
    else:
      logits = self.unembed(out)
    values = self.value_head(out)[..., 0]                                  # (B, T)
    scores = None
    if score_index_b is not None:
      out_at = out[jnp.arange(b), score_index_b]                           # (B, D)
      scores = self.score_head(out_at)[..., 0].astype(jnp.float32)         # (B,)
    outputs = ModelOutputs(logits.astype(jnp.float32), values.astype(jnp.float32), scores,
                           None if hidden is None else tuple(hidden))
    if cache is None:
      return outputs
    new_cache = KVCache(
        k=tuple(new_k), v=tuple(new_v), valid=key_valid_bs,
        index=cache.index + t,
        next_pos=cache.next_pos + pad_mask_bt.sum(axis=1).astype(jnp.int32))
    return outputs, new_cache
