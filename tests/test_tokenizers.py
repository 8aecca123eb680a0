"""Tokenizers: ids derived by hand, exact round trips on the real sample, save/load."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from hh_jax.data import tokenizers as tk
from hh_jax.special_tokens import EOC_ID, EOS_ID, NUM_SPECIAL, PAD_ID

from tests.conftest import HH_RLHF_SAMPLE as SAMPLE  # noqa: E402


@pytest.fixture(scope="module")
def sample_texts() -> list[str]:
  with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return [r["chosen"] for r in rows] + [r["rejected"] for r in rows]


@pytest.fixture(scope="module")
def bpe(sample_texts) -> tk.BpeTokenizer:
  return tk.train_bpe(sample_texts[:400], num_merges=200)


def test_special_ids_fixed():
  assert (PAD_ID, EOS_ID, EOC_ID, NUM_SPECIAL) == (0, 1, 2, 3)
  tok = tk.ByteTokenizer()
  assert (tok.pad_id, tok.eos_id, tok.eoc_id) == (PAD_ID, EOS_ID, EOC_ID)


def test_byte_ids_by_hand():
  tok = tk.ByteTokenizer()
  # "a" = 0x61 = 97, "é" = UTF-8 C3 A9 = 195 169; each id is byte + 3.
  assert tok.encode("aé") == [100, 198, 172]
  assert tok.decode([100, 198, 172]) == "aé"
  # 3 specials + 256 bytes = 259 ids used, rounded up to a multiple of 8.
  assert tok.vocab_size == 264
  assert isinstance(tok, tk.Tokenizer)


def test_byte_decode_skips_specials_and_rejects_unknown_ids():
  tok = tk.ByteTokenizer()
  assert tok.decode([EOS_ID, 100, EOC_ID, 101, PAD_ID, PAD_ID]) == "ab"
  with pytest.raises(ValueError, match="259"):
    tok.decode([100, 259])
  # Invalid UTF-8 (a lone continuation byte 0x80), as a sampling policy may emit, is replaced.
  assert tok.decode([0x80 + 3]) == "\ufffd"


def test_byte_round_trip_exact_on_sample(sample_texts):
  tok = tk.ByteTokenizer()
  for text in sample_texts:
    assert tok.decode(tok.encode(text)) == text
  assert tok.decode(tok.encode("")) == ""


def test_bpe_merges_by_hand():
  # Pieces of "ab ab ab": "ab" once, " ab" twice. Pair counts: (a,b)=3, (' ',a)=2, so
  # merge 0 is (a,b) -> 259; then (' ', 259) has count 2 -> 260. Nothing is left to merge.
  a, b, space = ord("a") + 3, ord("b") + 3, ord(" ") + 3
  tok = tk.train_bpe(["ab ab ab"], num_merges=10)
  assert tok.merges == [(a, b), (space, 259)]
  assert tok.encode("ab ab") == [259, 260]
  assert tok.encode("ba") == [b, a]
  assert tok.num_used_ids == 261 and tok.vocab_size == 264
  assert tok.decode([259, 260, EOC_ID]) == "ab ab"


def test_bpe_round_trip_exact_on_sample(bpe, sample_texts):
  for text in sample_texts:
    assert bpe.decode(bpe.encode(text)) == text
  odd = "tabs\tand  spaces  \n\n_under_score ² 12345 emoji 🙂 combining e\u0301 \r\n"
  assert bpe.decode(bpe.encode(odd)) == odd
  # Training compresses: fewer tokens than bytes on the held-out part of the sample.
  held_out = "".join(sample_texts[1000:1100])
  assert len(bpe.encode(held_out)) < 0.7 * len(held_out.encode("utf-8"))


def test_bpe_training_deterministic(sample_texts):
  first = tk.train_bpe(sample_texts[:50], num_merges=50)
  second = tk.train_bpe(list(reversed(sample_texts[:50])), num_merges=50)
  assert first.merges == second.merges


def test_save_load(tmp_path, bpe, sample_texts):
  path = tmp_path / "sub" / "tok.json"
  tk.save_tokenizer(bpe, path)
  loaded = tk.load_tokenizer(path)
  assert isinstance(loaded, tk.BpeTokenizer) and loaded.merges == bpe.merges
  assert loaded.encode(sample_texts[7]) == bpe.encode(sample_texts[7])
  byte_path = tmp_path / "byte.json"
  tk.ByteTokenizer().save(byte_path)
  assert isinstance(tk.load_tokenizer(byte_path), tk.ByteTokenizer)
  assert isinstance(tk.load_tokenizer("byte"), tk.ByteTokenizer)


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.json"):
    tk.load_tokenizer(os.fspath(tmp_path / "nope.json"))
  bad = tmp_path / "bad.json"
  bad.write_text('{"type": "wordpiece"}')
  with pytest.raises(ValueError, match="wordpiece"):
    tk.load_tokenizer(bad)
  with pytest.raises(ValueError, match="merge"):
    tk.BpeTokenizer([(5, 400)])  # refers to an id not yet defined


def test_encode_array_matches_encode(bpe):
  text = "\n\nHuman: hello there\n\nAssistant: Hi!"
  for tok in (tk.ByteTokenizer(), bpe):
    np.testing.assert_array_equal(tok.encode_array(text), np.asarray(tok.encode(text), np.int32))
