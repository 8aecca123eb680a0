"""Run and data paths through `etils.epath`, so a workdir may be a local folder or a bucket
(`gs://...`, `s3://...`) alike.

Local paths are made absolute (orbax wants absolute paths); URIs are kept as they are (an
`os.path.abspath` of `gs://b/x` would be a local folder named `gs:`). Object stores cannot
append to or rename a file cheaply, so files are written whole: `atomic_write` writes a
temporary file and renames it locally, and writes the object directly on a bucket (an object
upload is atomic there).
"""

from __future__ import annotations

import io
import os

import numpy as np
from etils import epath

URI_SCHEMES = ("gs://", "s3://", "az://", "hf://")


def is_uri(path) -> bool:
  """True for an object-store URI (gs://, s3://, ...), False for a local path."""
  return str(path).startswith(URI_SCHEMES)


def as_path(path) -> epath.Path:
  """`path` (a str or a Path) as an absolute epath.Path; URIs stay URIs."""
  return epath.Path(str(path) if is_uri(path) else os.path.abspath(str(path)))


def join(root, *parts: str) -> epath.Path:
  """`root / parts...` as an absolute epath.Path."""
  return as_path(root).joinpath(*parts)


def absolute(path) -> str:
  """The absolute form of a local path, or the URI itself (for configs and commands)."""
  return str(as_path(path))


def atomic_write(path, data: str | bytes) -> None:
  """Write a whole file so that a kill never leaves half of it (parents are created)."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  target = path if is_uri(path) else path.parent / f"{path.name}.tmp"
  if isinstance(data, str):
    target.write_text(data)
  else:
    target.write_bytes(data)
  if target != path:
    target.replace(path)


def save_npz(path, arrays: dict, compressed: bool = False) -> None:
  """An .npz of `arrays` at `path` (local or bucket), written whole."""
  buffer = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
  atomic_write(path, buffer.getvalue())
