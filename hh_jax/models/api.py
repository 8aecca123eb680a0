"""Pure functions over (graphdef, params): the only way code outside `models/` runs a model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hh_jax.models.config import ModelConfig
from hh_jax.models.transformer import KVCache, ModelOutputs, Transformer
from hh_jax.special_tokens import PAD_ID


def init(cfg: ModelConfig, key: jax.Array):
  """Build a model; return (graphdef, params) with params a plain dict of arrays (float32
  unless cfg.param_dtype says otherwise)."""
  model = Transformer(cfg, rngs=nnx.Rngs(params=key))
  graphdef, state = nnx.split(model, nnx.Param)
  return graphdef, nnx.to_pure_dict(state)


def abstract_init(cfg: ModelConfig):
  """(graphdef, params as ShapeDtypeStructs) of a config, without materialising weights."""
  out = {}

  def build():
    out["graphdef"], params = init(cfg, jax.random.key(0))
    return params

  abstract = jax.eval_shape(build)
  return out["graphdef"], abstract


def _merge(graphdef, params) -> Transformer:
  return nnx.merge(graphdef, params)


def default_pad_mask(tokens_bt: jax.Array) -> jax.Array:
  """mask[b, t] = tokens[b, t] != PAD_ID."""
  return tokens_bt != PAD_ID


def apply(graphdef, params, tokens_bt, *, pad_mask=None, score_index=None, dropout_key=None,
          return_hidden: bool = False, positions=None, segment_ids=None,
          branch_ids=None) -> ModelOutputs:
  """Full forward pass. tokens (B, T) int32; score_index (B,) reads the PM score there
  (scores (B,)), or (B, K) reads K scores per row (scores (B, K)).

  pad_mask defaults to `tokens != PAD_ID`. Unused outputs (e.g. LM logits in a PM step)
  are removed by XLA's dead-code elimination under jit.

  Packed rows (`hh_jax.data.packing`): positions (B, T) int32 explicit position ids;
  segment_ids (B, T) int32 (0 = padding) and branch_ids (B, T) int32 (0 = shared prefix,
  1 / 2 = first / second continuation) build the mask instead of pad_mask:
  key j is visible to query i iff j <= i, seg_j == seg_i and branch_j in {0, branch_i}
  (`transformer.packed_mask`).
  """
  if pad_mask is None:
    pad_mask = default_pad_mask(tokens_bt) if segment_ids is None else segment_ids > 0
  return _merge(graphdef, params)(tokens_bt, pad_mask, score_index_b=score_index,
                                  dropout_key=dropout_key, return_hidden=return_hidden,
                                  positions_bt=positions, segment_ids_bt=segment_ids,
                                  branch_ids_bt=branch_ids)


def prefill(graphdef, params, tokens_bt, cache: KVCache, *, pad_mask=None,
            cache_empty: bool = False):
  """Run a (left-padded) prompt through the model, writing its keys/values into `cache`.

  Returns (ModelOutputs, cache). The next-token logits are `outputs.logits[:, -1]`.
  cache_empty=True (only for a cache fresh from `init_cache`) attends over the prompt's own
  T keys instead of all S cache slots: same result, less work.
  """
  if pad_mask is None:
    pad_mask = default_pad_mask(tokens_bt)
  return _merge(graphdef, params)(tokens_bt, pad_mask, cache=cache, cache_empty=cache_empty)


def decode_step(graphdef, params, token_b, cache: KVCache, *, pad_mask_b=None):
  """One cached decoding step. token (B,) -> (logits (B, V), values (B,), cache)."""
  pad_mask = jnp.ones_like(token_b, bool) if pad_mask_b is None else pad_mask_b
  out, cache = _merge(graphdef, params)(token_b[:, None], pad_mask[:, None], cache=cache)
  return out.logits[:, 0], out.values[:, 0], cache


def config_of(graphdef, params) -> ModelConfig:
  """The ModelConfig a (graphdef, params) model was built with."""
  return _merge(graphdef, params).cfg
