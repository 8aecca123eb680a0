"""The training loop shared by LM pretraining and PM training.

A run directory holds:
    config.json      the RunConfig (a rerun with a different config is refused)
    model.json       the ModelConfig, so other code can rebuild the model
    metrics.jsonl    namespaced metrics every `log_every` steps
    checkpoints/     orbax: state (params, optimizer, step), RNG key data, data position
    params/          final params alone (what PPO, evaluation and init_from load)
    eval_scores.npz  (PM) every evaluation pair's scores, for calibration and slicing
    summary.json     written last; a run (or a sweep) that finds it does nothing

A run that finds its own checkpoint resumes from it and ends bit-for-bit where an
uninterrupted run would (same step keys, data order and optimizer state).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from hh_jax import models
from hh_jax import sharding as shd
from hh_jax.checkpoint import Checkpointer, key_from_json, key_to_json
from hh_jax.config import RunConfig, from_dict, to_dict
from hh_jax.data.batching import LMIterator, PairArrays, PairIterator
from hh_jax.data.pipeline import LMData, PMData
from hh_jax.metrics import LateFetcher, MetricWriter, check_finite, read_jsonl, to_python
from hh_jax.train import lm as lm_lib
from hh_jax.train import pm as pm_lib
from hh_jax.train.optim import init_train_state, make_optimizer


# ----------------------------------------------------------------------------- run files


def write_or_check_config(run_dir: str, config: dict) -> None:
  """Write config.json, or check that an existing one (a resumed run) is the same config."""
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, "config.json")
  new = json.loads(json.dumps(config))          # as it reads back (tuples become lists)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != new:
      flat_old, flat_new = _flat(old), _flat(new)
      diff = sorted(k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k))
      raise ValueError(f"{path} holds a different config (fields {diff}); use a new run "
                       f"directory or delete this one")
    return
  with open(path, "w") as f:
    json.dump(new, f, indent=2)


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def load_config(run_dir: str) -> RunConfig:
  with open(os.path.join(run_dir, "config.json")) as f:
    return from_dict(RunConfig, json.load(f))


def model_config_of(cfg: RunConfig, vocab_size: int) -> models.ModelConfig:
  return models.ladder_config(cfg.model_size, vocab_size=vocab_size, max_len=cfg.data.max_len,
                              dtype=cfg.dtype)


def save_params(run_dir: str, model_cfg: models.ModelConfig, params) -> None:
  """Write model.json and params/ (final weights) for downstream users."""
  with open(os.path.join(run_dir, "model.json"), "w") as f:
    json.dump(dataclasses.asdict(model_cfg), f, indent=2)
  path = os.path.join(os.path.abspath(run_dir), "params")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params, force=True)


def load_params(run_dir: str):
  """(model_cfg, graphdef, params) of a finished run directory."""
  path = os.path.join(run_dir, "model.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished run")
  with open(path) as f:
    model_cfg = models.ModelConfig(**json.load(f))
  graphdef, abstract = abstract_model(model_cfg)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(os.path.join(os.path.abspath(run_dir), "params"), abstract)
  return model_cfg, graphdef, params


def abstract_model(model_cfg: models.ModelConfig):
  """(graphdef, params as ShapeDtypeStructs) of a config, without materialising weights."""
  out = {}

  def build():
    graphdef, params = models.init(model_cfg, jax.random.key(0))
    out["graphdef"] = graphdef
    return params

  abstract = jax.eval_shape(build)
  return out["graphdef"], abstract


def run_config_field(run_dir: str, field: str):
  """One top-level field of a run directory's config.json (e.g. "kind", "model_size"), read
  as raw JSON so it works for any run kind; None if the run has no config.json or no field."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f).get(field)


def init_from_run(run_dir: str, params):
  """Copy every parameter of a finished run into `params`.

  From an LM (a base model), the score head stays freshly initialised: a PM from an LM, as in
  the paper. From a PM (a preference-model-pretraining run, PMP), the score head is kept too,
  so finetuning continues from the pretrained PM (paper section 2: LM -> PMP -> finetuning).
  """
  src_cfg, _, src = load_params(run_dir)
  dst_shapes = jax.tree.map(lambda x: x.shape, {k: v for k, v in params.items() if k != "score_head"})
  src_shapes = jax.tree.map(lambda x: x.shape, {k: v for k, v in src.items() if k != "score_head"})
  if dst_shapes != src_shapes:
    raise ValueError(f"init_from={run_dir}: its model ({src_cfg}) does not match this run's shapes")
  if run_config_field(run_dir, "kind") == "pm":
    return src
  return {**src, "score_head": params["score_head"]}


# ----------------------------------------------------------------------------- the loop


def _pm_batch(batch, source_names: tuple[str, ...]) -> dict:
  harmless_ids = [i for i, n in enumerate(source_names) if "harmless" in n]
  return {
      "chosen_tokens": batch.chosen_tokens, "rejected_tokens": batch.rejected_tokens,
      "chosen_eoc_index": batch.chosen_eoc_index, "rejected_eoc_index": batch.rejected_eoc_index,
      "weight": batch.weight.astype(np.float32),
      "is_harmless": np.isin(batch.source, harmless_ids).astype(np.float32),
  }


