"""Hugging Face tokenizers (the `tokenizers` library) in hh-jax's id layout, on real transcripts.

A byte-level BPE is trained here with the `tokenizers` trainer on the shared HH-RLHF sample
(no download). Every chosen and rejected transcript of the sample must round-trip exactly,
and the ids must equal transformers' tokenizer ids for the same tokenizer.json (shifted by the
3 special ids), both for the checkpoint's file and for the file hh-jax exports.
"""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from hh_jax.data import tokenizers as T
from hh_jax.special_tokens import EOC_ID, EOS_ID, NUM_SPECIAL, PAD_ID
from tests.conftest import HH_RLHF_SAMPLE

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def transcripts():
  if not os.path.exists(HH_RLHF_SAMPLE):
    pytest.skip(f"{HH_RLHF_SAMPLE} is not there")
  with gzip.open(HH_RLHF_SAMPLE, "rt", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return [r[k] for r in rows for k in ("chosen", "rejected")]


@pytest.fixture(scope="module")
def checkpoint_dir(transcripts, tmp_path_factory):
  """A checkpoint-style directory: tokenizer.json (ids from 0, with an <|endoftext|> token at
  the end of the vocabulary) and a config.json naming it as eos_token_id."""
  tok = T.train_hf_bpe(transcripts[:400], vocab_size=600).tokenizer
  tok.add_special_tokens(["<|endoftext|>"])
  path = tmp_path_factory.mktemp("tok")
  tok.save(str(path / "tokenizer.json"))
  eos = tok.token_to_id("<|endoftext|>")
  (path / "config.json").write_text(json.dumps({"eos_token_id": eos}))
  (path / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}))
  return str(path), eos


def test_every_sample_transcript_round_trips(transcripts, checkpoint_dir):
  tok = T.load_tokenizer(checkpoint_dir[0])
  assert isinstance(tok, T.PretrainedTokenizer)
  for text in transcripts:
    ids = tok.encode(text)
    assert min(ids) >= NUM_SPECIAL and tok.decode(ids) == text


def test_ids_equal_transformers_ids_shifted_by_the_special_ids(transcripts, checkpoint_dir):
  path, _ = checkpoint_dir
  ours = T.load_tokenizer(path)
  theirs = transformers.AutoTokenizer.from_pretrained(path)
  expected = theirs(transcripts, add_special_tokens=False)["input_ids"]      # one batched call
  for text, ids in zip(transcripts, expected):
    np.testing.assert_array_equal(ours.encode_array(text), np.asarray(ids) + NUM_SPECIAL)


def test_checkpoint_eos_is_hh_eos_and_decode_skips_specials(checkpoint_dir):
  path, eos = checkpoint_dir
  tok = T.load_tokenizer(path)
  ids = tok.encode("Hi<|endoftext|>")
  assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1]
  assert tok.decode([PAD_ID] + ids + [EOC_ID, PAD_ID]) == "Hi"
  assert tok.vocab_size == eos + NUM_SPECIAL           # eos was the last id, and it moved to 1


def test_exported_tokenizer_gives_hh_ids_in_transformers_and_back(transcripts, checkpoint_dir, tmp_path):
  ours = T.load_tokenizer(checkpoint_dir[0])
  ours.save_hf(str(tmp_path))
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  again = T.load_tokenizer(str(tmp_path))
  assert again.hh_layout and again.vocab_size == ours.vocab_size
  assert theirs.convert_tokens_to_ids(["<|hh_pad|>", "<|endoftext|>", "<|hh_eoc|>"]) == [0, 1, 2]
  texts = transcripts[:300] + ["a<|endoftext|>"]
  for text, expected in zip(texts, theirs(texts, add_special_tokens=False)["input_ids"]):
    ids = ours.encode(text)
    assert expected == ids and again.encode(text) == ids and again.decode(ids) == ours.decode(ids)


def test_trained_bpe_without_eos_adds_all_three_specials(transcripts, tmp_path):
  tok = T.train_hf_bpe(transcripts[:200], vocab_size=400)
  path = str(tmp_path / "tokenizer.json")
  T.save_tokenizer(tok, path)
  back = T.load_tokenizer(path)
  assert back.hh_layout
  assert [back.tokenizer.id_to_token(i) for i in range(3)] == ["<|hh_pad|>", "<|hh_eos|>", "<|hh_eoc|>"]
  for text in transcripts[:200]:
    assert back.encode(text) == tok.encode(text) and back.decode(tok.encode(text)) == text
