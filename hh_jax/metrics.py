"""metrics.jsonl: one JSON object per logged step with namespaced keys (`pm/accuracy`,
`ppo/kl`, `perf/tokens_per_s`), written beside config.json.

Device metrics are fetched one step late (`LateFetcher`), so the host never blocks on
the step it just dispatched; NaN/inf in a loss stops the run with a clear error.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import jax
import numpy as np

from hh_jax import paths


class NonFiniteLossError(FloatingPointError):
  """Raised when a training loss becomes NaN or infinite."""


def to_python(tree) -> Any:
  """Device arrays -> Python floats/ints/lists (JSON-serialisable)."""

  def conv(x):
    x = np.asarray(x)
    if x.ndim == 0:
      return x.item()
    return x.tolist()

  return jax.tree.map(conv, tree)


class MetricWriter:
  """The JSON lines of `<run_dir>/<filename>` (metrics.jsonl, samples.jsonl), local or bucket.

  The lines are kept in memory and the file is written whole (`paths.atomic_write`: object
  stores cannot append, and a kill never leaves half a line) when a flush is due: every
  `flush_every_s` seconds of writes, and at each `flush()` (the lifecycle flushes before a
  checkpoint and at the end). On resume from a checkpoint at step s, `truncate_after(s)`
  drops lines logged after s by the killed run, so the file reads as if the run had never
  stopped. A writer that is not `enabled` (a process other than 0) writes nothing.
  """

  def __init__(self, run_dir, filename: str = "metrics.jsonl", enabled: bool = True,
               flush_every_s: float = 10.0):
    self.path = paths.join(run_dir, filename)
    self.enabled, self.flush_every_s = enabled, flush_every_s
    self.lines = _complete_lines(self.path)
    self.dirty, self.last_flush = False, time.time()

  def truncate_after(self, step: int) -> None:
    self.lines = [line for line in self.lines if json.loads(line).get("step", 0) <= step]
    self.dirty = True
    self.flush()

  def write(self, step: int, metrics: dict) -> None:
    record = {"step": int(step), **to_python(metrics)}
    self.lines.append(json.dumps(record, allow_nan=True) + "\n")
    self.dirty = True
    if time.time() - self.last_flush >= self.flush_every_s:
      self.flush()

  def flush(self) -> None:
    """Write the file whole if anything changed since the last flush."""
    if self.enabled and self.dirty and (self.lines or self.path.exists()):
      paths.atomic_write(self.path, "".join(self.lines))
    self.dirty, self.last_flush = False, time.time()


def _complete_lines(path) -> list[str]:
  """The lines of a JSON-lines file up to the first one a kill cut short ([] if none)."""
  if not path.exists():
    return []
  kept = []
  for line in path.read_text().splitlines():
    try:
      json.loads(line)
    except json.JSONDecodeError:
      break  # a line cut by a kill: everything after it is from the killed run
    kept.append(line + "\n")
  return kept


def append_jsonl(path, record: dict) -> None:
  """Add one record to a JSON-lines file (local or bucket: the file is written whole)."""
  path = paths.as_path(path)
  previous = path.read_text() if path.exists() else ""
  paths.atomic_write(path, previous + json.dumps(to_python(record)) + "\n")


def read_jsonl(path) -> list[dict]:
  """Every record of a JSON-lines file (local or bucket)."""
  return [json.loads(line) for line in paths.as_path(path).read_text().splitlines() if line.strip()]


def check_finite(step: int, metrics: dict, keys: tuple[str, ...]) -> None:
  for key in keys:
    if key in metrics:
      value = float(np.asarray(metrics[key]))
      if not math.isfinite(value):
        raise NonFiniteLossError(
            f"{key} = {value} at step {step}: training diverged. The last good checkpoint is "
            f"kept; lower optim.learning_rate or check the data, then rerun to resume from it.")


class LateFetcher:
  """Holds step k's device metrics and hands them back when step k+1 has been dispatched."""

  def __init__(self):
    self._pending: tuple[int, dict] | None = None

  def push(self, step: int, metrics: dict) -> tuple[int, dict] | None:
    previous, self._pending = self._pending, (step, metrics)
    if previous is None:
      return None
    return previous[0], to_python(previous[1])

  def flush(self) -> tuple[int, dict] | None:
    previous, self._pending = self._pending, None
    if previous is None:
      return None
    return previous[0], to_python(previous[1])
