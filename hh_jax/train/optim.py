"""Optimizer and train state: a plain pytree {step, params, opt_state, hparams}.

The learning rate lives in the optimizer state (`optax.inject_hyperparams`), and the
hyperparameters that sweeps vary (loss weights, KL coefficients, clip ranges) live in
`state["hparams"]` as float32 scalars: both are traced, so changing them never
recompiles a step.

On the CPU backend the train steps are compiled with CPU_TRAIN_STEP_COMPILER_OPTIONS.
"""

from __future__ import annotations

import functools
import warnings

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


def init_train_state(params, optimizer: optax.GradientTransformation, hparams=None):
  """{step: 0, params, opt_state, hparams}; hparams is a task's typed NamedTuple of traced
  scalars (e.g. `pm.PMHparams`), stored as float32 so changing a value never recompiles."""
  return {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "opt_state": optimizer.init(params),
      "hparams": jax.tree.map(jnp.float32, hparams if hparams is not None else {}),
  }


# XLA:CPU hands both dots and reductions (softmax, LayerNorm, bias gradients) to YNNPACK by
# default; YNNPACK's reductions are slower than XLA's own loops at our sizes. Keeping YNNPACK
# for dots only: PM-step tokens/s +2 to 37% at the laptop sizes 1k to 400k, neutral at 3M
# (`hh-jax bench`, README "Performance"; a 25k step's op time 61 -> 38 ms); an interleaved
# A/B on a shared 2-core machine gave 1k -1..+3%, 25k +10..13%, 100k +3..4%, 800k -2%, 3M 0%.
# The option is XLA:CPU-only (GPU/TPU compilers reject it), so it is used only when the
# default backend is CPU, and only if this jaxlib knows it (see cpu_compiler_options_supported).
CPU_TRAIN_STEP_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


@functools.cache
def cpu_compiler_options_supported() -> bool:
  """Whether XLA:CPU accepts CPU_TRAIN_STEP_COMPILER_OPTIONS (one tiny compile, once per process).

  The option is experimental: older jaxlibs reject it ("No such compile option"), newer ones
  may drop it. Then the steps compile with XLA's defaults, with a warning.
  """
  def cpu_options_probe(x):
    return x + 1.0

  probe = jax.jit(cpu_options_probe, compiler_options=CPU_TRAIN_STEP_COMPILER_OPTIONS)
  try:
    probe.lower(jax.ShapeDtypeStruct((), jnp.float32)).compile()
  except Exception as e:  # noqa: BLE001 (XlaRuntimeError/JaxRuntimeError across versions)
    warnings.warn(f"XLA:CPU rejected {CPU_TRAIN_STEP_COMPILER_OPTIONS}; train steps use XLA's "
                  f"defaults: {str(e).splitlines()[0][:200]}", RuntimeWarning, stacklevel=2)
    return False
  return True


def train_step_compiler_options() -> dict | None:
  """CPU_TRAIN_STEP_COMPILER_OPTIONS on the CPU backend (when supported), else None."""
  if jax.default_backend() == "cpu" and cpu_compiler_options_supported():
    return dict(CPU_TRAIN_STEP_COMPILER_OPTIONS)
  return None


def jit_train_step(step, donate: bool = True, shardings=None, *, xla_defaults: bool = False):
  """jax.jit a `step(state, batch, key) -> (state, metrics)`, the state donated.

  shardings: optional (state_shardings, batch_sharding) pinning layouts on a mesh; the key
  and the metrics are replicated.
  xla_defaults: compile with XLA's default options instead of `train_step_compiler_options()`
  (for A/B benchmarks and tests; the numerics agree to float tolerance).
  """
  kwargs = {"donate_argnums": (0,) if donate else ()}
  compiler_options = None if xla_defaults else train_step_compiler_options()
  if compiler_options:
    kwargs["compiler_options"] = compiler_options
  if shardings is not None:
    state_shardings, batch_sharding = shardings
    replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
    kwargs.update(in_shardings=(state_shardings, batch_sharding, replicated),
                  out_shardings=(state_shardings, replicated))
  return jax.jit(step, **kwargs)


def apply_gradients(state, grads, optimizer: optax.GradientTransformation):
  """One optimizer update: params <- params + update(grads); step <- step + 1."""
  updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
  return {**state, "step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
          "opt_state": opt_state}
