"""Experiments as files: the only source of run configs.

An experiment file (see experiments/) defines

    NEEDS           names of the experiments whose runs its configs point at (default ())
    AXES            the grid's values by axis name, e.g. {"sizes": (...), "seeds": (0, 1)}
    get_config()    the base config (RunConfig, PPOConfig, BestOfNConfig, EloConfig)
    get_sweep(axes) a list of override dicts, one per run; a value may be `ref(...)` (one
                    finished run of another experiment) or `refs(...)` (all matching runs)
    run_name(o)     optional: the directory name of the run with overrides `o` (a point may
                    instead carry its name under the key "_name")

Every run of experiment E lands in `<root>/E/<run name>`; a ref resolves against the same
root, by matching config values of E's runs (`ref("base_lm", model_size="25k")`), or by
run name (`ref("ppo", name="policy-25k-pm-25k")`).

A `Preset` (experiments/presets.py) names the experiments of a reproduction in order, the
axis values they share, and per-experiment config overrides. `plan` turns an experiment
(under a preset or its own defaults) into `PlannedRun`s: the one function that both
`hh-jax sweep` and `hh-jax reproduce` use.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
from typing import Any

import experiments as experiments_package
from hh_jax.config import override
from hh_jax.data import hh_synth

EXPERIMENTS_DIR = os.path.dirname(os.path.abspath(experiments_package.__file__))


@dataclasses.dataclass(frozen=True)
class Ref:
  """A finished run (or, with many=True, every matching run) of another experiment."""

  experiment: str
  where: tuple[tuple[str, Any], ...]
  many: bool = False

  def __str__(self) -> str:
    return ",".join(f"{k}={v}" for k, v in self.where)


def ref(experiment: str, **where) -> Ref:
  """The one run of `experiment` whose config has these values (or whose name is `name`)."""
  return Ref(experiment, tuple(where.items()))


def refs(experiment: str, **where) -> Ref:
  """Every run of `experiment` whose config has these values, in the sweep's order."""
  return Ref(experiment, tuple(where.items()), many=True)


@dataclasses.dataclass(frozen=True)
class Preset:
  """A reproduction: experiments in order, shared axis values, per-experiment overrides."""

  name: str
  stages: tuple[str, ...]
  axes: dict = dataclasses.field(default_factory=dict)
  overrides: dict = dataclasses.field(default_factory=dict)     # experiment -> {field: value}
  expected_minutes: str = ""
  has_gold: bool = True


@dataclasses.dataclass(frozen=True)
class PlannedRun:
  experiment: str
  name: str
  dir: str
  overrides: dict            # the run's own overrides, refs resolved to run directories
  config: Any


class ExperimentError(ValueError):
  """A bad experiment file, axis or reference (user-facing: one message, no traceback)."""


# ----------------------------------------------------------------------------- files


def experiment_path(name_or_path: str) -> str:
  """experiments/<name>.py for a bare name; a path as it is."""
  if name_or_path.endswith(".py") or os.sep in name_or_path:
    return name_or_path
  return os.path.join(EXPERIMENTS_DIR, f"{name_or_path}.py")


def experiment_name(name_or_path: str) -> str:
  return os.path.splitext(os.path.basename(name_or_path))[0]


@functools.lru_cache(maxsize=None)
def load_experiment(name_or_path: str):
  """Import an experiment file as a module (it must define get_config and get_sweep)."""
  path = experiment_path(name_or_path)
  if not os.path.exists(path):
    raise ExperimentError(f"experiment file {path} not found")
  module_name = "hh_jax_experiment_" + re.sub(r"\W", "_", experiment_name(path))
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for fn in ("get_config", "get_sweep"):
    if not hasattr(module, fn):
      raise ExperimentError(f"{path} does not define {fn}()")
  return module


def default_run_name(overrides: dict[str, Any]) -> str:
  """{"model_size": "1k", "seed": 0} -> "model_size=1k,seed=0" (short keys; refs by their values)."""
  if not overrides:
    return "default"
  parts = []
  for key, value in overrides.items():
    if isinstance(value, (tuple, list)):
      value = len(value)
    elif isinstance(value, str) and "/" in value:
      value = os.path.basename(os.path.normpath(value))
    parts.append(f"{key.split('.')[-1]}={value}")
  return re.sub(r"[^\w.,=+-]", "_", ",".join(parts))


# ----------------------------------------------------------------------------- planning


def axes_of(module, preset: Preset | None, axes: dict | None) -> dict:
  """The file's AXES, with the preset's values and then `axes` for the names it uses."""
  out = dict(getattr(module, "AXES", {}))
  for source in ((preset.axes if preset else {}), axes or {}):
    out.update({k: v for k, v in source.items() if k in out})
  return out


def config_value(cfg, key: str):
  """The value of the field whose dotted name is `key` or ends in `.key` (first match)."""
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if f.name == key:
      return value
    if dataclasses.is_dataclass(value):
      found = config_value(value, key)
      if found is not _MISSING:
        return found
  return _MISSING


