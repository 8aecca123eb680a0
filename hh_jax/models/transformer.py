"""The decoder-only transformer shared by LMs, preference models, policies and value functions.

Architecture by default (GPT-2 style, as in Askell et al. 2021 / Bai et al. 2022):

    h_0 = E[tokens] + P[positions]                     learned absolute positions
    a   = h + Attn(LN(h))                              pre-LayerNorm blocks
    h'  = a + MLP(LN(a)),   MLP(x) = W2 gelu(W1 x)
    out = LN_f(h_L)
    logits = out E^T                                   LM head tied to the token embedding
    score  = w_s . out[b, eoc_index[b]] + b_s          PM head at the end-of-context token
    value  = w_v . out[b, t] + b_v                     per-token value head (PPO)

The `ModelConfig` architecture options turn the same module into GPT-NeoX (rotary
positions on a fraction of each head, parallel residual, untied head, exact GELU) or the
Llama family (RMSNorm, SwiGLU, grouped-query attention, scaled RoPE):

    rotary:    q, k = rope(q, pos), rope(k, pos)  instead of  + P[positions]   (models.rope)
    parallel:  h' = h + Attn(LN1(h)) + MLP(LN2(h))
    gated:     MLP(x) = W_down (act(W_gate x) * W_up x)
    GQA:       K = n_kv_heads key/value heads, each shared by n_heads / K query heads

Positions are counted over real (non-pad) tokens only, `pos = cumsum(mask) - 1`, so a
left-padded prompt (used for batched generation) gets exactly the positions it would
have unpadded, and right padding changes nothing before it. Attention is causal over
key slots and never attends to padding keys (a query always sees itself, so rows of
padding stay finite).

Packed rows (several sequences per row, `hh_jax.data.packing`) pass explicit `positions`
and per-token `segment_ids` (0 = padding) and `branch_ids` (0 = shared prefix, 1 and 2 =
two continuations of it) instead; the mask is then built from the ids (`packed_mask`):

    key j visible to query i  <=>  j <= i  and  seg[j] == seg[i]
                                   and  (branch[j] == 0 or branch[j] == branch[i])

so two replies packed after one shared context each see the context and themselves only.
The attention stays the two einsums with this mask. On accelerators the same mask maps
onto fused kernels: TPU splash attention (`jax.experimental.pallas.ops.tpu.splash_attention`)
takes segment ids natively, and the branch rule as a custom block-sparse mask;
`jax.nn.dot_product_attention` accepts an explicit boolean `mask` (XLA implementation) and,
on its cuDNN path, causal masking plus `q_seqlen`/`kv_seqlen` lengths but no segment ids in
the installed jax (see docs/performance.md); only the CPU einsum path is tested here.

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

from hh_jax.models import config as model_config
from hh_jax.models.config import ModelConfig
from hh_jax.models.rope import apply_rope, rope_tables

ACTIVATIONS = {"gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
               "gelu": lambda x: jax.nn.gelu(x, approximate=False),
               "silu": jax.nn.silu, "relu": jax.nn.relu}


class KVCache(NamedTuple):
  """Fixed-shape decoding state for all layers.

  k, v:     tuples of L arrays (B, K, S, H), keys and values per layer, S = cache length,
            K = kv_heads (n_heads unless grouped-query attention)
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
  shape = (batch_size, cfg.kv_heads, cache_len, cfg.head_dim)
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


