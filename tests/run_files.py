"""Compare everything two run directories hold (a resumed run against an uninterrupted one)."""

from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np

from hh_jax.train import lifecycle

TIMING_PREFIXES = ("perf/", "time/")


def _jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(TIMING_PREFIXES)}
            for line in f if line.strip()]


def run_files(run_dir: str) -> list[str]:
  """Every file of a run directory, relative, except checkpoints, logs and the resume record."""
  out = []
  for path in glob.glob(os.path.join(run_dir, "**", "*"), recursive=True):
    rel = os.path.relpath(path, run_dir)
    if os.path.isfile(path) and not rel.startswith(("checkpoints", "params", "train.log",
                                                    lifecycle.RESUMES)):
      out.append(rel)
  return sorted(out)


def assert_same_run_files(a: str, b: str) -> None:
  """Every file equal (JSON lines minus timing fields, arrays bitwise, final params bitwise)."""
  files = run_files(a)
  assert files == run_files(b)
  for rel in files:
    pa, pb = os.path.join(a, rel), os.path.join(b, rel)
    if rel.endswith(".jsonl"):
      assert _jsonl(pa) == _jsonl(pb), rel
    elif rel.endswith(".json"):
      strip = lambda d: {k: v for k, v in d.items() if not k.startswith(TIMING_PREFIXES)}  # noqa: E731
      with open(pa) as fa, open(pb) as fb:
        assert strip(json.load(fa)) == strip(json.load(fb)), rel
    elif rel.endswith(".npz"):
      xa, xb = np.load(pa), np.load(pb)
      assert sorted(xa.files) == sorted(xb.files), rel
      for k in xa.files:
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{rel}:{k}")
  if os.path.exists(os.path.join(a, lifecycle.MODEL)):
    pa, pb = lifecycle.load_model(a).params, lifecycle.load_model(b).params
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, pa, pb))), "final params differ"
