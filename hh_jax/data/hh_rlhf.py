"""Anthropic HH-RLHF (Bai et al. 2022) as the TFDS dataset `hh_rlhf`.

Configs: one per release subset (`helpful-base`, `helpful-online`,
`helpful-rejection-sampled`, `harmless-base`), `helpful` (the three helpful subsets)
and `all`. Splits `train` and `test`. Files are array_record, read with
`tfds.data_source`; no TensorFlow is needed to prepare or read them.

Input: `{subset}/{split}.jsonl.gz`, one `{"chosen": str, "rejected": str}` a line, each
a full transcript "\n\nHuman: ...\n\nAssistant: ...". The files are downloaded from the
official release, or read from a manual directory with the same layout, and every file
is checked against `checksums/hh_rlhf.tsv` (size and sha256) before use.

Each example (the schema shared with `hh_synth`):

    context        the longest common prefix of the two transcripts that ends with
                   "\n\nAssistant:" (for all but a few pairs, everything up to and
                   including the last "\n\nAssistant:")
    chosen         chosen_full[len(context):]    so context + chosen == chosen_full
    rejected       rejected_full[len(context):]  so context + rejected == rejected_full
    num_turns      context.count("\n\nHuman:")
    chosen_full, rejected_full, subset
    contexts_differ, empty_chosen, empty_rejected, identical   (quirk flags, below)

Quirk policy (every pair is kept, flagged, and counted in `info.metadata`):
  * contexts_differ: the two transcripts' own last-"\n\nAssistant:" prefixes differ
    (a reply that itself contains "\n\nAssistant:"). The shared context above is used,
    so the pair is still an exact comparison of two continuations.
  * empty_chosen / empty_rejected: the reply is empty or whitespace only. Kept: a
    crowdworker preferring an empty reply to a harmful one is real signal.
  * identical: chosen_full == rejected_full. Kept: its Bradley-Terry gradient is
    exactly zero, and dropping it would hide it from accuracy counts.
Malformed lines (invalid UTF-8, bad JSON, not an object, missing or non-string field,
lone surrogates, two transcripts sharing no "...\n\nAssistant:" prefix) stop preparation
with an error naming the file and line; with `skip_malformed=True` they are skipped and
counted (`metadata["counts"][split]["skipped_malformed"]`, first lines listed). An
empty file is always an error: it is a broken download, not a bad line.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import zlib
from typing import Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

SUBSETS = ("helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base")
HELPFUL_SUBSETS = SUBSETS[:3]
SPLITS = ("train", "test")
URL_BASE = "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/"
CHECKSUMS_PATH = os.path.join(os.path.dirname(__file__), "checksums", "hh_rlhf.tsv")

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
QUIRKS = ("contexts_differ", "empty_chosen", "empty_rejected", "identical")
MAX_LISTED_MALFORMED = 100  # skipped lines listed by (file, line, reason) in metadata

_MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the eight files `{subset}/{split}.jsonl.gz` (subsets helpful-base,
helpful-online, helpful-rejection-sampled, harmless-base; splits train, test) from
https://huggingface.co/datasets/Anthropic/hh-rlhf and keep their layout under the manual
directory, e.g. `M/harmless-base/test.jsonl.gz`. Only the files of the chosen config and
splits are needed.
"""


class MalformedInputError(ValueError):
  """A line or file of the raw release that cannot be read as a comparison."""


class ChecksumError(ValueError):
  """A raw file whose size or sha256 differs from the expected one."""


# ----------------------------------------------------------------------------------------
# Checksums.
# ----------------------------------------------------------------------------------------


