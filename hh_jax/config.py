"""Typed, frozen run configs, with `key.path=value` overrides that fail on typos.

An experiment file's `get_config()` returns a `RunConfig`; `get_sweep()` returns a list
of override dicts applied with `override(cfg, {...})`. Configs round-trip through
`config.json` (`to_dict` / `from_dict`), which is how a run checks that it resumes
the same experiment.

Every value is checked when a config is built (`__post_init__` calls `validate_fields`),
so a bad value fails before anything is written: against its field's declared type
(a bool is not an int; an int is a fine float) and the rule declared next to it with
`config_field(default, choices=..., ge=..., gt=..., le=..., lt=..., check=...)`. Errors
are `ConfigError`s naming the field's dotted path, the value and what is allowed; the
`override` path (`--set key=value`) only parses values and leaves every check to the
same code, so it gives the same messages.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import numbers
import types
import typing
from typing import Any, Callable

import numpy as np


class ConfigError(ValueError):
  """A config value that breaks its field's type or rule.

  `field` is the path inside the config that raised, `where` the config's own path
  (e.g. "data"); the message names `path` = where.field.
  """

  def __init__(self, where: str, field: str, value: Any, allowed: str):
    self.where, self.field, self.value, self.allowed = where, field, value, allowed
    super().__init__(f"config field {self.path!r} = {value!r} is not allowed: expected {allowed}")

  @property
  def path(self) -> str:
    return f"{self.where}.{self.field}" if self.where else self.field

  def __reduce__(self):  # picklable, e.g. across processes
    return ConfigError, (self.where, self.field, self.value, self.allowed)

  def at(self, where: str) -> "ConfigError":
    """The same error, for the config that lives at `where` (its actual dotted path)."""
    return ConfigError(where, self.field, self.value, self.allowed)


def config_field(default: Any, *, choices: Any = None, ge: Any = None, gt: Any = None, le: Any = None,
                 lt: Any = None, check: tuple[Callable[[Any], bool], str] | None = None) -> Any:
  """A dataclass field whose rule travels in its metadata (read by `validate_fields`).

  choices: the allowed values (or a function returning them, read when checked);
  ge / gt / le / lt: inclusive / exclusive bounds; check: (predicate, what it allows).
  The rule applies to non-None values; whether None is allowed is the field's type.
  """
  rule = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "check": check}
  return dataclasses.field(default=default, metadata={k: v for k, v in rule.items() if v is not None})


def ladder_names() -> tuple[str, ...]:
  """The model sizes `RunConfig.model_size` may name: the keys of `hh_jax.models.LADDER`
  (imported when first checked, so importing this module does not import JAX)."""
  from hh_jax.models.config import LADDER
  return tuple(LADDER)


@functools.lru_cache(maxsize=None)
def _field_types(cls) -> dict[str, Any]:
  """Field name -> declared type (annotations resolved), per dataclass."""
  return typing.get_type_hints(cls)


def _accepts(typ: Any, cls: type) -> bool:
  """Whether declared type `typ` is `cls` or a union holding it."""
  if typing.get_origin(typ) in (typing.Union, types.UnionType):
    return cls in typing.get_args(typ)
  return typ is cls


def _type_matches(value: Any, typ: Any) -> bool:
  """Whether `value` is of declared type `typ`: unions, None, tuple[X, ...] / tuple[X, Y],
  dataclasses and plain classes; bool is not an int, an int (not a bool) is a float."""
  origin, args = typing.get_origin(typ), typing.get_args(typ)
  if typ is Any:
    return True
  if origin in (typing.Union, types.UnionType):
    return any(_type_matches(value, arg) for arg in args)
  if typ is type(None):
    return value is None
  if typ is bool:
    return isinstance(value, (bool, np.bool_))
  if typ is int:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
  if typ is float:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
  if origin is tuple:
    if not isinstance(value, tuple):
      return False
    if len(args) == 2 and args[1] is Ellipsis:
      return all(_type_matches(v, args[0]) for v in value)
    return len(value) == len(args) and all(_type_matches(v, a) for v, a in zip(value, args))
  if origin is not None:  # other generics (list[int], dict[...]): check the container only
    return isinstance(value, origin)
  return isinstance(value, typ) if isinstance(typ, type) else True


def _type_name(typ: Any) -> str:
  """How an error message writes a declared type: "int", "float", "int or None", ..."""
  origin, args = typing.get_origin(typ), typing.get_args(typ)
  if origin in (typing.Union, types.UnionType):
    return " or ".join(_type_name(a) for a in args)
  if typ is type(None):
    return "None"
  if origin is tuple:
    if len(args) == 2 and args[1] is Ellipsis:
      return f"a tuple of {_type_name(args[0])}"
    return f"a tuple ({', '.join(_type_name(a) for a in args)})"
  if typ is float:
    return "a float"
  if typ is int:
    return "an int"
  return getattr(typ, "__name__", str(typ))


def _rule_breach(value: Any, rule: dict) -> str | None:
  """None when non-None `value` obeys `rule` (a field's metadata), else what the rule allows."""
  if "choices" in rule:
    choices = rule["choices"]() if callable(rule["choices"]) else rule["choices"]
    if value not in choices:
      return "one of " + ", ".join(repr(c) for c in choices)
  bounds = [(key, sign, rule[key]) for key, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if key in rule]
  holds = {"ge": lambda b: value >= b, "gt": lambda b: value > b, "le": lambda b: value <= b,
           "lt": lambda b: value < b}  # NaN holds none of them
  if not all(holds[key](bound) for key, _, bound in bounds):
    return " and ".join(f"{sign} {bound!r}" for _, sign, bound in bounds)
  if "check" in rule:
    predicate, allows = rule["check"]
    if not predicate(value):
      return allows
  return None


def validate_fields(cfg: Any, where: str = "") -> None:
  """Checks every field of frozen config dataclass `cfg` against its declared type and
  its `config_field` rule (None skips the rule when the type allows None); raises a
  `ConfigError` naming `where.field`, the value and what is allowed. Call it first in
  `__post_init__`, with `where` = the path the config lives at ("" for a root config).
  Nested config fields need only be instances: they checked themselves when built.
  """
  hints = _field_types(type(cfg))
  for f in dataclasses.fields(cfg):
    typ, value = hints[f.name], getattr(cfg, f.name)
    optional = _accepts(typ, type(None))
    if not _type_matches(value, typ):
      note = " (a bool is not a number)" if isinstance(value, (bool, np.bool_)) else ""
      raise ConfigError(where, f.name, value, _type_name(typ) + note)
    if value is None:
      continue
    allowed = _rule_breach(value, f.metadata)
    if allowed is not None:
      raise ConfigError(where, f.name, value, allowed + (", or None" if optional else ""))


def _minus_one_or_positive(value: int) -> bool:
  return value == -1 or value >= 1


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh axes. -1 means "all remaining devices". Default: data parallel."""

  data: int = config_field(-1, check=(_minus_one_or_positive, "-1 (all remaining devices) or >= 1"))
  fsdp: int = config_field(1, check=(_minus_one_or_positive, "-1 (all remaining devices) or >= 1"))

  def __post_init__(self):
    validate_fields(self, "mesh")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with linear warm-up, then a constant, cosine or linear-to-zero schedule.

  The paper finetunes PMs at a fixed LR, so the learning curve is also the
  dataset-size curve; `schedule="constant"` is the default for that reason.
  """

  learning_rate: float = config_field(1e-3, gt=0)
  warmup_steps: int = config_field(10, ge=0)
  schedule: str = config_field("constant", choices=("constant", "cosine", "linear"))
  b1: float = config_field(0.9, ge=0, lt=1)
  b2: float = config_field(0.95, ge=0, lt=1)
  eps: float = config_field(1e-5, gt=0)          # Adam eps 1e-5 (Huang et al. RLHF details)
  weight_decay: float = config_field(0.0, ge=0)
  grad_clip_norm: float = config_field(1.0, ge=0)  # 0: no clipping

  def __post_init__(self):
    validate_fields(self, "optim")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which comparisons (or LM text) a run reads and how they are tokenized.

  Attributes:
    dataset: TFDS name, e.g. "hh_synth/mix", "hh_rlhf/harmless-base".
    data_dir: TFDS data_dir (None: $HH_JAX_DATA_DIR, else ~/tensorflow_datasets).
    manual_dir: where the raw release files are, for offline preparation.
    tokenizer: "auto" (world tokenizer for hh_synth, bytes for hh_rlhf), "byte", or a path.
    max_len: tokens per sequence (context is truncated from the left); at least 4, room
      for EOC beside a few tokens of context and reply.
    num_train_pairs: training examples to use (None: all). Sizes are in examples.
    helpful_fraction: if set, the fraction of helpful pairs in the training mix.
    harmless_weight: lambda in L = L_help + lambda * L_harm (paper Fig 27).
    train_split, eval_split: TFDS split names.
    num_eval_pairs: evaluation examples (None: all).
    split_half: 0 or 1 trains on one half of the training pool only (a fixed, seed-independent
      split), so "train" and "test" PMs see disjoint comparisons (paper section 4.2).
    packing: PM and LM steps compute packed rows (`hh_jax.data.packing`: a pair's context
      once, several pairs or documents per row, no padding but a row's tail) instead of
      padded rows; same scores, losses and gradients, same B examples per step.
  """

  dataset: str = "hh_synth/mix"
  data_dir: str | None = None
  manual_dir: str | None = None
  tokenizer: str = "auto"
  max_len: int = config_field(64, ge=4)
  num_train_pairs: int | None = config_field(None, ge=1)
  helpful_fraction: float | None = config_field(None, ge=0, le=1)
  harmless_weight: float = config_field(1.0, ge=0)
  train_split: str = "train"
  eval_split: str = "test"
  num_eval_pairs: int | None = config_field(2000, ge=1)
  split_half: int | None = config_field(None, choices=(0, 1))
  packing: bool = config_field(True, choices=(True, False))

  def __post_init__(self):
    validate_fields(self, "data")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One training run (LM pretraining or PM training).

  Attributes:
    kind: "lm" or "pm".
    model_size: a rung of `hh_jax.models.LADDER` ("1k" ... "3M", "13M" ... "52B").
    dtype: compute dtype ("float32", "bfloat16", "float16").
    seed: model init, data order and step keys all derive from it (>= 0).
    batch_size: sequences (LM) or pairs (PM) per step, across all devices.
    num_epochs: passes over the training data (the paper: 1).
    init_from: a finished run directory whose final params initialise this model
      (e.g. a base LM for a PM); the PM score head is freshly initialised.
    init_from_hf: a Hugging Face checkpoint directory (config.json + safetensors: GPT-2,
      GPT-NeoX/Pythia, Llama, Qwen2) whose architecture and weights this model starts from,
      in hh-jax's vocabulary (PAD, EOS, EOC added; docs/pretrained.md); model_size is then
      unused, and data.tokenizer must name the same directory.
    log_every, eval_every, checkpoint_every: in steps (0: only at the end).
    mesh: the device mesh.
  """

  kind: str = config_field("pm", choices=("lm", "pm"))
  model_size: str = config_field("25k", choices=ladder_names)
  dtype: str = config_field("float32", choices=("float32", "bfloat16", "float16"))
  seed: int = config_field(0, ge=0)
  batch_size: int = config_field(32, ge=1)
  num_epochs: int = config_field(1, ge=1)
  init_from: str | None = None
  init_from_hf: str | None = None
  log_every: int = config_field(10, ge=0)
  eval_every: int = config_field(0, ge=0)
  checkpoint_every: int = config_field(200, ge=0)
  data: DataConfig = DataConfig()
  optim: OptimConfig = OptimConfig()
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    validate_fields(self, "")
    if self.init_from_hf is not None and self.init_from is not None:
      raise ConfigError("", "init_from_hf", self.init_from_hf, "None when init_from is set")
    if self.init_from_hf is not None and self.data.tokenizer != self.init_from_hf:
      raise ConfigError("data", "tokenizer", self.data.tokenizer,
                        f"the init_from_hf directory {self.init_from_hf!r} (its tokenizer.json)")


def to_dict(cfg) -> dict:
  return dataclasses.asdict(cfg)


def from_dict(cls, d: dict, where: str = ""):
  """Build dataclass `cls` from a dict, naming any unknown key; values are checked by
  `cls` itself, and a `ConfigError` names the field's path below `where`."""
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
  try:
    return cls(**kwargs)
  except ConfigError as e:
    raise e.at(where.rstrip(".")) from None


def _parse(value: Any, typ: Any) -> Any:
  """An override value as the field would hold it; checking it is left to the config.

  A string (from the command line) is kept for str fields, "None"/"none" becomes None
  where the type allows None, anything else is read as a Python literal (kept as the
  string when it is not one). Then an int becomes a float for float fields and a list
  becomes a tuple.
  """
  if isinstance(value, str):
    if value.lower() == "none" and _accepts(typ, type(None)):
      return None
    if not _accepts(typ, str):
      try:
        value = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        pass
  if _accepts(typ, float) and not _accepts(typ, int) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(value, list):
    return tuple(value)
  return value


def override(cfg, overrides: dict[str, Any]):
  """Return `cfg` with dotted-path overrides applied, e.g. {"data.max_len": 128}.

  All changes to one config are applied together, so fields checked against each other
  (batch_size and minibatch_size) may change in one call. Unknown paths raise KeyError
  naming the path and the known fields there; bad values raise the `ConfigError` that
  building the config with them raises.
  """
  return _apply(cfg, [(dotted.split("."), value, dotted) for dotted, value in overrides.items()])


def _replace(cfg, where: str, **changes):
  """`dataclasses.replace`, with a `ConfigError` re-pathed to `where` (cfg's path)."""
  try:
    return dataclasses.replace(cfg, **changes)
  except ConfigError as e:
    raise e.at(where) from None


def _apply(cfg, items: list[tuple[list[str], Any, str]], where: str = ""):
  """Apply [(path parts, value, dotted name)] to `cfg` in one replace per config level."""
  names = {f.name for f in dataclasses.fields(cfg)}
  changes, nested = {}, {}
  for parts, value, dotted in items:
    head = parts[0]
    if head not in names:
      raise KeyError(f"unknown config field {dotted!r}: {type(cfg).__name__} has no {head!r}; "
                     f"known: {', '.join(sorted(names))}")
    if len(parts) == 1:
      changes[head] = _parse(value, _field_types(type(cfg))[head])
    else:
      nested.setdefault(head, []).append((parts[1:], value, dotted))
  for head, sub in nested.items():
    changes[head] = _apply(changes.get(head, getattr(cfg, head)), sub,
                           f"{where}.{head}" if where else head)
  return _replace(cfg, where, **changes) if changes else cfg


def parse_overrides(items: list[str]) -> dict[str, str]:
  """["a.b=1", "c=x"] -> {"a.b": "1", "c": "x"} (values parsed later, against the field type)."""
  out = {}
  for item in items:
    if "=" not in item:
      raise ValueError(f"override {item!r} is not of the form key.path=value")
    key, value = item.split("=", 1)
    out[key.strip()] = value.strip()
  return out
