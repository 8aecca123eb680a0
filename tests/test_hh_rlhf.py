"""The `hh_rlhf` TFDS builder on the real 1,800-pair sample and on generated bad files.

Expected counts come from the raw file read here with plain string operations, not
from the builder's parser.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import pickle
import shutil
import sys

import pytest
import tensorflow_datasets as tfds

import hh_jax.data  # noqa: F401  registers hh_rlhf
from hh_jax.data import cli, hh_rlhf

from tests.conftest import HH_RLHF_SAMPLE as SAMPLE  # noqa: E402
from tests.conftest import HH_RLHF_SAMPLES as SHARED  # noqa: E402
A = "\n\nAssistant:"


def _digest(path) -> tuple[int, str]:
  data = open(path, "rb").read()
  return len(data), hashlib.sha256(data).hexdigest()




def _prepare(manual_dir, data_dir, config="harmless-base", **builder_kwargs):
  builder = tfds.builder(f"hh_rlhf/{config}", data_dir=os.fspath(data_dir), **builder_kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder


@pytest.fixture(scope="module")
def raw_rows() -> list[dict]:
  with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def sample_manual_dir(tmp_path_factory):
  manual = tmp_path_factory.mktemp("manual")
  (manual / "harmless-base").mkdir()
  shutil.copy(SAMPLE, manual / "harmless-base" / "test.jsonl.gz")
  return manual


@pytest.fixture(scope="module")
def prepared(sample_manual_dir, tmp_path_factory):
  """The sample prepared once: the user pins its own digest with a `checksums` override."""
  data_dir = tmp_path_factory.mktemp("data")
  override = {"harmless-base/test.jsonl.gz": _digest(SAMPLE)}
  builder = _prepare(sample_manual_dir, data_dir, splits=("test",), checksums=override)
  source = tfds.data_source("hh_rlhf/harmless-base", split="test", data_dir=os.fspath(data_dir))
  examples = [{k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in source[i].items()}
              for i in range(len(source))]
  return builder, examples, data_dir


def _expected_fields(chosen_full: str, rejected_full: str) -> dict:
  """Independent reference: shared context via os.path.commonprefix + rfind."""
  common = os.path.commonprefix([chosen_full, rejected_full])
  context = common[:common.rfind(A) + len(A)]
  return {
      "context": context,
      "chosen": chosen_full[len(context):],
      "rejected": rejected_full[len(context):],
      "num_turns": context.count("\n\nHuman:"),
      "contexts_differ": chosen_full.rsplit(A, 1)[0] != rejected_full.rsplit(A, 1)[0],
      "empty_chosen": chosen_full[len(context):].strip() == "",
      "empty_rejected": rejected_full[len(context):].strip() == "",
      "identical": chosen_full == rejected_full,
  }


def test_configs_registered():
  names = {c.name for c in hh_rlhf.HhRlhf.BUILDER_CONFIGS}
  assert names == {"helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base", "helpful", "all"}
  by_name = {c.name: c for c in hh_rlhf.HhRlhf.BUILDER_CONFIGS}
  assert by_name["helpful"].subsets == ("helpful-base", "helpful-online", "helpful-rejection-sampled")
  assert len(by_name["all"].subsets) == 4


def test_checksums_file_matches_shared_list():
  shared = {}
  for line in open(os.path.join(SHARED, "CHECKSUMS")):
    if line.strip() and not line.startswith("#"):
      path, size, sha = line.split()
      shared[path] = (int(size), sha)
  assert hh_rlhf.read_checksums(hh_rlhf.CHECKSUMS_PATH) == shared
  assert "harmless-base/train.jsonl.gz" not in shared and len(shared) == 7


def test_every_pair_prepared(prepared, raw_rows):
  _, examples, _ = prepared
  got = collections.Counter((e["chosen_full"], e["rejected_full"]) for e in examples)
  want = collections.Counter((r["chosen"], r["rejected"]) for r in raw_rows)
  assert len(examples) == len(raw_rows) == 1800
  assert got == want
  assert "tensorflow" not in sys.modules  # prepared and read without TensorFlow


def test_fields_and_flags_match_independent_parse(prepared):
  _, examples, _ = prepared
  for e in examples:
    want = _expected_fields(e["chosen_full"], e["rejected_full"])
    assert {k: e[k] for k in want} == want
    assert e["context"] + e["chosen"] == e["chosen_full"]
    assert e["context"] + e["rejected"] == e["rejected_full"]
    assert e["subset"] == "harmless-base"


def test_metadata_counts_match_raw_file(prepared, raw_rows):
  builder, _, data_dir = prepared
  expected = collections.Counter()
  for r in raw_rows:
    for flag, value in _expected_fields(r["chosen"], r["rejected"]).items():
      if isinstance(value, bool):
        expected[flag] += int(value)
  # The README promises "a few pairs whose contexts differ, a few empty chosen replies".
  assert expected["contexts_differ"] > 0 and expected["empty_chosen"] > 0
  reloaded = tfds.builder("hh_rlhf/harmless-base", data_dir=os.fspath(data_dir))  # from disk
  for metadata in (builder.info.metadata, reloaded.info.metadata):
    counts = metadata["counts"]["test"]
    assert counts["pairs"] == 1800 and counts["skipped_malformed"] == 0
    for flag in hh_rlhf.QUIRKS:
      assert counts[flag] == expected[flag], flag
    assert metadata["files"]["harmless-base/test.jsonl.gz"] == {
        "size": _digest(SAMPLE)[0], "sha256": _digest(SAMPLE)[1], "verified": True}


def test_official_checksum_rejects_the_sample(sample_manual_dir, tmp_path):
  official = hh_rlhf.read_checksums(hh_rlhf.CHECKSUMS_PATH)["harmless-base/test.jsonl.gz"][1]
  with pytest.raises(hh_rlhf.ChecksumError) as err:
    _prepare(sample_manual_dir, tmp_path, splits=("test",))
  message = str(err.value)
  assert "harmless-base/test.jsonl.gz" in message
  assert official in message and _digest(SAMPLE)[1] in message


def test_tampered_file_fails(tmp_path):
  manual = tmp_path / "manual"
  (manual / "harmless-base").mkdir(parents=True)
  target = manual / "harmless-base" / "test.jsonl.gz"
  shutil.copy(SAMPLE, target)
  pinned = _digest(target)
  data = bytearray(target.read_bytes())
  data[1000] ^= 0xFF
  target.write_bytes(bytes(data))
  with pytest.raises(hh_rlhf.ChecksumError) as err:
    _prepare(manual, tmp_path / "data", splits=("test",), checksums={"harmless-base/test.jsonl.gz": pinned})
  message = str(err.value)
  assert "harmless-base/test.jsonl.gz" in message
  assert pinned[1] in message and hashlib.sha256(bytes(data)).hexdigest() in message


def test_missing_split_file_named(sample_manual_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="harmless-base/train.jsonl.gz"):
    _prepare(sample_manual_dir, tmp_path)  # default splits: train and test


def _write_gz(path, lines: list[bytes]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with gzip.open(path, "wb") as f:
    f.write(b"".join(line + b"\n" for line in lines))


GOOD = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}).encode()


def test_unrecorded_file_warns_and_records_digest(tmp_path, caplog):
  # harmless-base/train has no official checksum: prepared, and its digest recorded.
  path = tmp_path / "manual" / "harmless-base" / "train.jsonl.gz"
  _write_gz(path, [GOOD, GOOD])
  with caplog.at_level("WARNING"):
    builder = _prepare(tmp_path / "manual", tmp_path / "data", splits=("train",))
  assert builder.info.splits["train"].num_examples == 2
  size, sha = _digest(path)
  assert builder.info.metadata["files"]["harmless-base/train.jsonl.gz"] == {"size": size, "sha256": sha,
                                                                         "verified": False}
  assert sha in caplog.text


BAD_LINES = {
    "bad_json": b'{"chosen": "\\n\\nHuman: x\\n\\nAssistant: y", "rejected": ',
    "missing_field": json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: y"}).encode(),
    "non_string": json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: y", "rejected": 7}).encode(),
    "invalid_utf8": b'{"chosen": "\\n\\nHuman: x\xff\\n\\nAssistant: y", "rejected": "z"}',
    "no_assistant_marker": json.dumps({"chosen": "Human: x", "rejected": "Human: x"}).encode(),
    "not_object": b'["\\n\\nHuman: x\\n\\nAssistant: y"]',
    "lone_surrogate": b'{"chosen": "\\n\\nHuman: x\\n\\nAssistant: \\ud800", "rejected": "z"}',
}
BAD_REASONS = {"bad_json": "bad JSON", "missing_field": "missing field 'rejected'",
               "non_string": "field 'rejected' is int", "invalid_utf8": "invalid UTF-8",
               "no_assistant_marker": "share no prefix", "not_object": "expected a JSON object",
               "lone_surrogate": "lone surrogate"}


def _bad_manual_dir(tmp_path, bad: bytes):
  manual = tmp_path / "manual"
  path = manual / "helpful-base" / "test.jsonl.gz"
  _write_gz(path, [GOOD, bad, GOOD])  # the bad line is line 2
  return manual, {"helpful-base/test.jsonl.gz": _digest(path)}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_malformed_line_fails_naming_file_and_line(tmp_path, kind):
  manual, checksums = _bad_manual_dir(tmp_path, BAD_LINES[kind])
  with pytest.raises(hh_rlhf.MalformedInputError) as err:
    _prepare(manual, tmp_path / "data", "helpful-base", splits=("test",), checksums=checksums)
  message = str(err.value)
  assert "helpful-base/test.jsonl.gz" in message and "line 2" in message
  assert BAD_REASONS[kind] in message


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_malformed_line_skipped_and_counted(tmp_path, kind):
  manual, checksums = _bad_manual_dir(tmp_path, BAD_LINES[kind])
  builder = _prepare(manual, tmp_path / "data", "helpful-base", splits=("test",), checksums=checksums,
                     skip_malformed=True)
  counts = builder.info.metadata["counts"]["test"]
  assert builder.info.splits["test"].num_examples == 2
  assert counts["pairs"] == 2 and counts["skipped_malformed"] == 1
  assert counts["malformed"][0][:2] == ["helpful-base/test.jsonl.gz", 2]


@pytest.mark.parametrize("skip", [False, True])
def test_empty_file_fails(tmp_path, skip):
  manual = tmp_path / "manual"
  path = manual / "helpful-base" / "test.jsonl.gz"
  _write_gz(path, [])
  with pytest.raises(hh_rlhf.MalformedInputError, match=r"helpful-base/test.jsonl.gz .* line 1: empty file"):
    _prepare(manual, tmp_path / "data", "helpful-base", splits=("test",),
             checksums={"helpful-base/test.jsonl.gz": _digest(path)}, skip_malformed=skip)


def test_helpful_config_concatenates_subsets(tmp_path):
  manual = tmp_path / "manual"
  checksums = {}
  for i, subset in enumerate(hh_rlhf.HELPFUL_SUBSETS):
    path = manual / subset / "test.jsonl.gz"
    _write_gz(path, [GOOD] * (i + 1))
    checksums[f"{subset}/test.jsonl.gz"] = _digest(path)
  builder = _prepare(manual, tmp_path / "data", "helpful", splits=("test",), checksums=checksums)
  source = builder.as_data_source(split="test")
  subsets = collections.Counter(source[i]["subset"].decode() for i in range(len(source)))
  assert subsets == {"helpful-base": 1, "helpful-online": 2, "helpful-rejection-sampled": 3}


def test_cli_prepare_and_info(tmp_path, sample_manual_dir, capsys):
  size, sha = _digest(SAMPLE)
  tsv = tmp_path / "sample.tsv"
  tsv.write_text(f"harmless-base/test.jsonl.gz\t{size}\t{sha}\n")
  data_dir = tmp_path / "data"
  args = ["prepare", "hh_rlhf/harmless-base", "--data_dir", os.fspath(data_dir), "--manual_dir",
          os.fspath(sample_manual_dir), "--splits", "test", "--checksums", os.fspath(tsv)]
  assert cli.main(args) == 0
  assert cli.main(["info", "hh_rlhf/harmless-base", "--data_dir", os.fspath(data_dir)]) == 0
  out = capsys.readouterr().out
  info = json.loads(out[out.rindex('{\n "name"'):])
  assert info["splits"] == {"test": 1800}
  # Without the override the official digest rejects the sample: a message, exit code 1.
  assert cli.main(args[:-2] + ["--data_dir", os.fspath(tmp_path / "other")]) == 1
  assert "checksum mismatch" in capsys.readouterr().err


def test_online_path_downloads_official_urls(tmp_path, monkeypatch):
  # No network in tests: the download manager is replaced by a local copy of what it
  # would fetch, and we check the URLs asked for and that the checksum still applies.
  requested = {}
  local = tmp_path / "fetched.jsonl.gz"
  _write_gz(local, [GOOD])

  def fake_download(self, url_or_urls):
    requested.update(url_or_urls)
    return {key: local for key in url_or_urls}

  monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
  builder = tfds.builder("hh_rlhf/helpful-online", data_dir=os.fspath(tmp_path / "data"), splits=("test",),
                         checksums={"helpful-online/test.jsonl.gz": _digest(local)})
  builder.download_and_prepare()
  assert requested == {"helpful-online/test.jsonl.gz": hh_rlhf.URL_BASE + "helpful-online/test.jsonl.gz"}
  assert hh_rlhf.URL_BASE == "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/"
  assert builder.info.splits["test"].num_examples == 1


def test_builder_pickles_with_its_options(tmp_path):
  builder = tfds.builder("hh_rlhf/harmless-base", data_dir=os.fspath(tmp_path), splits=("test",),
                         skip_malformed=True, checksums={"harmless-base/test.jsonl.gz": (1, "0" * 64)})
  clone = pickle.loads(pickle.dumps(builder))
  assert clone._splits == ("test",) and clone._skip_malformed
  assert clone._expected_checksums["harmless-base/test.jsonl.gz"] == (1, "0" * 64)
  assert clone.info.file_format.value == "array_record"
