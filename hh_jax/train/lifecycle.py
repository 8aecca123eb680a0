"""One lifecycle for every run kind: the only code that writes a run directory.

A run kind (LM, PM, PPO, best-of-n, Elo, ...) supplies a `Task`: an initial state, a pure
jitted `step(state, batch, key) -> (state, metrics)`, a resumable iterator of host batches,
and a `finish(state) -> Outputs` that says what to save. `run` does the rest:

    skip        a directory with summary.json is finished: its summary is returned
    check       config.json of an earlier attempt must be the same config (or differ only
                in resume-safe fields, with allow_changes; each change goes to resumes.jsonl)
    restore     the latest checkpoint: state, iterator position, key, the pending log
                window and the step's host state, so a resumed run writes exactly what an
                uninterrupted one would
    loop        metrics fetched one step late; every `log_every` steps their mean goes to
                metrics.jsonl; per-sample lines to samples.jsonl; held-out evaluations
                every `eval_every` steps to evals/step_XXXXXX.npz
    checkpoint  every `checkpoint_every` steps, after the losses so far are checked finite;
                a checkpoint whose parameters give a non-finite loss at the next step is
                deleted before the run stops, so the latest checkpoint is always good
    finish      model.json + params/ (final weights), the task's arrays and JSON files,
                then summary.json, last

Run directory files (names in this module only):
    config.json  metrics.jsonl  samples.jsonl  checkpoints/  evals/  model.json  params/
    resumes.jsonl  summary.json  and the task's own (eval_scores.npz, pms.json, bon.json, ...)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from hh_jax import models, paths, tracking
from hh_jax.models import hf_config
from hh_jax.checkpoint import Checkpointer, key_from_json, key_to_json
from hh_jax.distributed import barrier, is_primary
from hh_jax.metrics import LateFetcher, MetricWriter, NonFiniteLossError, read_jsonl, to_python

CONFIG, SUMMARY, MODEL, PARAMS = "config.json", "summary.json", "model.json", "params"
METRICS, SAMPLES, RESUMES, EVALS = "metrics.jsonl", "samples.jsonl", "resumes.jsonl", "evals"

# Fields that may change when a stopped run is continued (allow_changes): they change how
# the remaining steps are taken or logged, not what the run is.
RESUME_SAFE_FIELDS = ("optim.learning_rate", "optim.grad_clip_norm", "log_every",
                      "checkpoint_every", "eval_every", "snapshot_every",
                      "data.packing")       # a layout: the same pairs per step, equal scores


class RunError(ValueError):
  """A user-facing problem with a run (config mismatch, incompatible runs, missing run):
  the CLI prints its message and exits non-zero, without a traceback."""


@dataclasses.dataclass
class Model:
  """A model of a finished run: pure facade pieces and its config."""

  graphdef: Any
  params: dict
  cfg: models.ModelConfig


@dataclasses.dataclass
class Outputs:
  """What a finished task leaves: the model (or None), summary fields, array and JSON files."""

  summary: dict
  model: tuple[models.ModelConfig, dict] | None = None
  arrays: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
  json_files: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Task:
  """What one run kind supplies to `run` (see the module docstring).

  batches: an iterator of host batches with `state() -> dict` and `restore(dict)`.
  to_device: host batch -> the step's input pytree.
  host_record: (step, fetched metrics) -> (scalars to average and log, per-sample line or None).
  evaluate: (step, state) -> arrays of a held-out evaluation (e.g. policy snapshots).
  """

  state: Any
  step: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
  batches: Iterator
  num_steps: int
  key: jax.Array
  finish: Callable[[Any], Outputs]
  loss_key: str
  log_every: int = 10
  checkpoint_every: int = 0
  examples_per_step: int = 1
  to_device: Callable[[Any], Any] = lambda batch: batch          # noqa: E731
  count_tokens: Callable[[Any], int] | None = None               # of a host batch
  host_record: Callable[[int, dict], tuple[dict, dict | None]] | None = None
  evaluate: Callable[[int, Any], dict[str, np.ndarray]] | None = None
  eval_every: int = 0
  json_files: dict[str, Any] = dataclasses.field(default_factory=dict)   # written at the start
  decode: Callable[[Any], str] | None = None     # token ids -> text, for sample tables
  # Host-side state of the step (e.g. PPO's packed layouts) with `state() -> dict` and
  # `restore(dict)`, saved in every checkpoint so that a resumed run compiles the same shapes.
  host_state: Any = None


# ----------------------------------------------------------------------------- run files


def config_diff(old: dict, new: dict) -> list[str]:
  """Dotted names of the fields where two config dicts differ."""
  flat_old, flat_new = _flat(old), _flat(new)
  return sorted(k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k))


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_config(run_dir: str, config: dict, allow_changes: bool = False) -> list[str]:
  """Compare `config` with an earlier attempt's config.json; return the changed fields.

  Raises RunError when they differ, unless every change is resume-safe and allow_changes.
  """
  path = paths.join(run_dir, CONFIG)
  if not path.exists():
    return []
  old = json.loads(path.read_text())
  diff = config_diff(old, json.loads(json.dumps(config)))
  unsafe = [k for k in diff if k not in RESUME_SAFE_FIELDS]
  if diff and (unsafe or not allow_changes):
    hint = (f"fields {unsafe} cannot change in a resumed run" if unsafe else
            "rerun with --allow-resume-changes to continue it with the new values")
    raise RunError(f"{path} holds a different config (fields {diff}): {hint}; or use a new run "
                   f"directory")
  return diff


def write_json(run_dir: str, name: str, obj: Any) -> None:
  """Write `<run_dir>/<name>` atomically (a kill never leaves half a file); process 0 only."""
  if is_primary():
    paths.atomic_write(paths.join(run_dir, name), json.dumps(to_python(obj), indent=2))


def read_json(run_dir: str, name: str) -> Any:
  return json.loads(paths.join(run_dir, name).read_text())


def read_config_field(run_dir: str, field: str):
  """One top-level field of a run's config.json (e.g. "kind", "model_size"); None if absent."""
  path = paths.join(run_dir, CONFIG)
  return json.loads(path.read_text()).get(field) if path.exists() else None