_MISSING = object()


def resolve(r: Ref, runs: list[PlannedRun]):
  """The run directory (or directories) a Ref points at, among an experiment's planned runs."""
  def matches(run):
    return all((run.name == v) if k == "name" else (config_value(run.config, k) == v)
               for k, v in r.where)
  found = [run.dir for run in runs if matches(run)]
  if r.many:
    return tuple(found)
  if len(found) != 1:
    raise ExperimentError(f"ref({r.experiment!r}, {r}) matches {len(found)} runs of "
                          f"{r.experiment}; expected exactly one (its runs: "
                          f"{', '.join(x.name for x in runs)})")
  return found[0]


def plan(experiment: str, root: str, preset: Preset | None = None, axes: dict | None = None,
         extra: dict | None = None, data_dir: str | None = None,
         world_seed: int = 0) -> list[PlannedRun]:
  """Every run of `experiment` (a name or a file) under `root`: name, directory, config.

  config = base config <- the preset's overrides for it <- the run's sweep overrides (refs
  resolved against the needed experiments, planned under the same preset and axes) <- extra,
  with every `data_dir` field set to data_dir when one is given, then moved to world
  `world_seed` (`in_world`; refs match the configs before the move).
  """
  runs = _plan(experiment, root, preset, axes, extra, data_dir)
  if world_seed:
    runs = [dataclasses.replace(r, config=in_world(r.config, world_seed)) for r in runs]
  return runs


WORLD_SEED_STRIDE = 1000
DATASET_FIELDS = ("dataset", "prompt_dataset", "eval_prompt_dataset")   # fields naming TFDS data


def in_world(cfg, world_seed: int):
  """`cfg` in another synthetic world: every hh_synth dataset (the fields of DATASET_FIELDS)
  drawn from world `world_seed` (`hh_synth/mix` -> `hh_synth/mix-w3`) and every `seed` field
  re-drawn, seed -> seed + 1000 world_seed, so no init, data order or
  sampling stream is shared with another world; world 0 is the configs as written."""
  if world_seed < 0:
    raise ExperimentError(f"world seed must be >= 0, got {world_seed}")

  def move(name: str, value):
    if name in DATASET_FIELDS and isinstance(value, str):
      return hh_synth.in_world(value, world_seed)
    if name == "seed" and isinstance(value, int):
      return value + WORLD_SEED_STRIDE * world_seed
    return value

  return map_fields(cfg, move)


def _plan(experiment: str, root: str, preset: Preset | None, axes: dict | None,
          extra: dict | None, data_dir: str | None) -> list[PlannedRun]:
  module = load_experiment(experiment)
  name = experiment_name(experiment)
  axes_here = axes_of(module, preset, axes)
  needed = {dep: _plan(dep, root, preset, axes, None, None) for dep in getattr(module, "NEEDS", ())}
  base = override(module.get_config(), (preset.overrides.get(name, {}) if preset else {}))
  namer = getattr(module, "run_name", default_run_name)
  runs = []
  for point in module.get_sweep(axes_here):
    point = dict(point)
    run = point.pop("_name", None) or namer(point)
    resolved = {}
    for key, value in point.items():
      if isinstance(value, Ref):
        if value.experiment not in needed:
          raise ExperimentError(f"{experiment}: a ref to {value.experiment!r}, which is not in NEEDS")
        value = resolve(value, needed[value.experiment])
      resolved[key] = value
    cfg = override(base, {**resolved, **(extra or {})})
    cfg = with_field(cfg, "data_dir", data_dir) if data_dir else cfg
    runs.append(PlannedRun(name, run, os.path.join(root, name, run), resolved, cfg))
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise ExperimentError(f"{experiment}: two runs share a directory name ({names})")
  return runs


def map_fields(cfg, change):
  """`cfg` with every field at any depth replaced by change(name, value), which returns the new
  value (or `value` to keep it); a nested config that `change` keeps is mapped field by field."""
  changes = {}
  for f in dataclasses.fields(cfg):
    current = getattr(cfg, f.name)
    new = change(f.name, current)
    if new is current and dataclasses.is_dataclass(current):
      new = map_fields(current, change)
    changes[f.name] = new
  return dataclasses.replace(cfg, **changes)


def with_field(cfg, field: str, value):
  """`cfg` with every field called `field` (at any depth) set to `value` (e.g. data_dir)."""
  return map_fields(cfg, lambda name, current: value if name == field else current)


def datasets_of(runs: list[PlannedRun]) -> list[str]:
  """The TFDS datasets the runs read (the fields of DATASET_FIELDS), in order."""
  out = []
  for run in runs:
    for key in DATASET_FIELDS:
      value = config_value(run.config, key)
      if isinstance(value, str) and value not in out:
        out.append(value)
  return out
