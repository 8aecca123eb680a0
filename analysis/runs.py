"""Finding and reading run directories (files only: nothing here uses the training code).

A results root holds run directories, possibly nested (`results/quick/pm_scaling/<run>/`).
A finished run has `summary.json`; one without it (killed, still running) is reported as
skipped, never loaded. Side files that are not runs (`bon.json`, `elo.json`) are found
with `find_files`.

Every reader raises `RunFileError` (a ValueError) naming the file, and the line for
JSON-lines files, when a file is malformed. `write_json` writes the analysis outputs as
strict JSON (`to_json`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from typing import Any

import numpy as np

# Directories never searched for runs: checkpoints can hold thousands of files.
_PRUNE = {"checkpoints", "ckpt", "params", "__pycache__", ".git"}
MAX_DEPTH = 4  # root/<group>/<sweep>/<run>/ is depth 3; one more level of slack


_SEED_SUFFIX = re.compile(r"^(?P<base>.+?)[-_]s(?P<seed>\d+)$")


def split_seed(name: str) -> tuple[str, int | None]:
  """A run name without its seed suffix, and the seed: 'ppo/policy-25k-pm-100k-s2' ->
  ('ppo/policy-25k-pm-100k', 2), '25k-n4000_s0' -> ('25k-n4000', 0); no '-s<k>' / '_s<k>'
  suffix -> (name, None). Runs of one config differ only in that suffix: the seed is the
  replicate of every interval over seeds."""
  m = _SEED_SUFFIX.match(name.rstrip("/"))
  return (m["base"], int(m["seed"])) if m else (name, None)


class RunFileError(ValueError):
  """A run file exists but cannot be parsed; the message names the file (and line)."""


def read_json(path: str) -> Any:
  """json.load(path), with the file name, line and column in the error."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise RunFileError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e


def read_jsonl(path: str) -> list[dict]:
  """One JSON object per non-blank line; the error names the file and the 1-based line."""
  records = []
  with open(path) as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: malformed JSON on line {lineno}: {e.msg}") from e
      if not isinstance(record, dict):
        raise RunFileError(f"{path}: line {lineno} is not a JSON object")
      records.append(record)
  return records