def train(cfg: RunConfig, run_dir: str, data: PMData | LMData, *, progress: bool = True,
          stop_after_steps: int | None = None, on_step: Callable[[int], None] | None = None) -> dict:
  """Train (or resume, or skip if finished) one run; return its summary.

  stop_after_steps: stop early without a summary (used to simulate a kill in tests).
  """
  summary_path = os.path.join(run_dir, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      return json.load(f)
  write_or_check_config(run_dir, to_dict(cfg))
  t_start = time.time()

  model_cfg = model_config_of(cfg, data.tokenizer.vocab_size)
  init_key, step_key = jax.random.split(jax.random.key(cfg.seed))
  graphdef, params = models.init(model_cfg, init_key)
  if cfg.init_from:
    params = init_from_run(cfg.init_from, params)

  if cfg.kind == "pm":
    iterator = PairIterator(data.train, cfg.batch_size, seed=cfg.seed, num_epochs=cfg.num_epochs)
    lib, hparams = pm_lib, {"harmless_weight": cfg.data.harmless_weight}
    to_batch = lambda b: _pm_batch(b, data.train.source_names)       # noqa: E731
    tokens_per_batch = lambda b: int((b["chosen_eoc_index"] + b["rejected_eoc_index"] + 2).sum())  # noqa: E731
  else:
    iterator = LMIterator(data.train_tokens, cfg.batch_size, seed=cfg.seed, num_epochs=cfg.num_epochs)
    lib, hparams = lm_lib, {}
    to_batch = lambda b: {"tokens": b.tokens}                         # noqa: E731
    tokens_per_batch = lambda b: int((b["tokens"] != 0).sum())        # noqa: E731
  total_steps = len(iterator) * cfg.num_epochs
  if total_steps == 0:
    raise ValueError(f"{run_dir}: {len(data.train) if cfg.kind == 'pm' else len(data.train_tokens)} "
                     f"training examples make no batch of batch_size={cfg.batch_size}")
  optimizer = make_optimizer(cfg.optim, total_steps)
  mesh = shd.make_mesh(cfg.mesh)
  state = init_train_state(params, optimizer, hparams)
  state_sh = shd.state_shardings(mesh, state)
  state = jax.device_put(state, state_sh)
  step_fn = lib.make_step(graphdef, optimizer, shardings=(state_sh, shd.batch_sharding(mesh)))

  ckpt = Checkpointer(run_dir)
  writer = MetricWriter(run_dir)
  start_step = 0
  if ckpt.latest_step() is not None:
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            state, state_sh)
    state, meta = ckpt.restore(abstract)
    iterator.restore(meta["data"])
    step_key = key_from_json(meta["step_key"])
    start_step = int(state["step"])
    writer.truncate_after(start_step)
  else:
    writer.truncate_after(-1)

  def save(step: int):
    ckpt.save(step, state, {"data": iterator.state(), "step_key": key_to_json(step_key)})

  fetcher, window, examples_seen = LateFetcher(), [], start_step * cfg.batch_size
  loss_key = f"{cfg.kind}/loss"
  bar = tqdm(total=total_steps, initial=start_step, disable=not progress, desc=os.path.basename(run_dir),
             unit="step", dynamic_ncols=True, leave=False)
  t_window, tokens_window, tokens_by_step = time.time(), 0, {}

  def consume(fetched):
    nonlocal t_window, tokens_window
    if fetched is None:
      return
    step, metrics = fetched
    check_finite(step, metrics, (loss_key,))
    tokens_window += tokens_by_step.pop(step, 0)
    window.append(metrics)
    if cfg.log_every and (step % cfg.log_every == 0 or step == total_steps):
      elapsed = max(time.time() - t_window, 1e-9)
      record = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
      record.update({"perf/tokens_per_s": tokens_window / elapsed,
                     "perf/steps_per_s": len(window) / elapsed,
                     "data/examples_seen": step * cfg.batch_size})
      writer.write(step, record)
      bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in record.items()
                       if k.endswith(("loss", "accuracy"))})
      window.clear()
      t_window, tokens_window = time.time(), 0

  step = start_step
  for host_batch in iterator:
    batch = to_batch(host_batch)
    state, metrics = step_fn(state, shd.shard_batch(mesh, batch), step_key)
    step += 1
    tokens_by_step[step] = tokens_per_batch(batch)
    examples_seen += cfg.batch_size
    consume(fetcher.push(step, metrics))
    bar.update(1)
    if on_step is not None:
      on_step(step)
    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
      consume(fetcher.flush())      # never checkpoint a state whose loss we have not checked
      save(step)
    if stop_after_steps is not None and step >= stop_after_steps:
      consume(fetcher.flush())
      save(step)
      bar.close()
      ckpt.close()
      return {"stopped_at": step}
  consume(fetcher.flush())
  bar.close()
  save(step)
  ckpt.close()

  params = jax.device_get(state["params"])
  save_params(run_dir, model_cfg, params)
  if cfg.kind == "pm":
    summary = evaluate_pm(graphdef, params, data, run_dir, cfg.batch_size)
  else:
    summary = evaluate_lm(graphdef, params, data, cfg.batch_size)
  summary.update({
      "kind": cfg.kind, "model_size": cfg.model_size, "seed": cfg.seed,
      "params/non_embedding": models.count_params(model_cfg),
      "params/total": models.count_params(model_cfg, non_embedding=False),
      "data/dataset": cfg.data.dataset,
      "data/num_train": len(data.train) if cfg.kind == "pm" else len(data.train_tokens),
      "data/examples_seen": examples_seen, "train/steps": step,
      "time/seconds": time.time() - t_start,
  })
  last = read_jsonl(writer.path) if os.path.exists(writer.path) else []
  if last:
    summary[f"train/final_{cfg.kind}_loss"] = last[-1].get(loss_key)
  with open(summary_path, "w") as f:
    json.dump(to_python(summary), f, indent=2)
  return summary


