"""Which Hugging Face tensor is which hh-jax parameter, and how each is converted.

A rule is (hh path, HF names, kind). HF names are without the base-model prefix
("transformer.", "gpt_neox.", "model."), which `hf.py` adds on export and strips on import.
Kinds, with W the HF tensor(s) and K the hh-jax parameter:

    copy       K = W                        (embeddings, norms, biases, GPT-2's Conv1D kernels)
    linear     K = W^T                      (torch nn.Linear stores (out, in); flax (in, out))
    neox_qkv   GPT-NeoX's fused query_key_value has rows (head, [q|k|v], H); hh-jax's fused
               kernel has columns ([q|k|v], head, H):
               K = W.reshape(N, 3, H, D).transpose(1, 0, 2, 3).reshape(3NH, D)^T  (bias alike)
    concat     separate q, k, v (Llama): K = [W_q^T | W_k^T | W_v^T]  (biases: [b_q | b_k | b_v])

Every kind has an exact inverse (`to_hf`), so export then import gives the same bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hh_jax.models.config import ModelConfig

PREFIXES = {"gpt2": "transformer.", "gpt_neox": "gpt_neox.", "llama": "model.", "qwen2": "model."}
# Top-level (unprefixed) heads; GPT-NeoX's LM head is "embed_out" (transformers 5 also reads it).
LM_HEAD = {"gpt2": "lm_head.weight", "gpt_neox": "embed_out.weight", "llama": "lm_head.weight",
           "qwen2": "lm_head.weight"}
LM_HEAD_ALIASES = ("lm_head.weight", "embed_out.weight")
SCORE = "score.weight"


class Rule(NamedTuple):
  path: tuple[str, ...]        # into the params dict, e.g. ("blocks", "0", "attn", "qkv", "kernel")
  names: tuple[str, ...]       # HF tensor names (without prefix)
  kind: str                    # copy | linear | neox_qkv | concat


def _norm_rules(path: tuple, name: str, cfg: ModelConfig) -> list[Rule]:
  rules = [Rule(path + ("scale",), (f"{name}.weight",), "copy")]
  if cfg.norm == "layernorm":
    rules.append(Rule(path + ("bias",), (f"{name}.bias",), "copy"))
  return rules


def _linear_rules(path: tuple, name: str, kind: str, bias: bool) -> list[Rule]:
  rules = [Rule(path + ("kernel",), (f"{name}.weight",), kind)]
  return rules + ([Rule(path + ("bias",), (f"{name}.bias",), "copy")] if bias else [])


def _block_rules(cfg: ModelConfig, family: str, i: int) -> list[Rule]:
  """One block's rules (module docstring) for `family`."""
  b = ("blocks", str(i))
  attn, mlp = b + ("attn",), b + ("mlp",)
  if family == "gpt2":
    p = f"h.{i}."
    return (_norm_rules(b + ("ln_attn",), p + "ln_1", cfg) + _norm_rules(b + ("ln_mlp",), p + "ln_2", cfg)
            + _linear_rules(attn + ("qkv",), p + "attn.c_attn", "copy", True)
            + _linear_rules(attn + ("out",), p + "attn.c_proj", "copy", True)
            + _linear_rules(mlp + ("up",), p + "mlp.c_fc", "copy", True)
            + _linear_rules(mlp + ("down",), p + "mlp.c_proj", "copy", True))
  p = f"layers.{i}."
  norms = (_norm_rules(b + ("ln_attn",), p + "input_layernorm", cfg)
           + _norm_rules(b + ("ln_mlp",), p + "post_attention_layernorm", cfg))
  if family == "gpt_neox":
    qkv = [Rule(attn + ("qkv", "kernel"), (p + "attention.query_key_value.weight",), "neox_qkv")]
    if cfg.qkv_bias:
      qkv.append(Rule(attn + ("qkv", "bias"), (p + "attention.query_key_value.bias",), "neox_qkv"))
    return (norms + qkv + _linear_rules(attn + ("out",), p + "attention.dense", "linear", cfg.attn_out_bias)
            + _linear_rules(mlp + ("up",), p + "mlp.dense_h_to_4h", "linear", True)
            + _linear_rules(mlp + ("down",), p + "mlp.dense_4h_to_h", "linear", True))
  qkv_names = tuple(f"{p}self_attn.{x}_proj" for x in "qkv")
  qkv = [Rule(attn + ("qkv", "kernel"), tuple(n + ".weight" for n in qkv_names), "concat")]
  if cfg.qkv_bias:
    qkv.append(Rule(attn + ("qkv", "bias"), tuple(n + ".bias" for n in qkv_names), "concat"))
  return (norms + qkv + _linear_rules(attn + ("out",), p + "self_attn.o_proj", "linear", cfg.attn_out_bias)
          + _linear_rules(mlp + ("gate",), p + "mlp.gate_proj", "linear", cfg.mlp_bias)
          + _linear_rules(mlp + ("up",), p + "mlp.up_proj", "linear", cfg.mlp_bias)
          + _linear_rules(mlp + ("down",), p + "mlp.down_proj", "linear", cfg.mlp_bias))


def body_rules(cfg: ModelConfig, family: str) -> list[Rule]:
  """Rules for the prefixed base model: embeddings, blocks and the final norm."""
  embed = {"gpt2": "wte", "gpt_neox": "embed_in", "llama": "embed_tokens", "qwen2": "embed_tokens"}
  final = {"gpt2": "ln_f", "gpt_neox": "final_layer_norm", "llama": "norm", "qwen2": "norm"}
  rules = [Rule(("embed", "embedding"), (f"{embed[family]}.weight",), "copy")]
  if cfg.positions == "learned":
    rules.append(Rule(("pos_embed", "embedding"), ("wpe.weight",), "copy"))
  for i in range(cfg.n_layers):
    rules += _block_rules(cfg, family, i)
  return rules + _norm_rules(("ln_f",), final[family], cfg)


def to_hh(kind: str, tensors: list[np.ndarray], cfg: ModelConfig) -> np.ndarray:
  """The hh-jax parameter from its HF tensors (module docstring)."""
  if kind == "copy":
    return tensors[0]
  if kind == "linear":
    return tensors[0].T
  if kind == "concat":
    return np.concatenate([t.T for t in tensors], axis=-1) if tensors[0].ndim == 2 else np.concatenate(tensors)
  if kind == "neox_qkv":
    w, n, h = tensors[0], cfg.n_heads, cfg.head_dim
    grouped = w.reshape(n, 3, h, *w.shape[1:]).swapaxes(0, 1).reshape(w.shape)   # ([q|k|v], N, H, ...)
    return grouped.T if w.ndim == 2 else grouped
  raise ValueError(f"unknown conversion {kind!r}")


def to_hf(kind: str, param: np.ndarray, cfg: ModelConfig) -> list[np.ndarray]:
  """The HF tensors of an hh-jax parameter: the exact inverse of `to_hh`."""
  if kind == "copy":
    return [param]
  if kind == "linear":
    return [np.ascontiguousarray(param.T)]
  h = cfg.head_dim
  if kind == "concat":
    cuts = np.cumsum([cfg.n_heads * h, cfg.kv_heads * h])
    return [np.ascontiguousarray(p.T) for p in np.split(param, cuts, axis=-1)]
  if kind == "neox_qkv":
    w = param.T if param.ndim == 2 else param                                    # (3NH, ...)
    return [np.ascontiguousarray(w.reshape(3, cfg.n_heads, h, *w.shape[1:]).swapaxes(0, 1).reshape(w.shape))]
  raise ValueError(f"unknown conversion {kind!r}")