def is_finished(run_dir: str) -> bool:
  return paths.join(run_dir, SUMMARY).exists()


def save_model(run_dir: str, model_cfg: models.ModelConfig, params) -> None:
  """model.json (the ModelConfig) and params/ (the final weights, orbax)."""
  write_json(run_dir, MODEL, dataclasses.asdict(model_cfg))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(paths.join(run_dir, PARAMS), params, force=True)


def load_model(run_dir: str) -> Model:
  """The final model of a finished run directory, or of a local Hugging Face checkpoint
  directory (in hh-jax's vocabulary, float32: `models.from_pretrained(special_tokens=True)`)."""
  path = paths.join(run_dir, MODEL)
  if not path.exists() and hf_config.is_checkpoint_dir(run_dir):
    graphdef, params = models.from_pretrained(run_dir, special_tokens=True)
    return Model(graphdef, params, models.config_of(graphdef, params))
  if not path.exists():
    raise RunError(f"{path} not found: {run_dir} is not a finished run with a model")
  model_cfg = models.ModelConfig(**read_json(run_dir, MODEL))
  graphdef, abstract = models.abstract_init(model_cfg)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(paths.join(run_dir, PARAMS), abstract)
  return Model(graphdef, params, model_cfg)


# ----------------------------------------------------------------------------- the loop


