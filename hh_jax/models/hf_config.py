"""Hugging Face `config.json` <-> `ModelConfig`, for the families one set of options covers.

    family     model_type   options (beyond sizes)
    GPT-2      gpt2         learned positions, LayerNorm, GELU (tanh), tied head, all biases
    GPT-NeoX   gpt_neox     rotary on rotary_pct of each head, parallel residual, untied head,
                            exact GELU (Pythia)
    Llama      llama        RMSNorm, SwiGLU, grouped-query attention, RoPE (+ linear / llama3 /
                            yarn scaling), no biases; Llama 3.x, SmolLM2
    Qwen2      qwen2        Llama with q/k/v biases (Qwen2.5)

Both config formats are read: transformers 5 (`rope_parameters`) and 4 (`rope_theta`,
`rope_scaling`, `rotary_pct`, `rotary_emb_base`). Missing keys take the transformers
class defaults. hh-jax's own ladder models (learned positions, LayerNorm eps 1e-6) export as
GPT-2.
"""

from __future__ import annotations

import json
import os

from hh_jax.models.config import ModelConfig

FAMILIES = ("gpt2", "gpt_neox", "llama", "qwen2")
ARCHITECTURES = {  # family -> (causal LM class, sequence-classification class)
    "gpt2": ("GPT2LMHeadModel", "GPT2ForSequenceClassification"),
    "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXForSequenceClassification"),
    "llama": ("LlamaForCausalLM", "LlamaForSequenceClassification"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2ForSequenceClassification"),
}
_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
                "gelu": "gelu", "silu": "silu", "swish": "silu", "relu": "relu"}
_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "silu": "silu", "relu": "relu"}
# config.json key marking a checkpoint whose ids 0..2 are already hh-jax's PAD, EOS, EOC.
SPECIAL_TOKENS_KEY = "hh_jax_special_tokens"


def read_config(path: str | os.PathLike) -> dict:
  """The config.json of a checkpoint directory."""
  file = os.path.join(os.fspath(path), "config.json")
  if not os.path.exists(file):
    raise FileNotFoundError(f"{file} not found: {path} is not a Hugging Face checkpoint directory")
  with open(file) as f:
    return json.load(f)


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
  """A directory with config.json and safetensors weights (sharded or not)."""
  path = os.fspath(path)
  return os.path.isfile(os.path.join(path, "config.json")) and any(
      name.startswith("model") and name.endswith((".safetensors", ".safetensors.index.json"))
      for name in os.listdir(path))


def _rope_options(hf: dict, default_fraction: float) -> dict:
  """rope_theta, rotary_fraction and rope_scaling from either config format."""
  params = dict(hf.get("rope_parameters") or {})
  if params and all(isinstance(v, dict) for v in params.values()):
    raise ValueError("per-layer RoPE parameters are not supported")
  merged = {**(hf.get("rope_scaling") or {}), **params}
  theta = merged.pop("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
  fraction = merged.pop("partial_rotary_factor",
                        hf.get("partial_rotary_factor", hf.get("rotary_pct", default_fraction)))
  kind = merged.pop("rope_type", merged.pop("type", "default"))
  scaling = () if kind == "default" else tuple(sorted({**merged, "rope_type": kind}.items()))
  return {"positions": "rotary", "rope_theta": float(theta), "rotary_fraction": float(fraction),
          "rope_scaling": scaling}


def _gpt2(hf: dict) -> dict:
  if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx", False):
    raise ValueError("GPT-2 checkpoints with unscaled or layer-scaled attention are not supported")
  return dict(vocab_size=hf["vocab_size"], d_model=hf["n_embd"], n_layers=hf["n_layer"],
              n_heads=hf["n_head"], d_ff=hf.get("n_inner"), max_len=hf.get("n_positions", 1024),
              tie_embeddings=hf.get("tie_word_embeddings", True),
              norm_eps=hf.get("layer_norm_epsilon", 1e-5),
              activation=_ACT_FROM_HF[hf.get("activation_function", "gelu_new")])


def _gpt_neox(hf: dict) -> dict:
  return dict(vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
              n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
              d_ff=hf["intermediate_size"], max_len=hf.get("max_position_embeddings", 2048),
              tie_embeddings=hf.get("tie_word_embeddings", False),
              norm_eps=hf.get("layer_norm_eps", 1e-5),
              activation=_ACT_FROM_HF[hf.get("hidden_act", "gelu")],
              parallel_residual=hf.get("use_parallel_residual", True),
              qkv_bias=hf.get("attention_bias", True), attn_out_bias=hf.get("attention_bias", True),
              **_rope_options(hf, 0.25))


def _llama(hf: dict) -> dict:
  qwen2 = hf["model_type"] == "qwen2"
  if qwen2 and hf.get("use_sliding_window", False):
    raise ValueError("Qwen2 checkpoints with sliding-window attention are not supported")
  attention_bias = hf.get("attention_bias", False)
  d, n = hf["hidden_size"], hf["num_attention_heads"]
  return dict(vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"],
              n_heads=n, n_kv_heads=hf.get("num_key_value_heads") or n,
              d_head=hf.get("head_dim") or d // n, d_ff=hf["intermediate_size"],
              max_len=hf.get("max_position_embeddings", 2048),
              tie_embeddings=hf.get("tie_word_embeddings", False),
              norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6),
              activation=_ACT_FROM_HF[hf.get("hidden_act", "silu")], gated_mlp=True,
              qkv_bias=True if qwen2 else attention_bias,
              attn_out_bias=False if qwen2 else attention_bias,
              mlp_bias=False if qwen2 else hf.get("mlp_bias", False), **_rope_options(hf, 1.0))


