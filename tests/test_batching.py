"""PM/LM sequence encoding and resumable iterators.

Byte-level expectations are built independently with `bytes` arithmetic
(id = byte + 3), not with the tokenizer.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from hh_jax.data import batching
from hh_jax.data.hh_rlhf import split_pair
from hh_jax.data.tokenizers import ByteTokenizer
from hh_jax.special_tokens import EOC_ID, EOS_ID, PAD_ID

from tests.conftest import HH_RLHF_SAMPLE as SAMPLE  # noqa: E402
TOK = ByteTokenizer()


def ids(text: str) -> list[int]:
  return [b + 3 for b in text.encode("utf-8")]


@pytest.fixture(scope="module")
def sample_examples() -> list[dict]:
  with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
    return [split_pair(r["chosen"], r["rejected"], "harmless-base") for r in map(json.loads, f)]


def _toy_examples(n: int) -> list[dict]:
  """n short pairs whose lengths vary, from two subsets."""
  out = []
  for i in range(n):
    context = "\n\nHuman: q" + "?" * (i % 7) + "\n\nAssistant:"
    out.append({"context": context, "chosen": " yes" + "!" * i, "rejected": " no", "num_turns": 1,
                "subset": "harmless-base" if i % 2 else "helpful-base"})
  return out


# ---------------------------------------------------------------------------------------
# encode_pm_sequence
# ---------------------------------------------------------------------------------------

CONTEXT = "\n\nHuman: first question\n\nAssistant: answer one\n\nHuman: second\n\nAssistant:"
LAST_TURN = "\n\nHuman: second\n\nAssistant:"


def test_pm_sequence_untruncated():
  got = batching.encode_pm_sequence(TOK, CONTEXT, " reply", max_len=200)
  assert got.dtype == np.int32
  assert got.tolist() == ids(CONTEXT) + ids(" reply") + [EOC_ID]


def test_pm_sequence_cuts_whole_oldest_turn():
  # Budget for the context = max_len - 1 - len(" reply") = 40 - 1 - 6 = 33 >= len(LAST_TURN) = 27,
  # but < the whole context: the first turn is dropped whole.
  assert len(LAST_TURN) == 27 and len(CONTEXT) > 33
  got = batching.encode_pm_sequence(TOK, CONTEXT, " reply", max_len=40)
  assert got.tolist() == ids(LAST_TURN) + ids(" reply") + [EOC_ID]


def test_pm_sequence_cuts_mid_turn_when_last_turn_too_long():
  # Budget 20 - 1 - 6 = 13 < 27: keep the last 13 bytes of the context.
  got = batching.encode_pm_sequence(TOK, CONTEXT, " reply", max_len=20)
  assert got.tolist() == ids(CONTEXT[-13:]) + ids(" reply") + [EOC_ID]


def test_pm_sequence_long_reply_loses_its_beginning():
  reply = " " + "abcdefghij" * 3  # 31 bytes
  got = batching.encode_pm_sequence(TOK, CONTEXT, reply, max_len=11)
  assert got.tolist() == ids(reply[-10:]) + [EOC_ID]
  with pytest.raises(ValueError, match="max_len"):
    batching.encode_pm_sequence(TOK, CONTEXT, reply, max_len=1)


def test_split_turns_rejoins():
  assert batching.split_turns(CONTEXT) == ["\n\nHuman: first question\n\nAssistant: answer one", LAST_TURN]
  assert "".join(batching.split_turns("preamble" + CONTEXT)) == "preamble" + CONTEXT


def test_truncation_on_every_sample_pair_at_256(sample_examples):
  max_len = 256
  for ex in sample_examples:
    for reply in (ex["chosen"], ex["rejected"]):
      seq = batching.encode_pm_sequence(TOK, ex["context"], reply, max_len)
      full = ids(ex["context"] + reply)
      reply_ids = ids(reply)
      assert len(seq) <= max_len and seq[-1] == EOC_ID and EOC_ID not in seq[:-1].tolist()
      body = seq[:-1].tolist()
      assert full[len(full) - len(body):] == body  # a suffix: only the oldest tokens go
      keep = min(len(reply_ids), max_len - 1)
      assert body[len(body) - keep:] == reply_ids[len(reply_ids) - keep:]  # the reply's end is kept
      if len(full) + 1 > max_len and len(reply_ids) < max_len - 1:
        # Cut at a turn boundary whenever the last turn fits in the budget.
        kept_context = bytes(t - 3 for t in body[:len(body) - len(reply_ids)]).decode("utf-8", "replace")
        last_turn = ex["context"][ex["context"].rfind("\n\nHuman:"):]
        if len(last_turn.encode("utf-8")) <= max_len - 1 - len(reply_ids):
          assert kept_context.startswith("\n\nHuman:")


def test_round_trip_through_pairs_on_sample(sample_examples):
  arrays = batching.encode_pairs(TOK, sample_examples, max_len=100_000)  # nothing truncated
  for i, ex in enumerate(sample_examples[:300]):
    row = arrays.chosen_tokens[i, :arrays.chosen_eoc_index[i]]
    assert TOK.decode(row) == ex["context"] + ex["chosen"]


# ---------------------------------------------------------------------------------------
# Pair truncation: one context suffix for both replies
# ---------------------------------------------------------------------------------------

FIRST_TURN = "\n\nHuman: first question\n\nAssistant: answer one"
SHORT, LONG = " ok", " a much longer reply"


def _pair_rows(max_len: int):
  arrays = batching.encode_pairs(TOK, [{"context": CONTEXT, "chosen": SHORT, "rejected": LONG, "num_turns": 2,
                                        "subset": "harmless-base"}], max_len=max_len)
  c_eoc, r_eoc = int(arrays.chosen_eoc_index[0]), int(arrays.rejected_eoc_index[0])
  return arrays.chosen_tokens[0, :c_eoc + 1].tolist(), arrays.rejected_tokens[0, :r_eoc + 1].tolist(), arrays


def test_pair_shares_the_context_the_longer_reply_leaves():
  assert (len(FIRST_TURN), len(LAST_TURN), len(SHORT), len(LONG)) == (46, 27, 3, 20)
  # max_len 80: the longer reply leaves 80 - 1 - 20 = 59 context tokens: the last turn (27)
  # fits, both turns (73) do not. Both sides keep just the last turn, although the short
  # reply alone would leave room (76) for the whole context.
  chosen, rejected, arrays = _pair_rows(80)
  assert chosen == ids(LAST_TURN) + ids(SHORT) + [EOC_ID]
  assert rejected == ids(LAST_TURN) + ids(LONG) + [EOC_ID]
  assert (arrays.chosen_eoc_index[0], arrays.rejected_eoc_index[0]) == (30, 47)
  assert (arrays.chosen_reply_len[0], arrays.rejected_reply_len[0]) == (3, 20)
  # max_len 40: 40 - 1 - 20 = 19 < 27: both sides keep the context's last 19 tokens.
  chosen, rejected, _ = _pair_rows(40)
  assert chosen == ids(CONTEXT[-19:]) + ids(SHORT) + [EOC_ID]
  assert rejected == ids(CONTEXT[-19:]) + ids(LONG) + [EOC_ID]
  # max_len 15: the long reply keeps its last 14 tokens; no context is left for either side.
  chosen, rejected, arrays = _pair_rows(15)
  assert chosen == ids(SHORT) + [EOC_ID] and rejected == ids(LONG[-14:]) + [EOC_ID]
  assert (arrays.chosen_reply_len[0], arrays.rejected_reply_len[0]) == (3, 20)  # whole replies


def _random_text(rng, alphabet: str, lo: int, hi: int) -> str:
  return "".join(rng.choice(list(alphabet), size=int(rng.integers(lo, hi + 1))))


def _random_context(rng) -> str:
  """0..4 turns of random length, sometimes after a preamble that is not a turn."""
  preamble = _random_text(rng, "abc ", 1, 12) if rng.random() < 0.2 else ""
  turns = "".join("\n\nHuman: " + _random_text(rng, "abc xyz?", 0, 30) + "\n\nAssistant:"
                  + _random_text(rng, " defg", 0, 30) for _ in range(int(rng.integers(0, 5))))
  return preamble + turns


def _expected_context_len(context: str, budget: int) -> int:
  """The rule, restated with string positions: the longest suffix of whole turns within
  `budget` bytes, else (mid-turn) `budget` bytes, never more than the context."""
  if budget <= 0:
    return 0
  starts = [0] + [i for i in range(1, len(context)) if context.startswith("\n\nHuman:", i)]
  whole = [len(context) - s for s in starts if len(context) - s <= budget]
  return max(whole) if whole else min(budget, len(context))


def test_pair_truncation_properties_on_random_pairs():
  rng = np.random.default_rng(2024)
  cases = 0
  for _ in range(40):
    max_len = int(rng.integers(2, 90))
    examples = [{"context": _random_context(rng), "chosen": _random_text(rng, " hij", 0, 60),
                 "rejected": _random_text(rng, " klm", 0, 60), "num_turns": 1, "subset": "helpful-base"}
                for _ in range(int(rng.integers(5, 20)))]
    arrays = batching.encode_pairs(TOK, examples, max_len=max_len)
    assert arrays.seq_len <= max_len
    for i, ex in enumerate(examples):
      cases += 1
      replies = {"chosen": ids(ex["chosen"]), "rejected": ids(ex["rejected"])}
      kept = {side: min(len(r), max_len - 1) for side, r in replies.items()}
      contexts = []
      for side, reply in replies.items():
        row, eoc = getattr(arrays, f"{side}_tokens")[i], int(getattr(arrays, f"{side}_eoc_index")[i])
        assert row[eoc] == EOC_ID and EOC_ID not in row[:eoc].tolist()
        assert (row[eoc + 1:] == PAD_ID).all()  # right-padded
        assert getattr(arrays, f"{side}_reply_len")[i] == len(reply)
        assert row[eoc - kept[side]:eoc].tolist() == reply[len(reply) - kept[side]:]
        if len(reply) <= max_len - 1:
          assert row[eoc - len(reply):eoc].tolist() == reply  # kept whole
        contexts.append(row[:eoc - kept[side]].tolist())
      assert contexts[0] == contexts[1]  # exactly the same context tokens on both sides
      full = ids(ex["context"])
      assert full[len(full) - len(contexts[0]):] == contexts[0]  # a suffix of the context
      budget = max_len - 1 - max(kept.values())
      assert len(contexts[0]) == _expected_context_len(ex["context"], budget)
  assert cases >= 300


def test_sample_pairs_share_context_at_256(sample_examples):
  arrays = batching.encode_pairs(TOK, sample_examples, max_len=256)
  c_context = arrays.chosen_eoc_index - np.minimum(arrays.chosen_reply_len, 255)
  r_context = arrays.rejected_eoc_index - np.minimum(arrays.rejected_reply_len, 255)
  np.testing.assert_array_equal(c_context, r_context)
  for i in range(len(arrays)):
    n = c_context[i]
    np.testing.assert_array_equal(arrays.chosen_tokens[i, :n], arrays.rejected_tokens[i, :n])


# ---------------------------------------------------------------------------------------
# Reply lengths, take_pairs, the shorter-reply baseline
# ---------------------------------------------------------------------------------------


def _length_arrays(chosen_len, rejected_len) -> batching.PairArrays:
  """Pairs with no context whose replies have the given lengths (in bytes)."""
  examples = [{"context": "", "chosen": "c" * c, "rejected": "r" * r, "num_turns": 1, "subset": "helpful-base"}
              for c, r in zip(chosen_len, rejected_len)]
  return batching.encode_pairs(TOK, examples, max_len=64)


def test_shorter_reply_baseline_counts_ties_half():
  # chosen shorter, longer, tie, shorter: (1 + 0 + 0.5 + 1) / 4.
  arrays = _length_arrays([2, 9, 4, 1], [5, 3, 4, 7])
  assert batching.shorter_reply_baseline(arrays) == pytest.approx(2.5 / 4)
  assert np.isnan(batching.shorter_reply_baseline(batching.take_pairs(arrays, np.arange(0))))


def test_shorter_reply_baseline_reads_reply_lengths_not_eoc_positions():
  # max_len 10: both replies (12 and 20 bytes) are cut to 9 tokens, so both EOCs sit at 9
  # (a tie by EOC position), but the chosen reply is the shorter one.
  examples = [{"context": CONTEXT, "chosen": "c" * 12, "rejected": "r" * 20, "num_turns": 2,
               "subset": "harmless-base"}]
  arrays = batching.encode_pairs(TOK, examples, max_len=10)
  assert arrays.chosen_eoc_index[0] == arrays.rejected_eoc_index[0] == 9
  assert batching.shorter_reply_baseline(arrays) == 1.0


def test_take_pairs_keeps_every_field():
  arrays = _length_arrays([2, 9, 4, 1], [5, 3, 4, 7])
  taken = batching.take_pairs(arrays, np.asarray([3, 0]))
  np.testing.assert_array_equal(taken.chosen_reply_len, [1, 2])
  np.testing.assert_array_equal(taken.rejected_reply_len, [7, 5])
  np.testing.assert_array_equal(taken.chosen_tokens, arrays.chosen_tokens[[3, 0]])
  assert taken.source_names == arrays.source_names and taken.chosen_reply_len.dtype == np.int32


def test_reply_len_defaults_to_the_whole_row_before_eoc():
  arrays = _length_arrays([2, 9], [5, 3])
  bare = batching.PairArrays(**{f: getattr(arrays, f) for f in ("chosen_tokens", "rejected_tokens",
                                "chosen_eoc_index", "rejected_eoc_index", "num_turns", "source", "weight",
                                "source_names")})
  np.testing.assert_array_equal(bare.chosen_reply_len, [2, 9])
  np.testing.assert_array_equal(bare.rejected_reply_len, [5, 3])


# ---------------------------------------------------------------------------------------
# encode_pairs
# ---------------------------------------------------------------------------------------


def test_encode_pairs_arrays():
  examples = _toy_examples(5)
  examples[3] = {k: v.encode() if isinstance(v, str) else v for k, v in examples[3].items()}  # tfds gives bytes
  arrays = batching.encode_pairs(TOK, examples, max_len=64)
  chosen_len = [len(e["context"]) + len(e["chosen"]) + 1 for e in _toy_examples(5)]
  np.testing.assert_array_equal(arrays.chosen_eoc_index, np.asarray(chosen_len) - 1)
  assert arrays.seq_len == max(chosen_len)  # chosen are the longer replies here
  for i, length in enumerate(chosen_len):
    assert arrays.chosen_tokens[i, length - 1] == EOC_ID
    assert (arrays.chosen_tokens[i, length:] == PAD_ID).all()
  assert arrays.source_names[:4] == ("helpful-base", "helpful-online", "helpful-rejection-sampled",
                                     "harmless-base")
  np.testing.assert_array_equal(arrays.source, [0, 3, 0, 3, 0])
  np.testing.assert_array_equal(arrays.weight, np.ones(5, np.float32))
  assert arrays.chosen_tokens.dtype == np.int32 and arrays.weight.dtype == np.float32


def test_encode_pairs_source_table():
  examples = _toy_examples(3)
  examples[1]["subset"] = "synth-helpful"
  arrays = batching.encode_pairs(TOK, examples, max_len=64)
  assert arrays.source_names[4:] == ("synth-helpful",) and arrays.source[1] == 4
  with pytest.raises(ValueError, match="synth-helpful"):
    batching.encode_pairs(TOK, examples, max_len=64, source_names=("helpful-base", "harmless-base"))


# ---------------------------------------------------------------------------------------
# PairIterator
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_arrays() -> batching.PairArrays:
  return batching.encode_pairs(TOK, _toy_examples(23), max_len=64)


def _rows(arrays, batch) -> list[int]:
  """Which rows a batch holds, recovered from its chosen EOC indices and tokens."""
  out = []
  for c_tokens, c_eoc in zip(batch.chosen_tokens, batch.chosen_eoc_index):
    matches = [i for i in range(len(arrays)) if arrays.chosen_eoc_index[i] == c_eoc
               and (arrays.chosen_tokens[i, :c_eoc + 1] == c_tokens[:c_eoc + 1]).all()]
    out.append(matches[0])
  return out


def test_epochs_cover_every_row_once(toy_arrays):
  it = batching.PairIterator(toy_arrays, batch_size=5, seed=3, num_epochs=2, drop_remainder=False)
  assert len(it) == 5  # ceil(23 / 5)
  batches = list(it)
  assert len(batches) == 10
  epoch0 = [r for b in batches[:5] for r, w in zip(_rows(toy_arrays, b), b.weight) if w > 0]
  epoch1 = [r for b in batches[5:] for r, w in zip(_rows(toy_arrays, b), b.weight) if w > 0]
  assert sorted(epoch0) == sorted(epoch1) == list(range(23))
  assert epoch0 != epoch1  # reshuffled per epoch
  # The short last batch is filled to 5 rows; the 2 filler rows weigh 0.
  np.testing.assert_array_equal(batches[4].weight, [1, 1, 1, 0, 0])
  assert batches[4].chosen_tokens.shape[0] == 5


def test_drop_remainder_and_stop(toy_arrays):
  it = batching.PairIterator(toy_arrays, batch_size=5, seed=0)
  assert len(it) == 4
  assert len(list(it)) == 4
  with pytest.raises(StopIteration):
    next(it)


def test_order_depends_only_on_seed(toy_arrays):
  first = [b.chosen_tokens for b in batching.PairIterator(toy_arrays, 4, seed=7)]
  again = [b.chosen_tokens for b in batching.PairIterator(toy_arrays, 4, seed=7)]
  other = [b.chosen_tokens for b in batching.PairIterator(toy_arrays, 4, seed=8)]
  assert all((a == b).all() for a, b in zip(first, again))
  assert not all((a == b).all() for a, b in zip(first, other))


@pytest.mark.parametrize("stop_at", [0, 3, 5, 7, 12])
def test_restore_resumes_exactly(toy_arrays, stop_at):
  kwargs = dict(batch_size=4, seed=11, num_epochs=3, buckets=(16, 24, 64))
  uninterrupted = list(batching.PairIterator(toy_arrays, **kwargs))
  assert len(uninterrupted) == 15  # 3 epochs x floor(23 / 4)
  it = batching.PairIterator(toy_arrays, **kwargs)
  head = [next(it) for _ in range(stop_at)]
  saved = json.loads(json.dumps(it.state()))  # a checkpoint holds plain JSON
  del it
  resumed = batching.PairIterator(toy_arrays, state=saved, **kwargs)
  also = batching.PairIterator(toy_arrays, **kwargs)
  also.restore(saved)
  for restarted in (list(resumed), list(also)):
    assert len(head) + len(restarted) == len(uninterrupted)
    for got, want in zip(head + restarted, uninterrupted):
      for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_restore_rejects_other_iterator(toy_arrays):
  state = batching.PairIterator(toy_arrays, 4, seed=1).state()
  with pytest.raises(ValueError, match="seed"):
    batching.PairIterator(toy_arrays, 4, seed=2, state=state)


def test_buckets_pick_smallest_fitting_length(toy_arrays):
  buckets = (16, 24, 40, 64)
  for batch in batching.PairIterator(toy_arrays, 3, seed=0, buckets=buckets, num_epochs=2):
    longest = max(batch.chosen_eoc_index.max(), batch.rejected_eoc_index.max()) + 1
    want = min(b for b in buckets if b >= longest)
    assert batch.chosen_tokens.shape == batch.rejected_tokens.shape == (3, want)
    for tokens, eoc in ((batch.chosen_tokens, batch.chosen_eoc_index),
                        (batch.rejected_tokens, batch.rejected_eoc_index)):
      assert (tokens[np.arange(3), eoc] == EOC_ID).all()
  fixed = next(batching.PairIterator(toy_arrays, 3, seed=0))
  assert fixed.chosen_tokens.shape == (3, toy_arrays.seq_len)
  with pytest.raises(ValueError, match="bucket"):
    batching.PairIterator(toy_arrays, 3, seed=0, buckets=(8,))


def test_batch_dtypes(toy_arrays):
  batch = next(batching.PairIterator(toy_arrays, 3, seed=0))
  assert isinstance(batch, batching.PairBatch)
  for name in ("chosen_tokens", "rejected_tokens", "chosen_eoc_index", "rejected_eoc_index", "source",
               "num_turns"):
    assert getattr(batch, name).dtype == np.int32, name
  assert batch.weight.dtype == np.float32


# ---------------------------------------------------------------------------------------
# LM sequences
# ---------------------------------------------------------------------------------------


def test_lm_sequence():
  np.testing.assert_array_equal(batching.encode_lm_sequence(TOK, "hi", 5), ids("hi") + [EOS_ID, PAD_ID, PAD_ID])
  np.testing.assert_array_equal(batching.encode_lm_sequence(TOK, "hello", 3), ids("hel"))
  np.testing.assert_array_equal(batching.encode_lm_sequence(TOK, "hey", 4), ids("hey") + [EOS_ID])


def test_lm_iterator_resumes():
  tokens = np.stack([batching.encode_lm_sequence(TOK, "doc %d" % i, 8) for i in range(10)])
  whole = list(batching.LMIterator(tokens, 3, seed=5, num_epochs=2))
  assert len(whole) == 6
  it = batching.LMIterator(tokens, 3, seed=5, num_epochs=2)
  head = [next(it) for _ in range(4)]
  rest = list(batching.LMIterator(tokens, 3, seed=5, num_epochs=2, state=json.loads(json.dumps(it.state()))))
  for got, want in zip(head + rest, whole):
    np.testing.assert_array_equal(got.tokens, want.tokens)
  docs = sorted(TOK.decode(row) for b in whole[:3] for row in b.tokens)
  assert len(set(docs)) == 9  # 3 batches of 3 distinct documents in epoch 0
