"""Preference-model loss and jitted steps.

A PM reads a scalar score at the end-of-context token appended after each reply
(Bai et al. 2022 section 2); for a comparison (chosen, rejected) with the same context

    P(chosen > rejected) = sigmoid(r_chosen - r_rejected)
    L = sum_i w_i * -log sigmoid(r_chosen,i - r_rejected,i) / sum_i w_i,
    w_i = weight_i * (harmless_weight if pair i is a harmlessness comparison else 1)

which is the paper's `L_help + lambda * L_harm` (Fig 27) with lambda = harmless_weight,
normalised by the total weight.

Batches are dicts of arrays:
    chosen_tokens, rejected_tokens          (B, T) int32, right-padded with PAD
    chosen_eoc_index, rejected_eoc_index    (B,)   int32, where the EOC token is
    weight                                  (B,)   float32
    is_harmless                             (B,)   float32 (1 for harmlessness pairs)

Usage from another project:

    step = hh_jax.train.pm.make_step(graphdef, optimizer)
    state = hh_jax.train.optim.init_train_state(params, optimizer, {"harmless_weight": 1.0})
    state, metrics = step(state, batch, key)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hh_jax import models
import optax

from hh_jax.train.optim import apply_gradients, current_learning_rate, jit_train_step
from hh_jax.train.rl_core import bradley_terry_loss

PM_HPARAMS = {"harmless_weight": 1.0}


def pair_scores(graphdef, params, batch, dropout_key=None):
  """Scores of both replies in one forward pass over the stacked (2B, T) batch -> ((B,), (B,))."""
  tokens = jnp.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]])       # (2B, T)
  index = jnp.concatenate([batch["chosen_eoc_index"], batch["rejected_eoc_index"]])  # (2B,)
  scores = models.apply(graphdef, params, tokens, score_index=index,
                        dropout_key=dropout_key).scores                            # (2B,)
  return jnp.split(scores, 2)


def pm_loss(graphdef, params, batch, harmless_weight, dropout_key=None):
  """Weighted Bradley-Terry loss (module docstring) and its metrics."""
  r_chosen, r_rejected = pair_scores(graphdef, params, batch, dropout_key)
  weight = batch["weight"] * jnp.where(batch["is_harmless"] > 0, harmless_weight, 1.0)
  return bradley_terry_loss(r_chosen, r_rejected, weight)


def make_step(graphdef, optimizer, *, donate: bool = True, shardings=None):
  """A jitted `step(state, batch, key) -> (state, metrics)`; the step count is folded into key.

  shardings: optional (state_shardings, batch_sharding) to pin layouts on a mesh.
  """

  def step(state, batch, key):
    key = jax.random.fold_in(key, state["step"])

    def loss_fn(params):
      return pm_loss(graphdef, params, batch, state["hparams"]["harmless_weight"], key)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    new_state = apply_gradients(state, grads, optimizer)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads),
               "learning_rate": current_learning_rate(state["opt_state"])}
    return new_state, {f"pm/{k}": v for k, v in metrics.items()}

  return jit_train_step(step, donate, shardings)


def make_eval_step(graphdef, *, shardings=None):
  """A jitted `eval_step(params, batch) -> {"chosen": (B,), "rejected": (B,)}` of raw scores,
  so accuracy, calibration and accuracy-by-turn can be computed afterwards."""

  def eval_step(params, batch):
    r_chosen, r_rejected = pair_scores(graphdef, params, batch)
    return {"chosen": r_chosen, "rejected": r_rejected}

  if shardings is None:
    return jax.jit(eval_step)
  state_shardings, batch_sharding = shardings
  return jax.jit(eval_step, in_shardings=(state_shardings["params"], batch_sharding))

