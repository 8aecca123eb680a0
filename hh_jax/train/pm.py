"""Preference-model loss and jitted steps.

A PM reads a scalar score at the end-of-context token appended after each reply
(Bai et al. 2022 section 2); for a comparison (chosen, rejected) with the same context

    P(chosen > rejected) = sigmoid(r_chosen - r_rejected)
    L = sum_i w_i * -log sigmoid(r_chosen,i - r_rejected,i) / sum_i w_i,
    w_i = weight_i * (harmless_weight if pair i is a harmlessness comparison else 1)

which is the paper's `L_help + lambda * L_harm` (Fig 27) with lambda = harmless_weight,
normalised by the total weight.

Batches are dicts of arrays, padded (the reference path):
    chosen_tokens, rejected_tokens          (B, T) int32, right-padded with PAD
    chosen_eoc_index, rejected_eoc_index    (B,)   int32, where the EOC token is
    weight                                  (B,)   float32
    is_harmless                             (B,)   float32 (1 for harmlessness pairs)
or packed (`hh_jax.data.packing`, `data.packing=True`, the default for runs): each pair
one segment, its context once and both replies after it, several pairs per row,
    tokens, positions, segment_ids, branch_ids   (R, L) int32
    score_index (R, K), pair_slots (B, 2) int32, pair_valid (B,) float32, weight, is_harmless
with the same scores and gradients as the padded batch of the same B pairs. `pair_scores`
chooses the path from the batch's keys.

Usage from another project:

    step = hh_jax.train.pm.make_step(graphdef, optimizer)
    state = hh_jax.train.optim.init_train_state(params, optimizer, pm.PMHparams(harmless_weight=1.0))
    state, metrics = step(state, batch, key)

As a run (`build_task`), the final PM is scored on every evaluation pair: accuracy overall,
per source and per dialogue turn, beside the gold labeller's Bayes ceiling (synthetic world)
and the "shorter reply is chosen" baseline; every pair's scores go to eval_scores.npz.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hh_jax import models
from hh_jax import sharding as shd
from hh_jax.config import RunConfig
from hh_jax.data import packing, pipeline
from hh_jax.data.batching import PairArrays, PairIterator, shorter_reply_baseline
from hh_jax.eval import baselines
from hh_jax.train import lifecycle, supervised
from hh_jax.train.optim import apply_gradients, current_learning_rate, jit_train_step
from hh_jax.train.rl_core import bradley_terry_loss


class PMHparams(NamedTuple):
  """The PM step's traced hyperparameters (sweeping them never recompiles)."""

  harmless_weight: float = 1.0        # lambda in L = L_help + lambda L_harm


PM_HPARAMS = PMHparams()


def hparams_from_config(cfg: RunConfig) -> PMHparams:
  return PMHparams(harmless_weight=cfg.data.harmless_weight)


def padded_pair_scores(graphdef, params, batch, dropout_key=None):
  """Scores of both replies in one forward pass over the stacked (2B, T) batch -> ((B,), (B,))."""
  tokens = jnp.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]])       # (2B, T)
  index = jnp.concatenate([batch["chosen_eoc_index"], batch["rejected_eoc_index"]])  # (2B,)
  scores = models.apply(graphdef, params, tokens, score_index=index,
                        dropout_key=dropout_key).scores                            # (2B,)
  return jnp.split(scores, 2)


def packed_pair_scores(graphdef, params, batch, dropout_key=None):
  """Scores of both replies from packed rows -> ((B,), (B,)):

      s = score(rows)[r, k] at the K EOC columns of each row    (R, K)
      r_chosen[b], r_rejected[b] = s.flat[pair_slots[b, 0]], s.flat[pair_slots[b, 1]]
  """
  scores = models.apply(graphdef, params, batch["tokens"], positions=batch["positions"],
                        segment_ids=batch["segment_ids"], branch_ids=batch["branch_ids"],
                        score_index=batch["score_index"], dropout_key=dropout_key).scores  # (R, K)
  both = scores.reshape(-1)[batch["pair_slots"]]                                  # (B, 2)
  return both[:, 0], both[:, 1]


def pair_scores(graphdef, params, batch, dropout_key=None):
  """(r_chosen (B,), r_rejected (B,)): `packed_pair_scores` for a packed batch (it has
  segment_ids), else `padded_pair_scores`."""
  if "segment_ids" in batch:
    return packed_pair_scores(graphdef, params, batch, dropout_key)
  return padded_pair_scores(graphdef, params, batch, dropout_key)


def pm_loss(graphdef, params, batch, harmless_weight, dropout_key=None):
  """Weighted Bradley-Terry loss (module docstring) and its metrics; a packed batch's
  pairs are also weighted by pair_valid."""
  r_chosen, r_rejected = pair_scores(graphdef, params, batch, dropout_key)
  weight = batch["weight"] * jnp.where(batch["is_harmless"] > 0, harmless_weight, 1.0)
  if "pair_valid" in batch:
    weight = weight * batch["pair_valid"]
  return bradley_terry_loss(r_chosen, r_rejected, weight)