def read_checksums(path: str | os.PathLike) -> dict[str, tuple[int, str]]:
  """Parses a checksums TSV: `relative/path<TAB>size<TAB>sha256` a line, `#` comments."""
  table = {}
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      fields = line.split("\t")
      if len(fields) != 3 or not fields[1].isdigit() or len(fields[2]) != 64:
        raise ValueError(f"{path}:{line_no}: expected 'path<TAB>size<TAB>sha256', got {line!r}")
      table[fields[0]] = (int(fields[1]), fields[2].lower())
  return table


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
  """(size in bytes, sha256 hex) of a file, read in 1 MiB blocks."""
  sha, size = hashlib.sha256(), 0
  with open(path, "rb") as f:
    while block := f.read(1 << 20):
      sha.update(block)
      size += len(block)
  return size, sha.hexdigest()


def verify_file(path: str | os.PathLike, rel_path: str, expected: Mapping[str, tuple[int, str]]) -> dict:
  """Checks `path` against `expected[rel_path]`; returns what to record in metadata.

  A size or digest mismatch raises `ChecksumError` naming the file and both values. A
  file with no expected entry is prepared with a warning, and its digest is recorded
  (`verified: False`) so the user can pin it.
  """
  size, sha = file_digest(path)
  record = {"size": size, "sha256": sha, "verified": rel_path in expected}
  if rel_path not in expected:
    logging.warning("hh_rlhf: no recorded checksum for %s; using it unverified (size %d, sha256 %s)",
                    rel_path, size, sha)
    return record
  want_size, want_sha = expected[rel_path]
  if (size, sha) != (want_size, want_sha):
    raise ChecksumError(
        f"checksum mismatch for {rel_path} ({path}): expected size {want_size} sha256 {want_sha}, "
        f"got size {size} sha256 {sha}. If this is a deliberate different file (e.g. a sample), "
        "pass checksums={path: (size, sha256)} or a TSV file to the builder.")
  return record


# ----------------------------------------------------------------------------------------
# Parsing one comparison (pure functions).
# ----------------------------------------------------------------------------------------


def shared_context(chosen_full: str, rejected_full: str) -> str:
  """The longest common prefix of both transcripts that ends with "\\n\\nAssistant:"."""
  n = min(len(chosen_full), len(rejected_full))
  common = 0
  while common < n and chosen_full[common] == rejected_full[common]:
    common += 1  # a plain loop: transcripts are short and this runs once per pair
  end = chosen_full.rfind(ASSISTANT, 0, common)  # the marker must lie wholly inside the common prefix
  if end < 0:
    raise MalformedInputError('the two transcripts share no prefix ending in "\\n\\nAssistant:"')
  return chosen_full[:end + len(ASSISTANT)]


def split_pair(chosen_full: str, rejected_full: str, subset: str) -> dict:
  """One raw comparison -> an example of the common schema (see the module docstring)."""
  context = shared_context(chosen_full, rejected_full)
  chosen, rejected = chosen_full[len(context):], rejected_full[len(context):]
  own_chosen = chosen_full[:chosen_full.rfind(ASSISTANT) + len(ASSISTANT)]
  own_rejected = rejected_full[:rejected_full.rfind(ASSISTANT) + len(ASSISTANT)]
  return {
      "context": context,
      "chosen": chosen,
      "rejected": rejected,
      "num_turns": context.count(HUMAN),
      "chosen_full": chosen_full,
      "rejected_full": rejected_full,
      "subset": subset,
      "contexts_differ": own_chosen != own_rejected,
      "empty_chosen": not chosen.strip(),
      "empty_rejected": not rejected.strip(),
      "identical": chosen_full == rejected_full,
  }