class _Log:
  """The pending window of per-step records and the writers of metrics and samples."""

  def __init__(self, run_dir: str, task: Task, total: int):
    self.task, self.total = task, total
    self.metrics, self.samples = (MetricWriter(run_dir, name, enabled=is_primary())
                                  for name in (METRICS, SAMPLES))
    self.tracker = tracking.Tracker()       # the real one is opened once the start step is known
    self.window: list[dict] = []
    self.tokens: dict[int, int] = {}
    self.t_window = time.time()

  def consume(self, fetched) -> dict | None:
    """Check one step's fetched metrics; log the window's mean when it is due."""
    if fetched is None:
      return None
    step, metrics = fetched
    record, sample_line = (self.task.host_record(step, metrics) if self.task.host_record else
                           ({k: v for k, v in metrics.items() if np.ndim(v) == 0}, None))
    loss = record.get(self.task.loss_key)
    if loss is not None and not math.isfinite(float(loss)):
      raise NonFiniteLossError(f"{self.task.loss_key} = {loss} at step {step}")
    record.setdefault("perf/tokens", self.tokens.pop(step, 0))
    self.window.append(record)
    if sample_line is not None:
      self.samples.write(step, sample_line)
    every = self.task.log_every
    if every and (step % every == 0 or step == self.total):
      self.write(step)
    return record

  def write(self, step: int) -> None:
    elapsed = max(time.time() - self.t_window, 1e-9)
    keys = [k for k in dict.fromkeys(k for r in self.window for k in r) if k != "perf/tokens"]
    record = {k: float(np.mean([r[k] for r in self.window if k in r])) for k in keys}
    record.update({"perf/tokens_per_s": sum(r["perf/tokens"] for r in self.window) / elapsed,
                   "perf/steps_per_s": len(self.window) / elapsed,
                   "data/examples_seen": step * self.task.examples_per_step})
    self.metrics.write(step, record)
    self.tracker.scalars(step, record)
    self.window.clear()
    self.t_window = time.time()

  def flush(self, step: int) -> None:
    """Make everything logged up to `step` durable (before the checkpoint of `step`)."""
    self.metrics.flush()
    self.samples.flush()
    self.tracker.checkpoint(step)

  def close(self) -> None:
    self.metrics.flush()
    self.samples.flush()
    self.tracker.close()


def run(cfg, run_dir: str, build: Callable[[Any, str], Task], *, progress: bool = True,
        stop_after_steps: int | None = None, allow_changes: bool = False,
        track: str = "none") -> dict:
  """Train (or resume, or skip if finished) one run; return its summary.

  build(cfg, run_dir) -> Task loads what the run needs. config.json is written only once
  the task is built, so a config that fails to build leaves nothing behind.
  stop_after_steps: stop early without a summary, as a kill would (tests); track: tracking.TRACKERS.
  """
  if is_finished(run_dir):
    return read_json(run_dir, SUMMARY)
  config = dataclasses.asdict(cfg)
  changes = check_config(run_dir, config, allow_changes)
  t_start = time.time()
  task = build(cfg, run_dir)
  write_json(run_dir, CONFIG, config)
  for name, obj in task.json_files.items():
    write_json(run_dir, name, obj)

  if task.num_steps == 0:                 # an evaluation: nothing to train or checkpoint
    return _finish(run_dir, task, task.state, 0, t_start, cfg)
  ckpt = Checkpointer(run_dir)
  log = _Log(run_dir, task, task.num_steps)
  state, key, start = _restore(ckpt, task, log, run_dir, changes)
  log.tracker = tracking.open_tracker(track, run_dir, config, start)
  bar = _progress_bar(run_dir, task.num_steps, start, progress)
  fetcher, saved = LateFetcher(), None

  def consume(fetched):
    try:
      record = log.consume(fetched)
    except NonFiniteLossError as e:
      if saved is not None and fetched[0] == saved + 1:   # that checkpoint's params gave it
        ckpt.delete(saved)
      ckpt.close()
      log.close()
      raise NonFiniteLossError(f"{run_dir}: {e}: training diverged; the latest checkpoint "
                               f"holds finite-loss parameters. Lower optim.learning_rate and "
                               f"rerun with --allow-resume-changes to continue from it.") from None
    if record:
      bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in record.items()
                       if k.endswith(("loss", "accuracy", "/kl"))}, refresh=False)

  def save(step: int):
    nonlocal saved
    consume(fetcher.flush())     # never checkpoint a state whose losses are unchecked
    log.flush(step)
    ckpt.save(step, state, _checkpoint_meta(task, key, step, log.window))
    saved = step

  step = start
  while step < task.num_steps:
    if task.evaluate and task.eval_every and step % task.eval_every == 0:
      _write_eval(run_dir, step, task.evaluate(step, state), log.tracker, task.decode)
    host_batch = next(task.batches)
    batch = task.to_device(host_batch)
    state, metrics = task.step(state, batch, key)
    step += 1
    if task.count_tokens:
      log.tokens[step] = task.count_tokens(host_batch)
    consume(fetcher.push(step, metrics))
    bar.update(1)
    if stop_after_steps is not None and step >= stop_after_steps:
      save(step)
      bar.close()
      ckpt.close()
      log.close()
      return {"stopped_at": step}
    if task.checkpoint_every and step % task.checkpoint_every == 0 and step < task.num_steps:
      save(step)
  consume(fetcher.flush())
  bar.close()
  if saved != step:
    save(step)
  ckpt.close()
  if task.evaluate and task.eval_every:
    _write_eval(run_dir, step, task.evaluate(step, state), log.tracker, task.decode)
  log.close()
  return _finish(run_dir, task, state, step, t_start, cfg)