def make_step(graphdef, optimizer, *, donate: bool = True, shardings=None):
  """A jitted `step(state, batch, key) -> (state, metrics)`; the step count is folded into key.

  shardings: optional (state_shardings, batch_sharding) to pin layouts on a mesh.
  """
  return jit_train_step(step_fn(graphdef, optimizer), donate, shardings)


def step_fn(graphdef, optimizer):
  """The pure, unjitted `step(state, batch, key) -> (state, metrics)` of `make_step` (for
  transforms of it, e.g. `jax.vmap` over the stacked states of runs: hh_jax.train.multirun)."""

  def step(state, batch, key):
    key = jax.random.fold_in(key, state["step"])

    def loss_fn(params):
      return pm_loss(graphdef, params, batch, state["hparams"].harmless_weight, key)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    new_state = apply_gradients(state, grads, optimizer)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
               "learning_rate": current_learning_rate(state["opt_state"])}
    return new_state, {f"pm/{k}": v for k, v in metrics.items()}

  return step


def make_eval_step(graphdef, *, shardings=None):
  """A jitted `eval_step(params, batch) -> {"chosen": (B,), "rejected": (B,)}` of raw scores,
  so accuracy, calibration and accuracy-by-turn can be computed afterwards. Without
  shardings, one per model architecture (graphdef) in a process: the runs of a sweep in one
  process (and the members of a group, hh_jax.train.multirun) compile it once per shape."""
  if shardings is None:
    return _eval_step_of(graphdef)
  return _jit_eval_step(graphdef, shardings)


@functools.lru_cache(maxsize=32)
def _eval_step_of(graphdef):
  """`make_eval_step(graphdef)`, cached by graphdef (hashable, equal for equal configs)."""
  return _jit_eval_step(graphdef, None)


def _jit_eval_step(graphdef, shardings):
  """The jitted eval step of `make_eval_step`."""

  def eval_step(params, batch):
    r_chosen, r_rejected = pair_scores(graphdef, params, batch)
    return {"chosen": r_chosen, "rejected": r_rejected}

  if shardings is None:
    return jax.jit(eval_step)
  state_shardings, batch_sharding = shardings
  return jax.jit(eval_step, in_shardings=(state_shardings["params"], batch_sharding))



# ----------------------------------------------------------------------------- evaluation


def packed_layout(model_cfg, arrays: PairArrays, batch_rows, multiple_of: int = 1):
  """The packed layout of a run's batches (row indices into arrays): the row length of
  least step FLOPs (`packing.choose_layout` with the model's forward FLOPs per token)."""
  return packing.choose_layout(
      lambda row_len: packing.plan_pair_layout(arrays, batch_rows, row_len, multiple_of),
      packing.row_len_candidates(arrays.seq_len),
      lambda row_len: models.forward_flops_per_token(model_cfg, row_len))


PAIR_KEYS = ("chosen_tokens", "rejected_tokens", "chosen_eoc_index", "rejected_eoc_index")


