"""Hugging Face checkpoint directories in and out (config.json + safetensors, sharded or not).

    graphdef, params = from_pretrained(path, dtype="float32")     # the checkpoint's own ids
    models.apply(graphdef, params, tokens, pad_mask=mask).logits  # = transformers' logits
    save_pretrained(out, graphdef, params, tokenizer, score_head=True)   # a PM, for transformers

One loader for every family `hf_config` covers; tensors are converted by `hf_weights`.

The hh-jax vocabulary (`special_tokens=True`, what training runs use). hh-jax reserves ids
0, 1, 2 for PAD, EOS and EOC in every tokenizer, so a checkpoint's token i becomes id i + 3
(`hh_jax.data.tokenizers.PretrainedTokenizer` does the same) and three rows are prepended
to the token embedding and to an untied LM head:

    PAD = mean of the checkpoint's rows             (never attended to, never predicted)
    EOS = the row of the checkpoint's own end-of-text token (config.json eos_token_id), moved:
          its old row becomes the mean, and the tokenizer encodes that token as EOS
    EOC = mean of the checkpoint's rows             (the PM's end-of-context token)

New rows at the mean of the old ones are what transformers' `resize_token_embeddings` does
by default (and TRL's reward-model scripts rely on it when they add a PAD token; Hewitt 2021):
the new token's logit starts at the average logit, so it neither dominates the softmax nor is
impossible. Moving EOS keeps the pretrained LM's sense of where a reply ends, without two ids
sharing that probability. An exported run marks its config.json with SPECIAL_TOKENS_KEY, so
importing it again adds no rows.

Score and value heads. HF classes have no value head and a bias-free one-label score head
(`score.weight`). Every parameter that the HF class does not hold (the value head, the score
bias, the LM head of an untied PM) is written to `hh_jax_heads.safetensors` beside the model,
which transformers ignores and `from_pretrained` reads back, so export then import gives the
same bits. transformers' sequence-classification score is therefore hh-jax's score minus the
score bias b (a constant: score differences and preference probabilities are unchanged).
Heads a checkpoint lacks are zero, or drawn as `models.init` draws them when a key is given.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from hh_jax.models import api
from hh_jax.models.config import ModelConfig
from hh_jax.models.hf_config import (SPECIAL_TOKENS_KEY, family_of, hf_config_from_model,
                                     model_config_from_hf, read_config)
from hh_jax.models.hf_weights import (LM_HEAD, LM_HEAD_ALIASES, PREFIXES, SCORE, Rule, body_rules,
                                      to_hf, to_hh)
from hh_jax.models.transformer import head_init
from hh_jax.special_tokens import EOC_ID, EOS_ID, NUM_SPECIAL, PAD_ID

HEADS_FILE = "hh_jax_heads.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_SAFETENSORS_METADATA = {"format": "pt"}     # what transformers expects in the header


def checkpoint_eos_id(hf: dict) -> int | None:
  """The checkpoint's end-of-text id (config.json eos_token_id; the first one of a list)."""
  eos = hf.get("eos_token_id")
  return eos[0] if isinstance(eos, list) and eos else eos if isinstance(eos, int) else None


def with_special_rows(rows_vd: np.ndarray, eos_row: int | None) -> np.ndarray:
  """(V, D) -> (V + 3, D): [PAD = mean, EOS = rows[eos], EOC = mean] + rows, rows[eos] := mean."""
  mean = rows_vd.astype(np.float32).mean(axis=0).astype(rows_vd.dtype)     # (D,)
  body = rows_vd.copy()
  special = np.stack([mean] * NUM_SPECIAL)                                 # (3, D)
  if eos_row is not None:
    special[EOS_ID] = rows_vd[eos_row]
    body[eos_row] = mean
  assert (PAD_ID, EOC_ID) == (0, 2)
  return np.concatenate([special, body])


