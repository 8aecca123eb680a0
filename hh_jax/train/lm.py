"""Language-model (pretraining / SFT) loss and jitted step.

    L = - sum_{b,t} m_{b,t+1} log p(x_{b,t+1} | x_{b,<=t}) / sum_{b,t} m_{b,t+1},
    m = (x != PAD)

Batches are dicts with `tokens` (B, T) int32, right-padded with PAD; or packed
(`hh_jax.data.packing.pack_docs`, `data.packing=True`): the B documents as segments of
(R, L) rows, `tokens`, `positions` (restarting at 0 per document) and `segment_ids`
(0 = padding), where a target counts iff it continues its document:

    m_{r,t+1} = [seg_{r,t+1} == seg_{r,t}] [seg_{r,t+1} > 0]

the same targets, loss and gradients as the padded batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import numpy as np
import optax

from hh_jax import models
from hh_jax import sharding as shd
from hh_jax.config import RunConfig
from hh_jax.data import packing, pipeline
from hh_jax.data.batching import LMIterator
from hh_jax.special_tokens import PAD_ID
from hh_jax.train import lifecycle, supervised
from hh_jax.train.optim import apply_gradients, current_learning_rate, jit_train_step


def _logits_and_mask(graphdef, params, batch, dropout_key):
  """Next-token logits (B, T-1, V) and target mask (B, T-1) of a padded or packed batch."""
  tokens = batch["tokens"]                                              # (B, T)
  if "segment_ids" not in batch:
    logits = models.apply(graphdef, params, tokens, dropout_key=dropout_key).logits[:, :-1]
    return logits, (tokens[:, 1:] != PAD_ID).astype(jnp.float32)
  seg = batch["segment_ids"]                                            # (R, L)
  logits = models.apply(graphdef, params, tokens, positions=batch["positions"], segment_ids=seg,
                        dropout_key=dropout_key).logits[:, :-1]
  return logits, ((seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)).astype(jnp.float32)


def lm_loss(graphdef, params, batch, dropout_key=None):
  """Masked next-token cross-entropy (module docstring) and metrics."""
  logits, mask = _logits_and_mask(graphdef, params, batch, dropout_key)  # (B, T-1, V), (B, T-1)
  targets = batch["tokens"][:, 1:]                                      # (B, T-1)
  logp = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  n = jnp.maximum(mask.sum(), 1.0)
  loss = jnp.sum(nll * mask) / n
  accuracy = jnp.sum((logits.argmax(-1) == targets) * mask) / n
  return loss, {"token_accuracy": accuracy, "tokens": mask.sum()}


def make_step(graphdef, optimizer, *, donate: bool = True, shardings=None):
  """A jitted `step(state, batch, key) -> (state, metrics)` for next-token training."""

  def step(state, batch, key):
    key = jax.random.fold_in(key, state["step"])
    (loss, metrics), grads = jax.value_and_grad(
        lambda p: lm_loss(graphdef, p, batch, key), has_aux=True)(state["params"])
    new_state = apply_gradients(state, grads, optimizer)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
               "learning_rate": current_learning_rate(state["opt_state"])}
    return new_state, {f"lm/{k}": v for k, v in metrics.items()}

  return jit_train_step(step, donate, shardings)


def make_eval_step(graphdef):
  """A jitted `eval_step(params, batch) -> {"loss", "token_accuracy", "tokens"}` (no dropout)."""

  def eval_step(params, batch):
    loss, metrics = lm_loss(graphdef, params, batch)
    return {"loss": loss, **metrics}

  return jax.jit(eval_step)


def evaluate_lm(graphdef, params, eval_tokens: np.ndarray, batch_size: int,
                packed: bool = False) -> dict:
  """Token-weighted mean loss and next-token accuracy over the full batches of eval_tokens
  (packed: as packed rows of one layout planned over those batches)."""
  eval_step = make_eval_step(graphdef)
  totals = np.zeros(3)                                   # loss * n, accuracy * n, n
  batch_rows = [np.arange(start, start + batch_size)
                for start in range(0, len(eval_tokens) - batch_size + 1, batch_size)]
  layout = packing.plan_doc_layout(eval_tokens, batch_rows) if packed and batch_rows else None
  for rows in batch_rows:
    tokens = eval_tokens[rows]
    out = eval_step(params, {"tokens": tokens} if layout is None else packing.pack_docs(tokens, layout))
    n = float(out["tokens"])
    totals += (float(out["loss"]) * n, float(out["token_accuracy"]) * n, n)
  n = max(totals[2], 1.0)
  return {"eval/lm_loss": totals[0] / n, "eval/token_accuracy": totals[1] / n}


def build_task(cfg: RunConfig, run_dir: str, inputs: pipeline.LMData | None = None) -> lifecycle.Task:
  """A base-LM run: next-token training over the corpus, then `evaluate_lm`."""
  del run_dir
  data = inputs if inputs is not None else pipeline.load_lm_data(cfg.data, cfg.seed)
  batches = LMIterator(data.train_tokens, cfg.batch_size, seed=cfg.seed, num_epochs=cfg.num_epochs)
  to_input = lambda b: {"tokens": b.tokens}  # noqa: E731
  if cfg.data.packing:   # one (R, L = T) layout for the whole run: the step compiles once
    layout = packing.plan_doc_layout(data.train_tokens, batches.run_batch_rows(),
                                     multiple_of=shd.make_mesh(cfg.mesh).size)
    to_input = lambda b: packing.pack_docs(b.tokens, layout)  # noqa: E731
  return supervised.supervised_task(
      cfg, data.tokenizer.vocab_size, batches, len(data.train_tokens), make_step, None,
      lambda graphdef, params, _: lifecycle.Outputs(
          summary=evaluate_lm(graphdef, params, data.eval_tokens, cfg.batch_size,
                              cfg.data.packing)),
      to_input=to_input, loss_key="lm/loss",
      count_tokens=lambda b: int((b.tokens != PAD_ID).sum()))
