"""Run directories through etils.epath: a local folder, and a gs:// bucket faked on local disk.

The bucket stand-in is epath's own `epath.testing.mock_epath()` (every gs:// path is served by
the local-disk backend, relative to the working directory), and tensorstore's GCS key-value
store (which orbax uses for gs:// arrays) is pointed at the same folder. Orbax still takes its
gs:// code paths (commit_success files instead of renames); only the network is replaced.
"""

from __future__ import annotations

import os
import shutil
from unittest import mock

import pytest
from etils import epath
from etils.epath import testing as epath_testing
from orbax.checkpoint._src.path import gcs_utils

from hh_jax import paths
from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.data.pipeline import PMData
from hh_jax.train import tasks
from tests.conftest import ToyTokenizer, toy_pairs
from tests.run_files import assert_same_run_files

CFG = RunConfig(kind="pm", model_size="1k", batch_size=16, log_every=2, checkpoint_every=3,
                data=DataConfig(max_len=16), optim=OptimConfig(learning_rate=3e-3))
DATA = PMData(ToyTokenizer(), toy_pairs(160, 0), toy_pairs(32, 1), {})


def test_local_paths_are_absolute_and_uris_stay_uris(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.absolute("runs/x") == str(tmp_path / "runs" / "x")
  assert paths.absolute("gs://bucket/runs/x") == "gs://bucket/runs/x"
  assert isinstance(paths.join("gs://bucket", "a", "b.json"), epath.Path)
  paths.atomic_write("runs/x/a.json", "{}")
  assert (tmp_path / "runs" / "x" / "a.json").read_text() == "{}"
  assert not list((tmp_path / "runs" / "x").glob("*.tmp"))


@pytest.fixture
def fake_bucket(tmp_path, monkeypatch):
  """gs://... served from <tmp_path>/gs:/... (epath's mock and tensorstore's file driver)."""
  monkeypatch.chdir(tmp_path)
  local = lambda uri: os.path.join(str(tmp_path), "gs:", uri.removeprefix("gs://"))  # noqa: E731
  file_store = lambda uri: {"driver": "file", "path": local(uri)}  # noqa: E731
  with epath_testing.mock_epath(), \
      mock.patch.object(gcs_utils, "get_kvstore_for_gcs", file_store), \
      mock.patch.object(gcs_utils, "is_hierarchical_namespace_enabled", lambda p: False):
    yield local


def test_a_run_killed_and_resumed_on_a_bucket_writes_the_files_of_a_local_run(tmp_path,
                                                                              fake_bucket):
  local_dir = str(tmp_path / "local")
  tasks.run_config(CFG, local_dir, inputs=DATA, progress=False)
  uri = "gs://bucket/runs/pm"
  assert tasks.run_config(CFG, uri, inputs=DATA, progress=False, stop_after_steps=4) == {
      "stopped_at": 4}
  summary = tasks.run_config(CFG, uri, inputs=DATA, progress=False)
  assert summary["train/steps"] == 10
  assert not (tmp_path / "gs:" / "bucket" / "runs" / "pm" / "metrics.jsonl.tmp").exists()
  assert tasks.run_config(CFG, uri, inputs=DATA, progress=False) == summary   # finished: skipped
  copied = str(tmp_path / "copied")          # out of the bucket folder: epath reads `gs:/` as gs://
  shutil.copytree(fake_bucket(uri), copied)
  assert_same_run_files(local_dir, copied)