def _linear(cfg: ModelConfig, d_in: int, d_out: int, use_bias: bool, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(d_in, d_out, use_bias=use_bias, dtype=cfg.compute_dtype,
                    param_dtype=cfg.params_dtype, rngs=rngs)


def _norm(cfg: ModelConfig, rngs: nnx.Rngs):
  """LayerNorm (scale and bias) or RMSNorm: x / sqrt(mean(x^2) + eps) * scale."""
  norm = nnx.LayerNorm if cfg.norm == "layernorm" else nnx.RMSNorm
  return norm(cfg.d_model, epsilon=cfg.norm_eps, dtype=cfg.compute_dtype,
              param_dtype=cfg.params_dtype, rngs=rngs)


def _repeat_kv(x_bksh, groups: int):
  """Each of the K key/value heads serves `groups` query heads: (B, K, S, H) -> (B, K*g, S, H)."""
  return x_bksh if groups == 1 else jnp.repeat(x_bksh, groups, axis=1)


class Attention(nnx.Module):
  """Causal self-attention (multi-head or grouped-query) with a fused q/k/v projection:
  the kernel's columns are [q (N H) | k (K H) | v (K H)]."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, h = cfg.d_model, cfg.head_dim
    self.cfg = cfg
    self.qkv = _linear(cfg, d, (cfg.n_heads + 2 * cfg.kv_heads) * h, cfg.qkv_bias, rngs)
    self.out = _linear(cfg, cfg.n_heads * h, d, cfg.attn_out_bias, rngs)

  def __call__(self, x_btd, mask_bts, kv_cache=None, index=None, attend_new_only=False, rope=None):
    """x (B,T,D), mask (B,T,S) bool -> (y (B,T,D), new keys/values).

    rope: (cos, sin) (B,T,R) for rotary positions, applied to q and k before caching.
    Without a cache the new keys/values are (k, v) of shape (B,K,T,H). With one,
    kv_cache = (k_cache, v_cache) of shape (B,K,S,H), this layer's buffers: the new
    keys/values are written at [:, :, index:index+T] in place (one buffer update per token
    instead of a copy of the cache), attention reads the updated buffers, and they are returned.
    attend_new_only (prefill into an empty cache, index 0): attention reads the T new
    keys/values themselves, mask (B,T,T), not the S-slot buffers (the other S - T slots are
    causally masked for every query anyway).

        y = softmax(q k^T / sqrt(H) masked) v        per head, as two einsums
    """
    b, t, _ = x_btd.shape
    n, kh, h = self.cfg.n_heads, self.cfg.kv_heads, self.cfg.head_dim
    q, k, v = jnp.split(self.qkv(x_btd), [n * h, (n + kh) * h], axis=-1)  # (B,T,NH), 2 x (B,T,KH)
    q, k = q.reshape(b, t, n, h), k.reshape(b, t, kh, h)        # (B, T, N, H), (B, T, K, H)
    if rope is not None:
      q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    k, v = k.transpose(0, 2, 1, 3), v.reshape(b, t, kh, h).transpose(0, 2, 1, 3)  # (B, K, T, H)
    new_kv = (k, v)
    if kv_cache is not None:
      k_cache, v_cache = kv_cache                                # (B, K, S, H)
      at = (0, 0, index, 0)
      new_kv = (jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), at),
                jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), at))
      if not attend_new_only:
        k, v = new_kv
    k, v = _repeat_kv(k, n // kh), _repeat_kv(v, n // kh)       # (B, N, S, H)
    return self.out(_attention(q, k, v, mask_bts).reshape(b, t, n * h)), new_kv


def _attention(q_btnh, k_bnsh, v_bnsh, mask_bts):
  """softmax(q k^T / sqrt(H), masked) v -> (B, T, N, H), causal masks computed by blocks.

  Every mask here is causal (key j visible to query i only if j <= i: `packed_mask` and the
  padded/cached masks) and lets a query see itself. So when the T queries are the S keys
  (no cache, or a prefill into an empty one) and T is a multiple m >= 2 of C = CAUSAL_BLOCK
  (models.config; `computed_keys` counts what this computes),
  query block i = [iC, (i+1)C) needs only keys [0, (i+1)C): the same softmax over fewer
  (always masked) keys, m (m + 1) / 2 of the m^2 score blocks (at T = 1024: 10 of 16).
  """
  t, s, c = q_btnh.shape[1], k_bnsh.shape[2], model_config.CAUSAL_BLOCK
  if c is None or t != s or t < 2 * c or t % c:
    return _attention_dense(q_btnh, k_bnsh, v_bnsh, mask_bts)
  blocks = []
  for i in range(t // c):
    rows, keys = slice(i * c, (i + 1) * c), slice(0, (i + 1) * c)     # C queries, (i+1) C keys
    blocks.append(_attention_dense(q_btnh[:, rows], k_bnsh[:, :, keys], v_bnsh[:, :, keys],
                                   mask_bts[:, rows, keys]))
  return jnp.concatenate(blocks, axis=1)


def _attention_dense(q_btnh, k_bnsh, v_bnsh, mask_bts):
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
  """W_down act(W_up x), or gated: W_down (act(W_gate x) * W_up x)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, f = cfg.d_model, cfg.ff_dim
    self.activation = cfg.activation
    self.up = _linear(cfg, d, f, cfg.mlp_bias, rngs)
    if cfg.gated_mlp:
      self.gate = _linear(cfg, d, f, cfg.mlp_bias, rngs)
    self.down = _linear(cfg, f, d, cfg.mlp_bias, rngs)

  def __call__(self, x):
    act = ACTIVATIONS[self.activation]
    if hasattr(self, "gate"):
      return self.down(act(self.gate(x)) * self.up(x))
    return self.down(act(self.up(x)))


class Block(nnx.Module):
  """Pre-norm block: h + Attn(LN(h)), then + MLP(LN(.)); parallel: h + Attn(LN1 h) + MLP(LN2 h)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.ln_attn = _norm(cfg, rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.ln_mlp = _norm(cfg, rngs)
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, h, mask_bts, kv_cache=None, index=None, dropout_key=None,
               attend_new_only=False, rope=None):
    k1, k2 = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    a, new_kv = self.attn(self.ln_attn(h), mask_bts, kv_cache, index, attend_new_only, rope)
    if self.cfg.parallel_residual:
      m = self.mlp(self.ln_mlp(h))
      return h + _dropout(a, self.cfg.dropout, k1) + _dropout(m, self.cfg.dropout, k2), new_kv
    h = h + _dropout(a, self.cfg.dropout, k1)
    h = h + _dropout(self.mlp(self.ln_mlp(h)), self.cfg.dropout, k2)
    return h, new_kv


def head_init(d_model: int):
  """Score / value head kernels ~ N(0, 1/sqrt(d+1)) (Huang et al., "N implementation details
  of RLHF"); their biases start at 0."""
  return nnx.initializers.normal(1.0 / (d_model + 1) ** 0.5)


def packed_mask(segment_ids_bt, branch_ids_bt=None):
  """(B, T, T) bool attention mask of packed rows (module docstring):

      mask[b, i, j] = j <= i  &  seg[b, j] == seg[b, i]
                      &  (branch[b, j] == 0  |  branch[b, j] == branch[b, i])

  branch_ids None means every token is shared (plain packed documents). A query always
  sees itself, so padding rows (segment 0) stay finite.
  """
  t = segment_ids_bt.shape[1]
  causal_tt = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]                 # (T, T)
  same_seg = segment_ids_bt[:, :, None] == segment_ids_bt[:, None, :]          # (B, T, T)
  mask = causal_tt[None] & same_seg
  if branch_ids_bt is not None:
    bq, bk = branch_ids_bt[:, :, None], branch_ids_bt[:, None, :]
    mask = mask & ((bk == 0) | (bk == bq))
  return mask


def _read_scores(score_head, out_btd, score_index):
  """score_head(out) at score_index (B,) -> (B,), or at every column of (B, K) -> (B, K)."""
  rows = jnp.arange(out_btd.shape[0])
  rows = rows if score_index.ndim == 1 else rows[:, None]
  return score_head(out_btd[rows, score_index])[..., 0].astype(jnp.float32)


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
    pdt = cfg.params_dtype
    self.embed = nnx.Embed(cfg.vocab_size, d, dtype=cfg.compute_dtype, param_dtype=pdt,
                           embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    if cfg.positions == "learned":
      self.pos_embed = nnx.Embed(cfg.max_len, d, dtype=cfg.compute_dtype, param_dtype=pdt,
                                 embedding_init=nnx.initializers.normal(0.01), rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.ln_f = _norm(cfg, rngs)
    if not cfg.tie_embeddings:
      self.unembed = _linear(cfg, d, cfg.vocab_size, False, rngs)
    self.score_head = nnx.Linear(d, 1, kernel_init=head_init(d), param_dtype=pdt, rngs=rngs)
    self.value_head = nnx.Linear(d, 1, kernel_init=head_init(d), param_dtype=pdt, rngs=rngs)

  def _positions_and_mask(self, pad_mask_bt, cache, cache_empty):
    """(positions (B,T), mask (B,T,S), key_valid (B,S), write index) of a padded or cached call."""
    t = pad_mask_bt.shape[1]
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
    key_slot = jnp.arange(key_valid_bs.shape[1])
    causal_ts = key_slot[None, :] <= query_slot[:, None]                   # (T, S)
    is_self_ts = key_slot[None, :] == query_slot[:, None]
    mask_bts = causal_ts[None] & (key_valid_bs[:, None, :] | is_self_ts[None])  # (B, T, S)
    if cache is not None and cache_empty:
      mask_bts = mask_bts[:, :, :t]                                         # (B, T, T)
    return positions, mask_bts, key_valid_bs, index

  def __call__(self, tokens_bt, pad_mask_bt, *, score_index_b=None, cache: KVCache | None = None,
               dropout_key=None, return_hidden: bool = False, cache_empty: bool = False,
               positions_bt=None, segment_ids_bt=None, branch_ids_bt=None):
    """Forward pass; with `cache`, also returns the updated cache.

    cache_empty=True promises that `cache` is fresh from `init_cache` (index 0, no valid
    slot), as in a prefill: the keys/values are written at slot 0 and attention runs over
    the T new tokens only instead of all S cache slots (same result; the prefill of
    `rollout.generate` at 3M spends ~half as long in attention).
    Packed rows: segment_ids_bt (and optionally branch_ids_bt, positions_bt) replace the
    padding mask (`packed_mask`); positions default to `cumsum(mask) - 1` per row.
    score_index_b (B,) or (B, K) gives scores (B,) or (B, K).
    """
    t = tokens_bt.shape[1]
    pad_mask_bt = pad_mask_bt.astype(bool)
    if segment_ids_bt is not None:
      if cache is not None:
        raise ValueError("packed rows (segment_ids) are not supported with a KV cache")
      mask_bts, key_valid_bs, index = packed_mask(segment_ids_bt, branch_ids_bt), None, None
      positions = (jnp.maximum(jnp.cumsum(pad_mask_bt, axis=1) - 1, 0)
                   if positions_bt is None else positions_bt)
    else:
      positions, mask_bts, key_valid_bs, index = self._positions_and_mask(pad_mask_bt, cache,
                                                                          cache_empty)
      positions = positions if positions_bt is None else positions_bt
    positions = jnp.minimum(positions, self.cfg.max_len - 1)
    attend_new_only = cache is not None and cache_empty

    rope = None
    if self.cfg.positions == "learned":
      h = self.embed(tokens_bt) + self.pos_embed(positions)                # (B, T, D)
    else:
      h = self.embed(tokens_bt)
      rope = rope_tables(self.cfg, positions)                              # 2 x (B, T, R)
    hidden = [h] if return_hidden else None
    new_k, new_v = [], []
    for i, block in enumerate(self.blocks):
      layer_key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
      kv = None if cache is None else (cache.k[i], cache.v[i])            # (B, K, S, H)
      h, (k_i, v_i) = block(h, mask_bts, kv, index, layer_key, attend_new_only, rope)
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
    scores = None if score_index_b is None else _read_scores(self.score_head, out, score_index_b)
    outputs = ModelOutputs(logits.astype(jnp.float32), values.astype(jnp.float32), scores,
                           None if hidden is None else tuple(hidden))
    if cache is None:
      return outputs
    new_cache = KVCache(
        k=tuple(new_k), v=tuple(new_v), valid=key_valid_bs,
        index=cache.index + t,
        next_pos=cache.next_pos + pad_mask_bt.sum(axis=1).astype(jnp.int32))
    return outputs, new_cache
