"""Live tracking of a run, from process 0, with exactly the steps and numbers of metrics.jsonl.

    --track tensorboard   event files in <run_dir>/tensorboard/ (tensorboardX, no TensorFlow):
                          `tensorboard --logdir runs` shows every run of a root
    --track wandb         a Weights & Biases run (the optional extra `.[wandb]`); its id comes
                          from the run directory, so a resumed run continues the same W&B run
    --track none          metrics.jsonl only (the library's default)

The lifecycle calls `scalars` with each record it writes to metrics.jsonl, `table` with the
sample table of an evaluation (PPO: the policy's replies with every scorer's score) and
`checkpoint(step)` just before each checkpoint is saved.

Kill and resume: a TensorBoard tracker starts a new event file at every checkpoint, named after
its step. A run resumed from the checkpoint at step s deletes the event files begun at or
after s: they hold exactly the steps the resumed run writes again, so a reader sees each step
once. W&B keeps the first value it received for a step (it refuses steps it has seen).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys

import numpy as np

from hh_jax import paths
from hh_jax.distributed import is_primary
from hh_jax.special_tokens import PAD_ID

TRACKERS = ("tensorboard", "wandb", "none")
EVENTS_DIR = "tensorboard"
EVENT_SUFFIX = ".from_step_{:09d}"          # the step an event file begins after
MAX_TABLE_ROWS = 16


class Tracker:
  """`--track none`: tracks nothing (and the base of the real trackers)."""

  def scalars(self, step: int, record: dict) -> None:
    """One metrics.jsonl record (without its "step")."""

  def table(self, step: int, tag: str, columns: list[str], rows: list[list]) -> None:
    """A small table (e.g. sampled replies and their scores)."""

  def checkpoint(self, step: int) -> None:
    """A checkpoint of `step` is about to be saved: everything so far must be durable."""

  def close(self) -> None:
    """Flush and release the writer."""


def event_start_step(path) -> int | None:
  """The step an event file of ours begins after (from its name), or None for foreign files."""
  match = re.search(r"\.from_step_(\d+)$", str(path))
  return int(match.group(1)) if match else None


def markdown_table(columns: list[str], rows: list[list]) -> str:
  """A Markdown table (TensorBoard's text plugin renders it)."""
  cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")  # noqa: E731
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def summary_writer_class():
  """tensorboardX.SummaryWriter, imported only when tracking with TensorBoard, and without the
  PyTorch import tensorboardX makes whenever torch is installed (seconds, and unused here)."""
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None                 # `import torch` raises ImportError meanwhile
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class TensorBoard(Tracker):
  """Event files under <run_dir>/tensorboard/, one per checkpoint interval (module docstring)."""

  def __init__(self, run_dir, start_step: int):
    self._summary_writer = summary_writer_class()
    self.logdir = paths.join(run_dir, EVENTS_DIR)
    if self.logdir.exists():
      for path in self.logdir.glob("events.out.tfevents.*"):
        begun = event_start_step(path)
        if begun is not None and begun >= start_step:
          path.unlink()
    self.writer = self._open(start_step)

  def _open(self, step: int):
    return self._summary_writer(str(self.logdir), filename_suffix=EVENT_SUFFIX.format(step),
                                flush_secs=30)

  def scalars(self, step: int, record: dict) -> None:
    for tag, value in record.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        self.writer.add_scalar(tag, value, step)

  def table(self, step: int, tag: str, columns: list[str], rows: list[list]) -> None:
    self.writer.add_text(tag, markdown_table(columns, rows), step)

  def checkpoint(self, step: int) -> None:
    self.writer.close()
    self.writer = self._open(step)

  def close(self) -> None:
    self.writer.close()


class WandB(Tracker):
  """A W&B run per run directory, resumed by id (imports wandb only here)."""

  def __init__(self, run_dir, config: dict):
    try:
      import wandb
    except ImportError as e:
      raise ImportError("--track wandb needs the optional extra: pip install -e '.[wandb]'") from e
    self._wandb = wandb
    run_id = hashlib.sha1(paths.absolute(run_dir).encode()).hexdigest()[:16]
    local = None if paths.is_uri(run_dir) else paths.absolute(run_dir)
    self.run = wandb.init(id=run_id, resume="allow", config=config, dir=local,
                          name=os.path.basename(os.path.normpath(str(run_dir))))

  def scalars(self, step: int, record: dict) -> None:
    self.run.log(record, step=step)

  def table(self, step: int, tag: str, columns: list[str], rows: list[list]) -> None:
    self.run.log({tag: self._wandb.Table(columns=columns, data=rows)}, step=step)

  def close(self) -> None:
    self.run.finish()


def open_tracker(kind: str, run_dir, config: dict, start_step: int) -> Tracker:
  """The tracker `kind` for a run (re)starting at `start_step`; a no-op one off process 0."""
  if kind not in TRACKERS:
    raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")
  if kind == "none" or not is_primary():
    return Tracker()
  if kind == "tensorboard":
    return TensorBoard(run_dir, start_step)
  return WandB(run_dir, config)


def sample_table(arrays: dict, decode=None) -> tuple[list[str], list[list]] | None:
  """(columns, rows) of an evaluation's replies: prompt, reply and every `score*`/`gold*`
  array, one row per prompt (at most MAX_TABLE_ROWS); None if it has no replies.

  decode: token ids -> text (default: the ids themselves).
  """
  if "prompts" not in arrays or "response" not in arrays:
    return None
  decode = decode or (lambda ids: " ".join(str(int(i)) for i in ids))
  scores = sorted(k for k in arrays if k.startswith(("score", "gold")) and np.ndim(arrays[k]) == 1)
  mask = np.asarray(arrays.get("mask", np.asarray(arrays["response"]) != PAD_ID)).astype(bool)
  rows = []
  for i in range(min(len(arrays["prompts"]), MAX_TABLE_ROWS)):
    prompt = [t for t in np.asarray(arrays["prompts"][i]) if t != PAD_ID]
    reply = np.asarray(arrays["response"][i])[mask[i]]
    rows.append([decode(prompt), decode(reply)] + [float(arrays[k][i]) for k in scores])
  return ["prompt", "reply"] + scores, rows