def parse_line(raw: bytes) -> tuple[str, str]:
  """One JSONL line -> (chosen_full, rejected_full), or MalformedInputError saying why."""
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise MalformedInputError(f"invalid UTF-8 at byte {e.start}") from None
  if not text.strip():
    raise MalformedInputError("blank line")
  try:
    obj = json.loads(text)
  except json.JSONDecodeError as e:
    raise MalformedInputError(f"bad JSON ({e.msg} at column {e.colno})") from None
  if not isinstance(obj, dict):
    raise MalformedInputError(f"expected a JSON object, got {type(obj).__name__}")
  out = []
  for field in ("chosen", "rejected"):
    if field not in obj:
      raise MalformedInputError(f"missing field {field!r}")
    value = obj[field]
    if not isinstance(value, str):
      raise MalformedInputError(f"field {field!r} is {type(value).__name__}, not a string")
    try:
      value.encode("utf-8")
    except UnicodeEncodeError:
      raise MalformedInputError(f"field {field!r} holds a lone surrogate (\\ud800-\\udfff escape)") from None
    out.append(value)
  return out[0], out[1]


def read_comparisons(path: str | os.PathLike, rel_path: str, subset: str, skip_malformed: bool,
                     counts: dict) -> Iterator[tuple[int, dict]]:
  """Yields (line number, example) for every line of a `.jsonl.gz` file.

  Updates `counts` in place: `pairs`, each quirk, `skipped_malformed`, `malformed`.
  """
  line_no = 0
  try:
    with gzip.open(path, "rb") as f:
      for line_no, raw in enumerate(f, 1):
        try:
          example = split_pair(*parse_line(raw), subset)
        except MalformedInputError as e:
          if not skip_malformed:
            raise MalformedInputError(f"{rel_path} ({path}) line {line_no}: {e}") from None
          counts["skipped_malformed"] += 1
          if len(counts["malformed"]) < MAX_LISTED_MALFORMED:
            counts["malformed"].append([rel_path, line_no, str(e)])
          continue
        counts["pairs"] += 1
        for quirk in QUIRKS:
          counts[quirk] += int(example[quirk])
        yield line_no, example
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
    raise MalformedInputError(f"{rel_path} ({path}) line {line_no + 1}: unreadable gzip ({e})") from None
  if line_no == 0:
    raise MalformedInputError(f"{rel_path} ({path}) line 1: empty file (no comparisons)")


def new_counts() -> dict:
  return {"pairs": 0, **{q: 0 for q in QUIRKS}, "skipped_malformed": 0, "malformed": []}


# ----------------------------------------------------------------------------------------
# The TFDS builder.
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class HhRlhfConfig(tfds.core.BuilderConfig):
  """A config names the release subsets it concatenates."""

  subsets: tuple[str, ...] = ()


def _configs() -> list[HhRlhfConfig]:
  singles = [HhRlhfConfig(name=s, description=f"The {s} subset.", subsets=(s,)) for s in SUBSETS]
  return singles + [
      HhRlhfConfig(name="helpful", description="helpful-base + helpful-online + helpful-rejection-sampled.",
                   subsets=HELPFUL_SUBSETS),
      HhRlhfConfig(name="all", description="All four subsets.", subsets=SUBSETS),
  ]