def _progress_bar(run_dir: str, total: int, start: int, progress: bool):
  """A tqdm bar of the steps (process 0 only)."""
  return tqdm(total=total, initial=start, disable=not (progress and is_primary()), unit="step",
              desc=os.path.basename(os.path.normpath(str(run_dir))), dynamic_ncols=True,
              leave=False)


def _checkpoint_meta(task: Task, key, step: int, window: list) -> dict:
  """What a checkpoint holds beside the state: iterator position, key, step, the pending log
  window and the step's host state (`Task.host_state`)."""
  meta = {"data": task.batches.state(), "key": key_to_json(key), "step": step, "window": window}
  if task.host_state is not None:
    meta["host"] = task.host_state.state()
  return meta


def _restore(ckpt: Checkpointer, task: Task, log: _Log, run_dir: str, changes: list[str]):
  """(state, key, start step) from the latest checkpoint, or the task's initial ones."""
  if ckpt.latest_step() is None:
    for writer in (log.metrics, log.samples):
      writer.truncate_after(-1)
    return task.state, task.key, 0
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          task.state)
  state, meta = ckpt.restore(abstract)
  task.batches.restore(meta["data"])
  if task.host_state is not None and "host" in meta:
    task.host_state.restore(meta["host"])
  start = int(meta["step"])
  log.window = list(meta.get("window", []))
  for writer in (log.metrics, log.samples):
    writer.truncate_after(start)
  if changes:
    resumes = MetricWriter(run_dir, RESUMES, enabled=is_primary())
    resumes.write(start, {"changed": changes, "time": time.time()})
    resumes.flush()
  return state, key_from_json(meta["key"]), start


def _write_eval(run_dir: str, step: int, arrays: dict | None, tracker: tracking.Tracker,
                decode=None) -> None:
  """evals/step_XXXXXX.npz (process 0), and its sample table (if it has replies) to the tracker."""
  if not arrays:
    return
  if is_primary():
    paths.save_npz(paths.join(run_dir, EVALS, f"step_{step:06d}.npz"),
                   {"step": step, **{k: np.asarray(v) for k, v in arrays.items()}})
  table = tracking.sample_table(arrays, decode)
  if table is not None:
    tracker.table(step, "eval/samples", *table)


def _finish(run_dir: str, task: Task, state, steps: int, t_start: float, cfg) -> dict:
  """Save what the task leaves, then summary.json (last: its presence marks the run done)."""
  barrier("run files flushed")        # finish may read metrics.jsonl, which process 0 wrote
  out = task.finish(state)
  if out.model is not None:
    save_model(run_dir, *out.model)
  for name, arrays in out.arrays.items():
    if is_primary():
      paths.save_npz(paths.join(run_dir, name), arrays, compressed=True)
  for name, obj in out.json_files.items():
    write_json(run_dir, name, obj)
  summary = {"kind": getattr(cfg, "kind", None), "seed": getattr(cfg, "seed", None),
             **out.summary, "train/steps": steps, "time/seconds": time.time() - t_start}
  metrics = paths.join(run_dir, METRICS)
  records = read_jsonl(metrics) if metrics.exists() else []
  if records and task.loss_key in records[-1]:
    summary[f"train/final_{task.loss_key.replace('/', '_')}"] = records[-1][task.loss_key]
  write_json(run_dir, SUMMARY, summary)
  barrier("summary written")
  return read_json(run_dir, SUMMARY)