# ----------------------------------------------------------------------------- evaluation


def pm_scores(graphdef, params, arrays: PairArrays, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Raw scores (chosen, rejected) of every pair in `arrays`, in order."""
  eval_step = pm_lib.make_eval_step(graphdef)
  n = len(arrays)
  chosen, rejected = [], []
  for start in range(0, n, batch_size):
    rows = np.arange(start, start + batch_size) % n          # pad the last batch by wrapping
    batch = {"chosen_tokens": arrays.chosen_tokens[rows], "rejected_tokens": arrays.rejected_tokens[rows],
             "chosen_eoc_index": arrays.chosen_eoc_index[rows],
             "rejected_eoc_index": arrays.rejected_eoc_index[rows]}
    out = eval_step(params, batch)
    keep = min(batch_size, n - start)
    chosen.append(np.asarray(out["chosen"])[:keep])
    rejected.append(np.asarray(out["rejected"])[:keep])
  return np.concatenate(chosen), np.concatenate(rejected)


def pair_accuracy(margin: np.ndarray) -> float:
  """Mean of [margin > 0] + 0.5 [margin = 0] (ties count half)."""
  return float(np.mean((margin > 0) + 0.5 * (margin == 0))) if len(margin) else float("nan")


def evaluate_pm(graphdef, params, data: PMData, run_dir: str | None, batch_size: int) -> dict:
  """Accuracy overall, per source and per turn; the Bayes ceiling and the
  "chosen is shorter" baseline on the same pairs; per-pair scores to eval_scores.npz."""
  arrays = data.eval
  r_c, r_r = pm_scores(graphdef, params, arrays, batch_size)
  margin = r_c - r_r
  out = {"eval/accuracy": pair_accuracy(margin), "eval/num_pairs": len(margin),
         "eval/mean_margin": float(margin.mean())}
  for i, name in enumerate(arrays.source_names):
    sel = arrays.source == i
    if sel.any():
      out[f"eval/accuracy_{name}"] = pair_accuracy(margin[sel])
  for turn in np.unique(arrays.num_turns):
    out[f"eval/accuracy_turn_{int(turn)}"] = pair_accuracy(margin[arrays.num_turns == turn])
  # Baseline: predict that the shorter reply is chosen (0.55 on harmless-base test, issue 8).
  shorter = (arrays.rejected_eoc_index - arrays.chosen_eoc_index).astype(np.float64)
  out["eval/shorter_baseline_accuracy"] = pair_accuracy(shorter)
  extras = dict(data.eval_extras)
  if "p_chosen" in extras:
    p = np.asarray(extras["p_chosen"], np.float64)
    out["eval/bayes_ceiling"] = float(np.mean(np.maximum(p, 1 - p)))
    for i, name in enumerate(arrays.source_names):
      sel = arrays.source == i
      if sel.any():
        out[f"eval/bayes_ceiling_{name}"] = float(np.mean(np.maximum(p[sel], 1 - p[sel])))
  if run_dir is not None:
    np.savez_compressed(os.path.join(run_dir, "eval_scores.npz"), chosen=r_c, rejected=r_r,
                        source=arrays.source, num_turns=arrays.num_turns,
                        source_names=np.array(arrays.source_names),
                        **{k: np.asarray(v) for k, v in extras.items()})
  return out


def evaluate_lm(graphdef, params, data: LMData, batch_size: int) -> dict:
  eval_step = lm_lib.make_eval_step(graphdef)
  tokens = data.eval_tokens
  losses, counts, accs = [], [], []
  for start in range(0, len(tokens) - batch_size + 1, batch_size):
    out = eval_step(params, {"tokens": tokens[start:start + batch_size]})
    losses.append(float(out["loss"]) * float(out["tokens"]))
    accs.append(float(out["token_accuracy"]) * float(out["tokens"]))
    counts.append(float(out["tokens"]))
  n = max(sum(counts), 1.0)
  return {"eval/lm_loss": sum(losses) / n, "eval/token_accuracy": sum(accs) / n}
