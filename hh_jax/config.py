"""Typed, frozen run configs, with `key.path=value` overrides that fail on typos.

An experiment file's `get_config()` returns a `RunConfig`; `get_sweep()` returns a list
of override dicts applied with `override(cfg, {...})`. Configs round-trip through
`config.json` (`to_dict` / `from_dict`), which is how a run checks that it resumes
the same experiment.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh axes. -1 means "all remaining devices". Default: data parallel."""

  data: int = -1
  fsdp: int = 1


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with linear warm-up, then a constant, cosine or linear-to-zero schedule.

  The paper finetunes PMs at a fixed LR, so the learning curve is also the
  dataset-size curve; `schedule="constant"` is the default for that reason.
  """

  learning_rate: float = 1e-3
  warmup_steps: int = 10
  schedule: str = "constant"      # constant | cosine | linear
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-5               # Adam eps 1e-5 (Huang et al. RLHF details)
  weight_decay: float = 0.0
  grad_clip_norm: float = 1.0


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which comparisons (or LM text) a run reads and how they are tokenized.

  Attributes:
    dataset: TFDS name, e.g. "hh_synth/mix", "hh_rlhf/harmless-base".
    data_dir: TFDS data_dir (None: $HH_JAX_DATA_DIR, else ~/tensorflow_datasets).
    manual_dir: where the raw release files are, for offline preparation.
    tokenizer: "auto" (world tokenizer for hh_synth, bytes for hh_rlhf), "byte", or a path.
    max_len: tokens per sequence (context is truncated from the left).
    num_train_pairs: training examples to use (None: all). Sizes are in examples.
    helpful_fraction: if set, the fraction of helpful pairs in the training mix.
    harmless_weight: lambda in L = L_help + lambda * L_harm (paper Fig 27).
    train_split, eval_split: TFDS split names.
    num_eval_pairs: evaluation examples (None: all).
    split_half: 0 or 1 trains on one half of the training pool only (a fixed, seed-independent
      split), so "train" and "test" PMs see disjoint comparisons (paper section 4.2).
  """

  dataset: str = "hh_synth/mix"
  data_dir: str | None = None
  manual_dir: str | None = None
  tokenizer: str = "auto"
  max_len: int = 64
  num_train_pairs: int | None = None
  helpful_fraction: float | None = None
  harmless_weight: float = 1.0
  train_split: str = "train"
  eval_split: str = "test"
  num_eval_pairs: int | None = 2000
  split_half: int | None = None


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One training run (LM pretraining or PM training).

  Attributes:
    kind: "lm" or "pm".
    model_size: a rung of `hh_jax.models.LADDER` ("1k" ... "3M", "13M" ... "52B").
    dtype: compute dtype ("float32", "bfloat16").
    seed: model init, data order and step keys all derive from it.
    batch_size: sequences (LM) or pairs (PM) per step, across all devices.
    num_epochs: passes over the training data (the paper: 1).
    init_from: a finished run directory whose final params initialise this model
      (e.g. a base LM for a PM); the PM score head is freshly initialised.
    log_every, eval_every, checkpoint_every: in steps (0: only at the end).
    mesh: the device mesh.
  """

  kind: str = "pm"
  model_size: str = "25k"
  dtype: str = "float32"
  seed: int = 0
  batch_size: int = 32
  num_epochs: int = 1
  init_from: str | None = None
  log_every: int = 10
  eval_every: int = 0
  checkpoint_every: int = 200
  data: DataConfig = DataConfig()
  optim: OptimConfig = OptimConfig()
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    if self.kind not in ("lm", "pm"):
      raise ValueError(f"RunConfig.kind must be 'lm' or 'pm', got {self.kind!r}")
    if self.batch_size <= 0:
      raise ValueError(f"RunConfig.batch_size must be positive, got {self.batch_size}")


def to_dict(cfg) -> dict:
  return dataclasses.asdict(cfg)


def _field_types(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def from_dict(cls, d: dict, where: str = ""):
  """Build dataclass `cls` from a dict, naming any unknown key."""
  hints = _field_types(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  kwargs = {}
  for key, value in d.items():
    path = f"{where}{key}"
    if key not in names:
      raise KeyError(f"unknown config field {path!r}; known: {', '.join(sorted(names))}")
    typ = hints[key]
    if dataclasses.is_dataclass(typ) and isinstance(value, dict):
      value = from_dict(typ, value, where=path + ".")
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[key] = value
  return cls(**kwargs)


def _coerce(value: Any, typ: Any, path: str) -> Any:
  """Coerce an override value (possibly a string from the command line) to `typ`."""
  origin = typing.get_origin(typ)
  args = typing.get_args(typ)
  if origin in (typing.Union, types.UnionType):
    if value is None or (isinstance(value, str) and value.lower() == "none"):
      if type(None) in args:
        return None
    errors = []
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _coerce(value, arg, path)
      except (TypeError, ValueError) as e:
        errors.append(str(e))
    raise ValueError(f"config field {path!r}: cannot use {value!r} ({'; '.join(errors)})")
  if isinstance(value, str) and typ is not str:
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      raise ValueError(f"config field {path!r}: cannot parse {value!r} as {typ}") from None
  if typ is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if origin is tuple:
    return tuple(value)
  if isinstance(typ, type) and not isinstance(value, typ):
    raise ValueError(f"config field {path!r} expects {typ.__name__}, got {value!r}")
  return value


def override(cfg, overrides: dict[str, Any]):
  """Return `cfg` with dotted-path overrides applied, e.g. {"data.max_len": 128}.

  Unknown paths raise KeyError naming the path and the known fields there.
  """
  for dotted, value in overrides.items():
    cfg = _set(cfg, dotted.split("."), value, dotted)
  return cfg


def _set(cfg, parts: list[str], value: Any, dotted: str):
  names = {f.name for f in dataclasses.fields(cfg)}
  head = parts[0]
  if head not in names:
    raise KeyError(f"unknown config field {dotted!r}: {type(cfg).__name__} has no {head!r}; "
                   f"known: {', '.join(sorted(names))}")
  if len(parts) == 1:
    typ = _field_types(type(cfg))[head]
    return dataclasses.replace(cfg, **{head: _coerce(value, typ, dotted)})
  return dataclasses.replace(cfg, **{head: _set(getattr(cfg, head), parts[1:], value, dotted)})


def parse_overrides(items: list[str]) -> dict[str, str]:
  """["a.b=1", "c=x"] -> {"a.b": "1", "c": "x"} (values coerced later, against the field type)."""
  out = {}
  for item in items:
    if "=" not in item:
      raise ValueError(f"override {item!r} is not of the form key.path=value")
    key, value = item.split("=", 1)
    out[key.strip()] = value.strip()
  return out
