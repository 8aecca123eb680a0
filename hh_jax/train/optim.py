"""Optimizer and train state: a plain pytree {step, params, opt_state, hparams}.

The learning rate lives in the optimizer state (`optax.inject_hyperparams`), and the
hyperparameters that sweeps vary (loss weights, KL coefficients, clip ranges) live in
`state["hparams"]` as float32 scalars: both are traced, so changing them never
recompiles a step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from hh_jax.config import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
  """Linear warm-up to `learning_rate` over `warmup_steps`, then constant / cosine / linear to 0."""
  warmup = max(0, min(cfg.warmup_steps, total_steps - 1))
  decay_steps = max(1, total_steps - warmup)
  if cfg.schedule == "constant":
    after = optax.constant_schedule(cfg.learning_rate)
  elif cfg.schedule == "cosine":
    after = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps)
  elif cfg.schedule == "linear":
    after = optax.linear_schedule(cfg.learning_rate, 0.0, decay_steps)
  else:
    raise ValueError(f"optim.schedule must be constant|cosine|linear, got {cfg.schedule!r}")
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), after],
                              [warmup])


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
  """clip_by_global_norm -> AdamW(schedule), with the LR injected into the state."""
  schedule = learning_rate_schedule(cfg, total_steps)
  adamw = optax.inject_hyperparams(optax.adamw)(
      learning_rate=schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
  if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adamw)
  return adamw


def current_learning_rate(opt_state) -> jax.Array:
  """The LR the injected AdamW will use at this step (for logging)."""
  for s in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "hyperparams")):
    if hasattr(s, "hyperparams"):
      return s.hyperparams["learning_rate"]
  return jnp.float32(jnp.nan)


def init_train_state(params, optimizer: optax.GradientTransformation, hparams: dict | None = None):
  """{step: 0, params, opt_state, hparams} with hparams as float32 scalars."""
  return {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "opt_state": optimizer.init(params),
      "hparams": {k: jnp.float32(v) for k, v in (hparams or {}).items()},
  }


def jit_train_step(step, donate: bool = True, shardings=None):
  """jax.jit a `step(state, batch, key) -> (state, metrics)`, the state donated.

  shardings: optional (state_shardings, batch_sharding) pinning layouts on a mesh; the key
  and the metrics are replicated.
  """
  donate_argnums = (0,) if donate else ()
  if shardings is None:
    return jax.jit(step, donate_argnums=donate_argnums)
  state_shardings, batch_sharding = shardings
  replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
  return jax.jit(step, donate_argnums=donate_argnums,
                 in_shardings=(state_shardings, batch_sharding, replicated),
                 out_shardings=(state_shardings, replicated))


def apply_gradients(state, grads, optimizer: optax.GradientTransformation):
  """One optimizer update: params <- params + update(grads); step <- step + 1."""
  updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
  return {**state, "step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
          "opt_state": opt_state}