class HhRlhf(tfds.core.GeneratorBasedBuilder):
  """Anthropic HH-RLHF human preference comparisons.

  Builder options (keyword arguments of `tfds.builder("hh_rlhf/<config>", ...)`):
    checksums: a TSV path or a mapping {relative path: (size, sha256)} whose entries
      replace those of `checksums/hh_rlhf.tsv`, for a deliberately different file
      such as the shared 1,800-pair sample. The digests used are recorded in metadata.
    splits: the splits to prepare (default both); a manual directory missing a file of
      a requested split is an error naming the file.
    skip_malformed: skip and count malformed lines instead of stopping.
  Files default to array_record (random access through `tfds.data_source`).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: quirk flags, checksum verification."}
  BUILDER_CONFIGS = _configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_DOWNLOAD_INSTRUCTIONS

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10's default imports `importlib_resources`, which it only declares as a
    # dependency for Python < 3.9; this file's own path is what it would compute.
    return epath.Path(__file__)

  def __init__(self, *, checksums: str | os.PathLike | Mapping[str, tuple[int, str]] | None = None,
               splits: Sequence[str] | None = None, skip_malformed: bool = False, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    # TFDS rebuilds a builder from `_original_state` when pickling; keep our options in it.
    self._original_state.update(checksums=checksums, splits=splits, skip_malformed=skip_malformed,
                                file_format=kwargs["file_format"])
    self._expected_checksums = read_checksums(CHECKSUMS_PATH)
    if checksums is not None:
      override = read_checksums(checksums) if isinstance(checksums, (str, os.PathLike)) else checksums
      self._expected_checksums.update({k: (int(v[0]), str(v[1]).lower()) for k, v in override.items()})
    self._splits = tuple(splits) if splits is not None else SPLITS
    unknown = set(self._splits) - set(SPLITS)
    if unknown:
      raise ValueError(f"hh_rlhf: unknown splits {sorted(unknown)}; expected a subset of {SPLITS}")
    self._skip_malformed = skip_malformed

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "context": text,
            "chosen": text,
            "rejected": text,
            "num_turns": tfds.features.Scalar(dtype=np.int32),
            "chosen_full": text,
            "rejected_full": text,
            "subset": text,
            **{q: tfds.features.Scalar(dtype=np.bool_) for q in QUIRKS},
        }),
        supervised_keys=None,
        homepage="https://github.com/anthropics/hh-rlhf",
        citation="Bai et al. 2022, Training a Helpful and Harmless Assistant with RLHF, arXiv:2204.05862",
        metadata=tfds.core.MetadataDict(),
    )

  def _raw_paths(self, dl_manager) -> dict[str, epath.Path]:
    """{relative path: local path} of every raw file the requested splits need."""
    rel_paths = [f"{s}/{split}.jsonl.gz" for s in self.builder_config.subsets for split in self._splits]
    # TFDS passes `download_config.manual_dir`, or `<download_dir>/manual` when none was
    # given (`dl_manager.manual_dir` itself raises when that is empty, hence the private
    # attribute). Files found there are used; a manual dir the user named must hold them
    # all; otherwise the official files are downloaded.
    manual_dir = dl_manager._manual_dir  # pylint: disable=protected-access
    default_manual_dir = epath.Path(dl_manager.download_dir) / "manual"
    if manual_dir is not None:
      paths = {rel: epath.Path(manual_dir) / rel for rel in rel_paths}
      missing = [os.fspath(p) for p in paths.values() if not p.exists()]
      if not missing:
        return paths
      if epath.Path(manual_dir) != default_manual_dir:
        raise FileNotFoundError(
            f"hh_rlhf/{self.builder_config.name}: missing in the manual directory {manual_dir}: "
            f"{', '.join(missing)}. Prepare only the splits you have with "
            f"tfds.builder(..., splits=('test',)) (CLI: --splits test).\n{_MANUAL_DOWNLOAD_INSTRUCTIONS}")
    downloaded = dl_manager.download({rel: URL_BASE + rel for rel in rel_paths})
    return {rel: epath.Path(downloaded[rel]) for rel in rel_paths}

  def _split_generators(self, dl_manager):
    paths = self._raw_paths(dl_manager)
    files = {rel: verify_file(path, rel, self._expected_checksums) for rel, path in paths.items()}
    self.info.metadata["files"] = files
    self.info.metadata["skip_malformed"] = self._skip_malformed
    self.info.metadata["counts"] = {}
    return {split: self._generate_examples(paths, split) for split in self._splits}

  def _generate_examples(self, paths: Mapping[str, epath.Path], split: str):
    counts = new_counts()
    for subset in self.builder_config.subsets:
      rel = f"{subset}/{split}.jsonl.gz"
      for line_no, example in read_comparisons(paths[rel], rel, subset, self._skip_malformed, counts):
        yield f"{rel}:{line_no}", example
    # Runs once the split writer has consumed every example, before metadata is saved.
    self.info.metadata["counts"][split] = counts