class _Tensors:
  """A checkpoint's tensors by name without the base-model prefix, read one at a time."""

  def __init__(self, path: str):
    index = os.path.join(path, INDEX_FILE)
    if os.path.exists(index):
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    else:
      files = ["model.safetensors"]
    self._where = {}
    for file in files:
      handle = safe_open(os.path.join(path, file), framework="numpy")
      for name in handle.keys():
        self._where[_strip_prefix(name)] = (handle, name)

  def has(self, name: str) -> bool:
    return name in self._where

  def get(self, name: str) -> np.ndarray:
    if name not in self._where and name in LM_HEAD_ALIASES:
      name = next((a for a in LM_HEAD_ALIASES if a in self._where), name)
    if name not in self._where:
      raise KeyError(f"tensor {name!r} not found in the checkpoint")
    handle, full_name = self._where[name]
    return handle.get_tensor(full_name)


def _strip_prefix(name: str) -> str:
  for prefix in set(PREFIXES.values()):
    if name.startswith(prefix):
      return name[len(prefix):]
  return name


def _read_heads(path: str) -> dict[str, np.ndarray]:
  file = os.path.join(path, HEADS_FILE)
  if not os.path.exists(file):
    return {}
  with safe_open(file, framework="numpy") as f:
    return {k: f.get_tensor(k) for k in f.keys()}


def _lm_head_rule(cfg: ModelConfig, family: str) -> list[Rule]:
  return [] if cfg.tie_embeddings else [Rule(("unembed", "kernel"), (LM_HEAD[family],), "linear")]


def _dotted(path) -> str:
  return ".".join(str(getattr(k, "key", k)) for k in path)


def from_pretrained(path: str | os.PathLike, dtype: str = "float32", *, param_dtype: str | None = None,
                    special_tokens: bool = False, key: jax.Array | None = None,
                    shardings: Callable | None = None):
  """(graphdef, params) of a checkpoint directory (module docstring).

  dtype: compute dtype; param_dtype: storage dtype (default: dtype). special_tokens: the
  hh-jax vocabulary (ids shifted by 3; module docstring). key: draws the heads the checkpoint
  lacks (None: zeros). shardings(abstract params) -> a pytree of shardings: each tensor is
  read, converted and put on its devices one at a time, so no host or device ever holds a
  full replica of a large model.
  """
  path = os.fspath(path)
  hf = read_config(path)
  cfg = model_config_from_hf(hf).replace(dtype=dtype, param_dtype=param_dtype or dtype)
  add_rows = special_tokens and not hf.get(SPECIAL_TOKENS_KEY, False)
  if add_rows:
    cfg = cfg.replace(vocab_size=cfg.vocab_size + NUM_SPECIAL)
  graphdef, abstract = api.abstract_init(cfg)
  family, tensors, heads = hf["model_type"], _Tensors(path), _read_heads(path)
  values = {}
  for rule in body_rules(cfg, family) + _lm_head_rule(cfg, family):
    dotted = ".".join(rule.path)
    if dotted in heads:                       # an untied PM's LM head
      values[dotted] = heads[dotted]
      continue
    value = to_hh(rule.kind, [tensors.get(n) for n in rule.names], cfg)
    if add_rows and rule.path[0] in ("embed", "unembed"):
      rows = value if rule.path[0] == "embed" else value.T
      value = with_special_rows(rows, checkpoint_eos_id(hf))
      value = value if rule.path[0] == "embed" else value.T
    values[dotted] = value
  if tensors.has(SCORE):
    values.setdefault("score_head.kernel", tensors.get(SCORE).T)
  values = {**values, **{k: v for k, v in heads.items() if k not in values}}
  return graphdef, _place(abstract, values, key, shardings)