def to_json(x: Any) -> Any:
  """Numpy -> Python, tuple -> list, NaN/inf -> None (strict JSON), non-string keys -> strings."""
  if isinstance(x, dict):
    return {str(k): to_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_json(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_json(x.tolist())
  if isinstance(x, np.bool_):
    return bool(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def write_json(path: str, obj: Any) -> None:
  """`obj` as strict, indented JSON (see to_json)."""
  with open(path, "w") as f:
    json.dump(to_json(obj), f, indent=2, allow_nan=False)


@dataclasses.dataclass(eq=False)
class Run:
  """One finished run directory. `config` and `summary` are read eagerly; the rest on first use."""

  dir: str
  name: str              # path relative to the results root, e.g. "pm_scaling/25k_d4000_s0"
  config: dict
  summary: dict

  @property
  def kind(self) -> str | None:
    return self.summary.get("kind", self.config.get("kind"))

  def path(self, filename: str) -> str:
    return os.path.join(self.dir, filename)

  def has(self, filename: str) -> bool:
    return os.path.exists(self.path(filename))

  @functools.cached_property
  def metrics(self) -> list[dict]:
    """metrics.jsonl records ([] when the file is absent)."""
    return read_jsonl(self.path("metrics.jsonl")) if self.has("metrics.jsonl") else []

  @functools.cached_property
  def samples(self) -> list[dict]:
    """samples.jsonl records (PPO per-sample scores; [] when absent)."""
    return read_jsonl(self.path("samples.jsonl")) if self.has("samples.jsonl") else []

  @functools.cached_property
  def pms(self) -> dict | None:
    """pms.json (PPO: which policy, train PM and test PMs, with sizes), or None."""
    return read_json(self.path("pms.json")) if self.has("pms.json") else None

  @functools.cached_property
  def scores(self) -> dict[str, np.ndarray] | None:
    """eval_scores.npz as a dict of arrays (PM runs), or None when absent.

    Checks that `chosen` and `rejected` exist and that every per-pair array has their length.
    """
    path = self.path("eval_scores.npz")
    if not os.path.exists(path):
      return None
    out = read_npz(path, required=("chosen", "rejected"))
    n = len(out["chosen"])
    for key in ("rejected", "source", "num_turns", "p_chosen"):
      if key in out and len(out[key]) != n:
        raise RunFileError(f"{path}: array {key!r} has length {len(out[key])}, expected {n}")
    return out


@dataclasses.dataclass
class Discovery:
  runs: list[Run]
  skipped: list[str]  # run directories without summary.json (unfinished)


def _walk(root: str, into_runs: bool = False):
  """Yield (dirpath, filenames) under root to MAX_DEPTH; into run directories only if `into_runs`."""
  root = os.path.abspath(root)
  base_depth = root.rstrip(os.sep).count(os.sep)
  for dirpath, dirnames, filenames in os.walk(root):
    is_run = "summary.json" in filenames or "config.json" in filenames
    yield dirpath, filenames
    if (is_run and not into_runs) or dirpath.count(os.sep) - base_depth >= MAX_DEPTH:
      dirnames[:] = []  # a run's subfolders are its checkpoints
    else:
      dirnames[:] = sorted(d for d in dirnames if d not in _PRUNE and not d.startswith("."))


def read_npz(path: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
  """The arrays of an .npz file; RunFileError naming the file when it cannot be read or lacks
  one of the `required` arrays."""
  try:
    with np.load(path, allow_pickle=False) as z:
      out = {k: np.asarray(z[k]) for k in z.files}
  except (OSError, ValueError) as e:
    raise RunFileError(f"{path}: cannot read npz: {e}") from e
  for key in required:
    if key not in out:
      raise RunFileError(f"{path}: missing array {key!r} (has {sorted(out)})")
  return out


def load_run(run_dir: str, name: str) -> Run:
  """The finished run in run_dir (its summary.json and, if present, config.json), named `name`.
  RunFileError naming the file when summary.json is missing or not a JSON object."""
  path = os.path.join(run_dir, "summary.json")
  if not os.path.exists(path):
    raise RunFileError(f"{path}: missing (the run has not finished)")
  summary = read_json(path)
  if not isinstance(summary, dict):
    raise RunFileError(f"{path}: expected a JSON object")
  config_path = os.path.join(run_dir, "config.json")
  config = read_json(config_path) if os.path.exists(config_path) else {}
  return Run(dir=run_dir, name=name, config=config, summary=summary)


def discover(root: str, kind: str | None = None) -> Discovery:
  """All finished runs under `root` (optionally of one kind) and the unfinished ones skipped.

  A directory is a run if it holds config.json or summary.json; it is finished iff it holds
  summary.json. Raises FileNotFoundError if `root` is not a directory.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f"results root {root!r} is not a directory")
  runs, skipped = [], []
  for dirpath, filenames in _walk(root):
    if "summary.json" not in filenames:
      if "config.json" in filenames:
        skipped.append(dirpath)
      continue
    run = load_run(dirpath, os.path.relpath(dirpath, root))
    if kind is None or run.kind == kind:
      runs.append(run)
  return Discovery(runs=runs, skipped=skipped)


def find_runs(root: str, kind: str | None = None) -> list[Run]:
  """Finished runs under `root` (those with summary.json), optionally only `kind` ("pm", "ppo", ...)."""
  return discover(root, kind).runs


def find_files(root: str, filename: str) -> list[str]:
  """Paths of every `filename` (e.g. "bon.json", "elo.json") under root, sorted."""
  return sorted(os.path.join(d, filename) for d, files in _walk(root, into_runs=True) if filename in files)