def model_config_from_hf(hf: dict) -> ModelConfig:
  """The ModelConfig of an HF config dict (float32; the caller sets dtypes)."""
  family = hf.get("model_type")
  build = {"gpt2": _gpt2, "gpt_neox": _gpt_neox, "llama": _llama, "qwen2": _llama}.get(family)
  if build is None:
    raise ValueError(f"model_type {family!r} is not supported; supported: {', '.join(FAMILIES)}")
  return ModelConfig(**build(hf))


def family_of(cfg: ModelConfig) -> str:
  """The HF family whose architecture is exactly `cfg`'s options; ValueError if none is."""
  plain_heads = cfg.kv_heads == cfg.n_heads and cfg.head_dim * cfg.n_heads == cfg.d_model
  if cfg.positions == "learned":
    if (cfg.norm == "layernorm" and not cfg.gated_mlp and not cfg.parallel_residual and plain_heads
        and cfg.qkv_bias and cfg.attn_out_bias and cfg.mlp_bias):
      return "gpt2"
  elif cfg.norm == "layernorm":
    if not cfg.gated_mlp and plain_heads and cfg.qkv_bias == cfg.attn_out_bias and cfg.mlp_bias:
      return "gpt_neox"
  elif cfg.gated_mlp and not cfg.parallel_residual:
    if cfg.qkv_bias and not cfg.attn_out_bias and not cfg.mlp_bias:
      return "qwen2"
    if cfg.qkv_bias == cfg.attn_out_bias:
      return "llama"
  raise ValueError(f"no Hugging Face family ({', '.join(FAMILIES)}) has this model's options: {cfg}")


def _rope_parameters(cfg: ModelConfig) -> dict:
  params = {"rope_theta": cfg.rope_theta, "rope_type": "default", **dict(cfg.rope_scaling)}
  if cfg.rotary_fraction != 1.0:
    params["partial_rotary_factor"] = cfg.rotary_fraction
  return params


def _family_fields(cfg: ModelConfig, family: str) -> dict:
  """The size and architecture keys of config.json (both transformers 4 and 5 names for RoPE)."""
  if family == "gpt2":
    return dict(n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.ff_dim,
                n_positions=cfg.max_len, layer_norm_epsilon=cfg.norm_eps,
                activation_function=_ACT_TO_HF[cfg.activation])
  rope = _rope_parameters(cfg)
  common = dict(hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, intermediate_size=cfg.ff_dim,
                max_position_embeddings=cfg.max_len, hidden_act=_ACT_TO_HF[cfg.activation],
                rope_parameters=rope, rope_theta=cfg.rope_theta)
  scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
  if scaling["rope_type"] != "default":
    common["rope_scaling"] = scaling
  if family == "gpt_neox":
    return dict(common, layer_norm_eps=cfg.norm_eps, use_parallel_residual=cfg.parallel_residual,
                attention_bias=cfg.qkv_bias, rotary_pct=cfg.rotary_fraction,
                rotary_emb_base=cfg.rope_theta)
  common.update(num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps)
  if cfg.rotary_fraction != 1.0:
    common["partial_rotary_factor"] = cfg.rotary_fraction
  if family == "qwen2":
    return dict(common, use_sliding_window=False)
  return dict(common, attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)


def hf_config_from_model(cfg: ModelConfig, *, score_head: bool, special_ids: dict | None) -> dict:
  """config.json for `cfg`: a causal LM, or (score_head) a one-label sequence classifier.

  special_ids: {"pad", "eos"} ids when the vocabulary has hh-jax's special tokens (marked with
  SPECIAL_TOKENS_KEY); the classifier then reads its score at the last non-pad token.
  """
  family = family_of(cfg)
  out = {"model_type": family, "architectures": [ARCHITECTURES[family][int(score_head)]],
         "vocab_size": cfg.vocab_size, "tie_word_embeddings": cfg.tie_embeddings,
         "dtype": cfg.param_dtype, "torch_dtype": cfg.param_dtype, **_family_fields(cfg, family)}
  if special_ids is not None:
    out.update({SPECIAL_TOKENS_KEY: True, "pad_token_id": special_ids["pad"],
                "eos_token_id": special_ids["eos"], "bos_token_id": None})
  if score_head:
    out.update({"num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}})
  return out