def _place(abstract, values: dict, key, shardings):
  """The params pytree: each leaf from `values` (or a fresh head), cast and put on its devices."""
  placement = shardings(abstract) if shardings is not None else None
  keys = iter(jax.random.split(key, 4)) if key is not None else None

  def leaf(path, spec, sharding=None):
    name = _dotted(path)
    if name in values:
      value = np.asarray(values[name]).astype(spec.dtype)
    elif name.split(".")[0] in ("score_head", "value_head"):
      fresh = name.endswith("kernel") and keys is not None
      value = np.asarray(head_init(spec.shape[0])(next(keys), spec.shape, spec.dtype)) if fresh \
          else np.zeros(spec.shape, spec.dtype)
    else:
      raise KeyError(f"parameter {name} not found in the checkpoint")
    if value.shape != spec.shape:
      raise ValueError(f"parameter {name}: checkpoint shape {value.shape}, model shape {spec.shape}")
    return jax.device_put(value, sharding) if sharding is not None else jax.numpy.asarray(value)

  if placement is None:
    return jax.tree_util.tree_map_with_path(leaf, abstract)
  return jax.tree_util.tree_map_with_path(leaf, abstract, placement)


def save_pretrained(path: str | os.PathLike, graphdef, params, tokenizer=None, *,
                    score_head: bool = False, special_tokens: bool = True,
                    max_shard_bytes: int = 4 << 30) -> None:
  """Write a checkpoint directory that transformers loads (module docstring).

  score_head: a one-label sequence classifier (a PM) instead of a causal LM (a policy).
  special_tokens: the vocabulary has hh-jax's PAD, EOS, EOC at ids 0..2 (every hh-jax run's
  does; a raw `from_pretrained` model's does not). tokenizer: anything with `save_hf(path)`
  (`hh_jax.data.tokenizers`), written beside the weights. Files over max_shard_bytes are split
  into model-0000i-of-0000n.safetensors with an index, as transformers shards.
  """
  path = os.fspath(path)
  os.makedirs(path, exist_ok=True)
  cfg = api.config_of(graphdef, params)
  family = family_of(cfg)
  flat = {_dotted(p): np.asarray(jax.device_get(v)) for p, v in
          jax.tree_util.tree_flatten_with_path(params)[0]}
  rules = body_rules(cfg, family) + ([] if score_head else _lm_head_rule(cfg, family))
  tensors, written = {}, set()
  for rule in rules:
    dotted = ".".join(rule.path)
    top = rule.path[0] == "unembed"
    for name, value in zip(rule.names, to_hf(rule.kind, flat[dotted], cfg)):
      tensors[name if top else PREFIXES[family] + name] = value
    written.add(dotted)
  if score_head:
    tensors[SCORE] = np.ascontiguousarray(flat["score_head.kernel"].T)          # (1, D)
    written.add("score_head.kernel")
  _write_shards(path, tensors, max_shard_bytes)
  save_file({k: v for k, v in flat.items() if k not in written}, os.path.join(path, HEADS_FILE),
            metadata=_SAFETENSORS_METADATA)
  special = {"pad": PAD_ID, "eos": EOS_ID} if special_tokens else None
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config_from_model(cfg, score_head=score_head, special_ids=special), f, indent=2)
  if tokenizer is not None:
    tokenizer.save_hf(path)


def _write_shards(path: str, tensors: dict[str, np.ndarray], max_shard_bytes: int) -> None:
  """model.safetensors, or shards of at most max_shard_bytes (one tensor may exceed it) + index."""
  shards, size = [[]], 0
  for name, value in tensors.items():
    if shards[-1] and size + value.nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append(name)
    size += value.nbytes
  if len(shards) == 1:
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata=_SAFETENSORS_METADATA)
    return
  weight_map = {}
  for i, names in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file({n: tensors[n] for n in names}, os.path.join(path, file), metadata=_SAFETENSORS_METADATA)
    weight_map.update({n: file for n in names})
  total = int(sum(v.nbytes for v in tensors.values()))
  with open(os.path.join(path, INDEX_FILE), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