def pm_scores(graphdef, params, arrays: PairArrays, batch_size: int,
              packed: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Raw scores (chosen (N,), rejected (N,)) of every pair in `arrays`, in order; packed:
  through packed rows of one layout planned over all the batches (one compilation)."""
  eval_step = make_eval_step(graphdef)
  n = len(arrays)
  batch_rows = [np.arange(start, start + batch_size) % n     # pad the last batch by wrapping
                for start in range(0, n, batch_size)]
  layout = packed_layout(models.config_of(graphdef, params), arrays, batch_rows) if packed else None
  chosen, rejected = [], []
  for start, rows in zip(range(0, n, batch_size), batch_rows):
    batch = {k: getattr(arrays, k)[rows] for k in PAIR_KEYS}
    out = eval_step(params, batch if layout is None else packing.pack_pairs(batch, layout))
    keep = min(batch_size, n - start)
    chosen.append(np.asarray(out["chosen"])[:keep])
    rejected.append(np.asarray(out["rejected"])[:keep])
  return np.concatenate(chosen), np.concatenate(rejected)


def pair_accuracy(margin: np.ndarray) -> float:
  """mean([margin > 0] + 0.5 [margin = 0]) (ties count half); NaN for no pairs."""
  return float(np.mean((margin > 0) + 0.5 * (margin == 0))) if len(margin) else float("nan")


def bayes_ceilings(arrays: PairArrays, p_chosen: np.ndarray) -> dict:
  """mean(max(p, 1 - p)) overall and per source: the best accuracy any PM can reach when the
  gold labeller picks the chosen reply with probability p."""
  p = np.asarray(p_chosen, np.float64)
  best = np.maximum(p, 1 - p)
  out = {"eval/bayes_ceiling": float(best.mean())}
  for i, name in enumerate(arrays.source_names):
    if (arrays.source == i).any():
      out[f"eval/bayes_ceiling_{name}"] = float(best[arrays.source == i].mean())
  return out


def evaluate_pm(graphdef, params, data: pipeline.PMData, batch_size: int,
                packed: bool = False) -> lifecycle.Outputs:
  """Accuracy overall, per source and per turn, the Bayes ceiling and the shortcut baselines
  (shorter reply, more distinct tokens, bag-of-words logistic regression fitted on the
  training pairs: `hh_jax.eval.baselines`) on the same pairs; per-pair scores as
  eval_scores.npz."""
  arrays = data.eval
  r_c, r_r = pm_scores(graphdef, params, arrays, batch_size, packed)
  margin = r_c - r_r
  out = {"eval/accuracy": pair_accuracy(margin), "eval/num_pairs": len(margin),
         "eval/mean_margin": float(margin.mean())}
  for i, name in enumerate(arrays.source_names):
    if (arrays.source == i).any():
      out[f"eval/accuracy_{name}"] = pair_accuracy(margin[arrays.source == i])
  for turn in np.unique(arrays.num_turns):
    out[f"eval/accuracy_turn_{int(turn)}"] = pair_accuracy(margin[arrays.num_turns == turn])
  vocab = data.tokenizer.vocab_size
  out["eval/shorter_baseline_accuracy"] = shorter_reply_baseline(arrays)
  out["eval/distinct_tokens_baseline_accuracy"] = baselines.distinct_tokens_baseline(arrays, vocab)
  out["eval/bow_baseline_accuracy"] = baselines.bag_of_words_baseline(data.train, arrays, vocab)
  extras = {k: np.asarray(v) for k, v in data.eval_extras.items()}
  if "p_chosen" in extras:
    out.update(bayes_ceilings(arrays, extras["p_chosen"]))
  scores = {"chosen": r_c, "rejected": r_r, "source": arrays.source, "num_turns": arrays.num_turns,
            "source_names": np.array(arrays.source_names), **extras}
  return lifecycle.Outputs(summary=out, arrays={"eval_scores.npz": scores})


# ----------------------------------------------------------------------------- the run


def device_batch(batch, source_names: tuple[str, ...]) -> dict:
  """A PairBatch as the step's input dict (module docstring), with is_harmless from its source."""
  harmless_ids = [i for i, n in enumerate(source_names) if "harmless" in n]
  return {
      "chosen_tokens": batch.chosen_tokens, "rejected_tokens": batch.rejected_tokens,
      "chosen_eoc_index": batch.chosen_eoc_index, "rejected_eoc_index": batch.rejected_eoc_index,
      "weight": batch.weight.astype(np.float32),
      "is_harmless": np.isin(batch.source, harmless_ids).astype(np.float32),
  }


def count_tokens(batch) -> int:
  """Real tokens of both sides (context, reply and EOC) in one host PairBatch."""
  return int((batch.chosen_eoc_index + batch.rejected_eoc_index + 2).sum())


def build_task(cfg: RunConfig, run_dir: str, inputs: pipeline.PMData | None = None,
               layout: packing.PackedLayout | None = None) -> lifecycle.Task:
  """A PM run: one pass (or num_epochs) over the training pairs, then `evaluate_pm`.

  layout: with data.packing, the packed layout to use instead of the run's own
  (`packed_layout`), e.g. one shared by the runs of a group (hh_jax.train.multirun)."""
  del run_dir
  data = inputs if inputs is not None else pipeline.load_pm_data(cfg.data, cfg.seed)
  batches = PairIterator(data.train, cfg.batch_size, seed=cfg.seed, num_epochs=cfg.num_epochs)
  names = data.train.source_names
  to_input = lambda b: device_batch(b, names)  # noqa: E731
  if cfg.data.packing:   # one (R, L) layout for the whole run: the step compiles once
    model_cfg = supervised.model_config_of(cfg, data.tokenizer.vocab_size)
    layout = layout or packed_layout(model_cfg, data.train, batches.run_batch_rows(),
                                     multiple_of=shd.make_mesh(cfg.mesh).size)
    to_input = lambda b: packing.pack_pairs(device_batch(b, names), layout)  # noqa: E731
  return supervised.supervised_task(
      cfg, data.tokenizer.vocab_size, batches, len(data.train), make_step,
      hparams_from_config(cfg),
      lambda graphdef, params, _: evaluate_pm(graphdef, params, data, cfg.batch_size,
                                              cfg.data.packing),
      to_input=to_input, loss_key="pm/loss", count_tokens=count_tokens)
