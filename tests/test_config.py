"""Config validation: every value is checked when a config is built, and an error names
the field's dotted path, the bad value and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from hh_jax import config
from hh_jax.config import (ConfigError, DataConfig, MeshConfig, OptimConfig, RunConfig, config_field,
                           from_dict, override, parse_overrides, to_dict, validate_fields)
from hh_jax.models.config import LADDER


def _error(build) -> ConfigError:
  with pytest.raises(ConfigError) as info:
    build()
  return info.value


def test_defaults_and_every_ladder_rung_are_valid():
  cfg = RunConfig()
  assert from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
  for name in LADDER:
    assert RunConfig(model_size=name).model_size == name


@pytest.mark.parametrize("build, path, value", [
    (lambda: RunConfig(kind="rm"), "kind", "rm"),
    (lambda: RunConfig(dtype="float64"), "dtype", "float64"),
    (lambda: OptimConfig(schedule="cosin"), "optim.schedule", "cosin"),
    (lambda: DataConfig(split_half=2), "data.split_half", 2),
])
def test_enum_fields(build, path, value):
  e = _error(build)
  assert (e.path, e.value) == (path, value)
  assert f"'{path}'" in str(e) and repr(value) in str(e) and "one of" in str(e)


def test_schedule_message_lists_the_choices():
  message = str(_error(lambda: OptimConfig(schedule="cosin")))
  assert "'optim.schedule'" in message and "'cosin'" in message
  assert "'constant', 'cosine', 'linear'" in message


def test_model_size_must_be_a_ladder_rung():
  e = _error(lambda: RunConfig(model_size="2k"))
  assert e.path == "model_size" and "'2k'" in str(e)
  assert all(repr(name) in str(e) for name in LADDER)  # what is allowed


@pytest.mark.parametrize("build, path, value, allowed", [
    (lambda: DataConfig(num_train_pairs=-5), "data.num_train_pairs", -5, ">= 1, or None"),
    (lambda: DataConfig(num_train_pairs=0), "data.num_train_pairs", 0, ">= 1, or None"),
    (lambda: DataConfig(max_len=1), "data.max_len", 1, ">= 4"),
    (lambda: DataConfig(helpful_fraction=1.5), "data.helpful_fraction", 1.5, ">= 0 and <= 1, or None"),
    (lambda: DataConfig(num_eval_pairs=0), "data.num_eval_pairs", 0, ">= 1, or None"),
    (lambda: RunConfig(batch_size=0), "batch_size", 0, ">= 1"),
    (lambda: RunConfig(num_epochs=0), "num_epochs", 0, ">= 1"),
    (lambda: RunConfig(log_every=-1), "log_every", -1, ">= 0"),
    (lambda: RunConfig(checkpoint_every=-1), "checkpoint_every", -1, ">= 0"),
    (lambda: OptimConfig(learning_rate=0.0), "optim.learning_rate", 0.0, "> 0"),
    (lambda: OptimConfig(b2=1.0), "optim.b2", 1.0, ">= 0 and < 1"),
    (lambda: OptimConfig(warmup_steps=-1), "optim.warmup_steps", -1, ">= 0"),
    (lambda: MeshConfig(data=0), "mesh.data", 0, "-1 (all remaining devices) or >= 1"),
])
def test_range_fields(build, path, value, allowed):
  e = _error(build)
  assert (e.path, e.value, e.allowed) == (path, value, allowed)
  assert str(e) == f"config field {path!r} = {value!r} is not allowed: expected {allowed}"


def test_nan_is_out_of_every_range():
  e = _error(lambda: OptimConfig(learning_rate=float("nan")))
  assert e.path == "optim.learning_rate" and "nan" in str(e)


def test_error_pickles():
  e = _error(lambda: DataConfig(max_len=1))
  again = pickle.loads(pickle.dumps(e))
  assert (again.path, str(again)) == (e.path, str(e))


def test_range_edges_are_allowed():
  DataConfig(num_train_pairs=1, max_len=4, helpful_fraction=0, num_eval_pairs=None, split_half=1)
  DataConfig(helpful_fraction=1.0, num_train_pairs=None)
  RunConfig(log_every=0, checkpoint_every=0, eval_every=0, seed=0)
  OptimConfig(warmup_steps=0, learning_rate=1)  # an int where a float is declared is fine
  MeshConfig(data=-1, fsdp=2)


def test_bool_is_not_an_int():
  e = _error(lambda: RunConfig(batch_size=True))
  assert (e.path, e.value) == ("batch_size", True)
  assert "'batch_size' = True" in str(e) and "an int" in str(e) and "bool" in str(e)
  assert _error(lambda: DataConfig(num_train_pairs=False)).path == "data.num_train_pairs"
  assert _error(lambda: OptimConfig(learning_rate=True)).path == "optim.learning_rate"


def test_other_type_errors():
  assert _error(lambda: RunConfig(batch_size=1.5)).allowed == "an int"
  assert _error(lambda: DataConfig(max_len="64")).path == "data.max_len"
  assert _error(lambda: DataConfig(dataset=None)).path == "data.dataset"
  assert _error(lambda: RunConfig(data={"max_len": 64})).path == "data"


def test_nested_path_in_the_message():
  for build in (lambda: RunConfig(data=DataConfig(num_train_pairs=-5)),
                lambda: from_dict(RunConfig, {"data": {"num_train_pairs": -5}}),
                lambda: override(RunConfig(), {"data.num_train_pairs": -5})):
    e = _error(build)
    assert e.path == "data.num_train_pairs" and "'data.num_train_pairs' = -5" in str(e)


@pytest.mark.parametrize("item, direct", [
    ("data.num_train_pairs=-5", lambda: RunConfig(data=DataConfig(num_train_pairs=-5))),
    ("batch_size=True", lambda: RunConfig(batch_size=True)),
    ("optim.schedule=cosin", lambda: RunConfig(optim=OptimConfig(schedule="cosin"))),
    ("model_size=2k", lambda: RunConfig(model_size="2k")),
    ("data.max_len=1", lambda: RunConfig(data=DataConfig(max_len=1))),
    ("batch_size=abc", lambda: RunConfig(batch_size="abc")),
    ("mesh.fsdp=0", lambda: RunConfig(mesh=MeshConfig(fsdp=0))),
])
def test_override_gives_the_same_message(item, direct):
  from_command_line = _error(lambda: override(RunConfig(), parse_overrides([item])))
  assert str(from_command_line) == str(_error(direct))
  assert f"'{item.split('=')[0]}'" in str(from_command_line)


def test_override_parses_values_for_the_field_type():
  cfg = override(RunConfig(), parse_overrides(["data.num_eval_pairs=None", "optim.learning_rate=1",
                                               "data.num_train_pairs=4000", "data.data_dir=None",
                                               "init_from=/runs/lm", "kind=lm"]))
  assert cfg.data.num_eval_pairs is None and cfg.data.data_dir is None
  assert cfg.optim.learning_rate == 1.0 and isinstance(cfg.optim.learning_rate, float)
  assert (cfg.data.num_train_pairs, cfg.init_from, cfg.kind) == (4000, "/runs/lm", "lm")
  with pytest.raises(KeyError, match="data.max_lenn"):
    override(RunConfig(), {"data.max_lenn": 3})


@dataclasses.dataclass(frozen=True)
class _OtherConfig:
  """Any frozen config dataclass can reuse the mechanism (as PPOConfig does)."""

  names: tuple[str, ...] = ()
  size: int | None = config_field(None, ge=2)
  mode: str = config_field("a", choices=("a", "b"))
  optim: OptimConfig = OptimConfig()

  def __post_init__(self):
    validate_fields(self)


def test_mechanism_is_reusable_by_other_configs():
  assert _OtherConfig(names=("x", "y"), size=2, mode="b").size == 2
  assert _error(lambda: _OtherConfig(names=("x", 3))).path == "names"
  assert _error(lambda: _OtherConfig(names=["x"])).path == "names"  # a list is not a tuple
  assert _error(lambda: _OtherConfig(size=1)).allowed == ">= 2, or None"
  assert _error(lambda: _OtherConfig(mode="c")).path == "mode"
  assert _error(lambda: override(_OtherConfig(), {"optim.eps": "0"})).path == "optim.eps"
  assert override(_OtherConfig(), {"names": "['x', 'y']"}).names == ("x", "y")
  assert config.ladder_names() == tuple(LADDER)


def test_every_run_kind_config_validates_its_fields():
  """PPO and the evaluation kinds use the same checks, with the same messages."""
  from hh_jax.train.evals import BestOfNConfig, EloConfig
  from hh_jax.train.ppo import PPOConfig
  for cfg, overrides, field in ((PPOConfig(), {"kl_coef": -1}, "kl_coef"),
                                (PPOConfig(), {"num_iterations": True}, "num_iterations"),
                                (PPOConfig(), {"batch_size": 30}, "minibatch_size"),
                                (PPOConfig(), {"optim.schedule": "cosin"}, "optim.schedule"),
                                (BestOfNConfig(), {"n_max": 0}, "n_max"),
                                (EloConfig(), {"reward": "gold"}, "reward")):
    with pytest.raises(ConfigError, match=f"'{field}'"):
      override(cfg, overrides)
