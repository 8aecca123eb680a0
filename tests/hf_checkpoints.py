"""Tiny random Hugging Face checkpoints built locally with transformers (no download).

Each family is made with odd sizes where the family allows (3 heads, head_dim 8 or 16, a
rotary fraction < 1, grouped-query attention with 2 KV heads, scaled RoPE), tied and untied
heads among them, and weights drawn with a larger std than transformers' 0.02 so that greedy
decoding has no near-ties.
"""

from __future__ import annotations

import numpy as np

VOCAB = 97
MAX_POS = 64


def hf_configs() -> dict:
  """name -> (transformers config class name, kwargs)."""
  common = dict(vocab_size=VOCAB, initializer_range=0.2, bos_token_id=None, eos_token_id=None,
                pad_token_id=None)
  llama = dict(common, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
               max_position_embeddings=MAX_POS)
  return {
      "gpt2": ("GPT2Config", dict(common, n_embd=24, n_layer=2, n_head=3, n_positions=MAX_POS,
                                  n_inner=40, tie_word_embeddings=True)),
      "gpt2_untied": ("GPT2Config", dict(common, n_embd=24, n_layer=1, n_head=3, n_positions=MAX_POS,
                                         activation_function="gelu", tie_word_embeddings=False)),
      "neox": ("GPTNeoXConfig", dict(common, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                     intermediate_size=40, max_position_embeddings=MAX_POS,
                                     rotary_pct=0.25, use_parallel_residual=True,
                                     tie_word_embeddings=False)),
      "neox_sequential": ("GPTNeoXConfig", dict(common, hidden_size=24, num_hidden_layers=1,
                                                num_attention_heads=3, intermediate_size=40,
                                                max_position_embeddings=MAX_POS, rotary_pct=0.5,
                                                use_parallel_residual=False, attention_bias=False)),
      "llama3": ("LlamaConfig", dict(llama, num_attention_heads=6, num_key_value_heads=2,
                                     tie_word_embeddings=True, rope_theta=500000.0,
                                     rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 16})),
      "llama_linear": ("LlamaConfig", dict(llama, num_attention_heads=3, num_key_value_heads=3,
                                           attention_bias=True, mlp_bias=True,
                                           rope_scaling={"rope_type": "linear", "factor": 2.0})),
      "qwen2": ("Qwen2Config", dict(llama, num_attention_heads=6, num_key_value_heads=2,
                                    tie_word_embeddings=False, rope_theta=1e6,
                                    rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                  "original_max_position_embeddings": 16})),
  }


CAUSAL_LM = {"GPT2Config": "GPT2LMHeadModel", "GPTNeoXConfig": "GPTNeoXForCausalLM",
             "LlamaConfig": "LlamaForCausalLM", "Qwen2Config": "Qwen2ForCausalLM"}


def build(name: str, out_dir: str, seed: int = 0, max_shard_size: str | None = None):
  """Create the named random checkpoint with transformers, save it to out_dir; return the model."""
  import torch
  import transformers

  cls_name, kwargs = hf_configs()[name]
  config = getattr(transformers, cls_name)(**kwargs)
  config._attn_implementation = "eager"
  torch.manual_seed(seed)
  model = getattr(transformers, CAUSAL_LM[cls_name])(config).eval()
  extra = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
  model.save_pretrained(out_dir, **extra)
  return model


def padded_batch(seed: int = 0, batch: int = 3, length: int = 11, low: int = 3):
  """tokens (B, T) in [low, VOCAB) and mask (B, T): row 0 unpadded, row 1 left-padded by 3,
  row 2 right-padded by 4 (padding positions hold token 0)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(low, VOCAB, (batch, length)).astype(np.int32)
  mask = np.ones((batch, length), bool)
  mask[1, :3] = False
  mask[2, -4:] = False
  return np.where(mask, tokens, 0).astype(np.int32), mask


def positions(mask: np.ndarray) -> np.ndarray:
  """pos = max(cumsum(mask) - 1, 0): real tokens counted, as hh-jax and HF generate count them."""
  return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def torch_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
  import torch

  with torch.no_grad():
    out = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long),
                position_ids=torch.tensor(positions(mask), dtype=torch.long))
  return out.logits.float().numpy()
