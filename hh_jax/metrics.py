"""metrics.jsonl: one JSON object per logged step with namespaced keys (`pm/accuracy`,
`ppo/kl`, `perf/tokens_per_s`), written beside config.json.

Device metrics are fetched one step late (`LateFetcher`), so the host never blocks on
the step it just dispatched; NaN/inf in a loss stops the run with a clear error.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import numpy as np


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
  """Appends JSON lines to `<run_dir>/metrics.jsonl`.

  On resume from a checkpoint at step s, `truncate_after(s)` drops lines logged after s
  by the killed run, so the file reads as if the run had never stopped.
  """

  def __init__(self, run_dir: str, filename: str = "metrics.jsonl"):
    self.path = os.path.join(run_dir, filename)

  def truncate_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    kept = []
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          break  # a line cut by a kill: everything after it is from the killed run
        if record.get("step", 0) <= step:
          kept.append(line if line.endswith("\n") else line + "\n")
    with open(self.path, "w") as f:
      f.writelines(kept)

  def write(self, step: int, metrics: dict) -> None:
    record = {"step": int(step), **to_python(metrics)}
    with open(self.path, "a") as f:
      f.write(json.dumps(record, allow_nan=True) + "\n")


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


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
