"""TensorBoard events, read back with tensorboard's own reader, equal metrics.jsonl step for
step after a kill and resume; the sample table of an evaluation reaches the events as text."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from hh_jax import tracking
from hh_jax.checkpoint import Checkpointer
from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.data.pipeline import PMData
from hh_jax.metrics import read_jsonl
from hh_jax.train import tasks
from tests.conftest import ToyTokenizer, toy_pairs

# 10 steps; logs at 2, 4, 6, 8, 10; checkpoints at 3, 6, 9
CFG = RunConfig(kind="pm", model_size="1k", batch_size=16, log_every=2, checkpoint_every=3,
                data=DataConfig(max_len=16), optim=OptimConfig(learning_rate=3e-3))
DATA = PMData(ToyTokenizer(), toy_pairs(160, 0), toy_pairs(32, 1), {})


def read_events(logdir: str) -> EventAccumulator:
  """Every event, duplicates kept (no purging of out-of-order steps), so none can hide."""
  acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0},
                         purge_orphaned_data=False)
  acc.Reload()
  return acc


def assert_events_equal_metrics(run_dir: str) -> None:
  records = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  acc = read_events(os.path.join(run_dir, tracking.EVENTS_DIR))
  tags = {k for r in records for k in r if k != "step"}
  assert tags == set(acc.Tags()["scalars"])
  for tag in sorted(tags):
    events = acc.Scalars(tag)
    expected = [(r["step"], r[tag]) for r in records if tag in r]
    assert [e.step for e in events] == [step for step, _ in expected], tag
    for event, (_, value) in zip(events, expected):
      if math.isnan(value):
        assert math.isnan(event.value), tag
      else:
        assert event.value == np.float32(value), (tag, event.step)


def test_events_equal_metrics_after_a_kill_between_checkpoints(tmp_path):
  run_dir = str(tmp_path / "run")
  tasks.run_config(CFG, run_dir, inputs=DATA, progress=False, track="tensorboard",
                   stop_after_steps=8)
  # A kill after step 8 was logged but before its checkpoint: only the one of step 6 survives.
  ckpt = Checkpointer(run_dir)
  ckpt.delete(8)
  assert ckpt.latest_step() == 6
  ckpt.close()
  assert 8 in [e.step for e in read_events(os.path.join(run_dir, "tensorboard")).Scalars("pm/loss")]
  tasks.run_config(CFG, run_dir, inputs=DATA, progress=False, track="tensorboard")
  records = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
  assert_events_equal_metrics(run_dir)


def test_no_tracking_writes_no_events(tmp_path):
  run_dir = str(tmp_path / "run")
  tasks.run_config(CFG, run_dir, inputs=DATA, progress=False, track="none", stop_after_steps=2)
  assert not os.path.exists(os.path.join(run_dir, tracking.EVENTS_DIR))
  with pytest.raises(ValueError, match="unknown tracker"):
    tracking.open_tracker("tensorbord", run_dir, {}, 0)


def test_wandb_is_imported_only_when_asked_for_and_names_its_extra(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)            # as if the extra were not installed
  assert type(tracking.open_tracker("none", str(tmp_path), {}, 0)) is tracking.Tracker
  with pytest.raises(ImportError, match=r"\.\[wandb\]"):
    tracking.open_tracker("wandb", str(tmp_path), {}, 0)


def test_a_sample_table_of_replies_and_scores_reaches_tensorboard_as_text(tmp_path):
  tok = ToyTokenizer()
  arrays = {"prompts": np.array([[0, 0, 3, 4], [0, 5, 6, 7]]),            # left-padded
            "response": np.array([[8, 9, 1, 0], [10, 11, 12, 1]]),
            "mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]]),
            "score_train": np.array([0.25, -1.5]), "gold_hh": np.array([1.0, 0.0]),
            "samples": 64}
  columns, rows = tracking.sample_table(arrays, tok.decode)
  assert columns == ["prompt", "reply", "gold_hh", "score_train"]
  assert rows[0] == [tok.decode([3, 4]), tok.decode([8, 9, 1]), 1.0, 0.25]
  tracker = tracking.open_tracker("tensorboard", str(tmp_path), {}, 0)
  tracker.table(4, "eval/samples", columns, rows)
  tracker.close()
  acc = read_events(str(tmp_path / tracking.EVENTS_DIR))
  [event] = acc.Tensors("eval/samples/text_summary")
  text = tensor_util.make_ndarray(event.tensor_proto).item().decode()
  assert event.step == 4 and tok.decode([10, 11, 12, 1]) in text and "-1.5" in text
