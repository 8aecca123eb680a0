"""LM and PM runs share one Task builder: model init (optionally from another run), the
optimizer, mesh placement and the jitted step over a resumable batch iterator."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax

from hh_jax import models
from hh_jax import distributed
from hh_jax import sharding as shd
from hh_jax.config import RunConfig
from hh_jax.train import lifecycle
from hh_jax.train.optim import init_train_state, make_optimizer


def model_config_of(cfg: RunConfig, vocab_size: int) -> models.ModelConfig:
  """The ladder rung `cfg.model_size` at this run's vocabulary, length and dtype."""
  return models.ladder_config(cfg.model_size, vocab_size=vocab_size, max_len=cfg.data.max_len,
                              dtype=cfg.dtype)


def init_from_run(run_dir: str, params: dict) -> dict:
  """Every parameter of a finished run, in place of `params`.

  From an LM (a base model) the score head stays freshly initialised: a PM from an LM, as in
  the paper. From a PM (preference-model pretraining, PMP) the score head is kept too, so
  finetuning continues from the pretrained PM (LM -> PMP -> finetuning).
  """
  src = lifecycle.load_model(run_dir)
  shapes = lambda p: jax.tree.map(lambda x: x.shape, {k: v for k, v in p.items() if k != "score_head"})  # noqa: E731
  if shapes(params) != shapes(src.params):
    raise lifecycle.RunError(f"init_from={run_dir}: its model ({src.cfg}) does not match this "
                             f"run's shapes")
  if lifecycle.read_config_field(run_dir, "kind") == "pm":
    return src.params
  return {**src.params, "score_head": params["score_head"]}


def model_name(cfg: RunConfig) -> str:
  """The size a run reports: its ladder rung, or the name of its HF checkpoint directory."""
  return os.path.basename(os.path.normpath(cfg.init_from_hf)) if cfg.init_from_hf else cfg.model_size


def initial_model(cfg: RunConfig, vocab_size: int, key: jax.Array):
  """(model_cfg, graphdef, params): the ladder rung (optionally `init_from` a run), or the HF
  checkpoint `init_from_hf` in hh-jax's vocabulary with float32 params and heads drawn from key."""
  if not cfg.init_from_hf:
    model_cfg = model_config_of(cfg, vocab_size)
    graphdef, params = models.init(model_cfg, key)
    return model_cfg, graphdef, init_from_run(cfg.init_from, params) if cfg.init_from else params
  graphdef, params = models.from_pretrained(cfg.init_from_hf, dtype=cfg.dtype, param_dtype="float32",
                                            special_tokens=True, key=key)
  model_cfg = models.config_of(graphdef, params)
  if vocab_size > model_cfg.vocab_size or cfg.data.max_len > model_cfg.max_len:
    raise lifecycle.RunError(
        f"init_from_hf={cfg.init_from_hf}: the model has {model_cfg.vocab_size} ids and "
        f"{model_cfg.max_len} positions; the data needs {vocab_size} ids and {cfg.data.max_len}")
  return model_cfg, graphdef, params


def supervised_task(cfg: RunConfig, vocab_size: int, batches, num_examples: int, make_step,
                    hparams, finish: Callable[[Any, Any, models.ModelConfig], lifecycle.Outputs],
                    to_input: Callable[[Any], dict], **task_fields) -> lifecycle.Task:
  """An LM or PM Task: `make_step(graphdef, optimizer, shardings=...)` over `batches`.

  to_input: host batch -> the step's input dict (then sharded over the mesh's data axis).
  finish(graphdef, params, model_cfg) evaluates the final params.
  """
  num_steps = len(batches) * cfg.num_epochs
  init_key, step_key = jax.random.split(jax.random.key(cfg.seed))
  model_cfg, graphdef, params = initial_model(cfg, vocab_size, init_key)
  optimizer = make_optimizer(cfg.optim, num_steps)
  mesh = shd.make_mesh(cfg.mesh)
  state = init_train_state(params, optimizer, hparams)
  state_sh = shd.state_shardings(mesh, state)
  step = make_step(graphdef, optimizer, shardings=(state_sh, shd.batch_sharding(mesh)))

  def finish_state(state):
    params = distributed.fetch(state["params"])   # gathered from every process
    out = finish(graphdef, params, model_cfg)
    out.model = (model_cfg, params)
    out.summary.update({
        "model_size": model_name(cfg), "params/non_embedding": models.count_params(model_cfg),
        "params/total": models.count_params(model_cfg, non_embedding=False),
        "data/dataset": cfg.data.dataset, "data/num_train": num_examples,
        "data/examples_seen": num_steps * cfg.batch_size})
    return out

  return lifecycle.Task(
      state=jax.device_put(state, state_sh), step=step, batches=batches, num_steps=num_steps,
      key=step_key, finish=finish_state, log_every=cfg.log_every,
      checkpoint_every=cfg.checkpoint_every, examples_per_step=cfg.batch_size,
      to_device=lambda b: shd.shard_batch(mesh, to_input(b)), **task_fields)
