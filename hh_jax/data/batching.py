"""Token arrays and resumable batch iterators for preference models and LM pretraining.

Shared by `hh_rlhf` and `hh_synth`: both give examples with `context`, `chosen`,
`rejected`, `num_turns` and `subset` (str, or bytes as `tfds.data_source` returns them).

A PM sequence is `context + reply + [EOC]`; the PM score is read at the EOC index.
The two sequences of a comparison share ONE context suffix, cut from the left once for
the pair: it keeps the newest whole turns (a turn starts at "\\n\\nHuman:") that fit
beside the LONGER reply and EOC, and cuts mid-turn only when not even the last turn
fits. A reply of at most `max_len - 1` tokens is always kept whole; a longer one keeps
its last `max_len - 1` tokens (loses its beginning), and then neither side has context.
Every row is thus a suffix of `context + reply + [EOC]`: only the oldest tokens go.

Iterators are pure functions of (seed, epoch, position): epoch e visits the examples
in the order `permutation(default_rng([seed, e]))`, so `state()` = {epoch, position}
is all a checkpoint needs to resume exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from hh_jax.data.tokenizers import Tokenizer
from hh_jax.special_tokens import EOC_ID, EOS_ID, PAD_ID

HUMAN = "\n\nHuman:"
# Stable source ids for the real data; other names (e.g. hh_synth's) follow, sorted.
DEFAULT_SOURCE_NAMES = ("helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base")


def _as_str(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
  encode_array = getattr(tokenizer, "encode_array", None)  # fast path of our tokenizers
  ids = encode_array(text) if encode_array else tokenizer.encode(text)
  return np.asarray(ids, dtype=np.int32)


def split_turns(context: str) -> list[str]:
  """Splits a context before every "\\n\\nHuman:"; "".join(split_turns(c)) == c."""
  starts, i = [], context.find(HUMAN)
  while i >= 0:
    starts.append(i)
    i = context.find(HUMAN, i + 1)
  bounds = sorted(set([0] + starts + [len(context)]))
  return [context[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def kept_reply(reply_ids: np.ndarray, max_len: int) -> np.ndarray:
  """The reply tokens a row keeps: all of them when they fit beside EOC (at most
  `max_len - 1`), else the last `max_len - 1` (the reply's beginning is cut)."""
  return reply_ids[max(0, len(reply_ids) - (max_len - 1)):]


def context_suffix(turn_ids: Sequence[np.ndarray], budget: int) -> np.ndarray:
  """The longest suffix of whole turns with at most `budget` tokens; if not even the
  last turn fits, that turn's last `budget` tokens. int32 (K,), K <= max(budget, 0)."""
  kept, used = [], 0
  for ids in reversed(turn_ids):  # newest turn first
    if used + len(ids) > budget:
      break
    kept.append(ids)
    used += len(ids)
  if not kept and turn_ids and budget > 0:  # not even the last turn fits: cut it mid-turn
    kept = [turn_ids[-1][len(turn_ids[-1]) - budget:]]
  return np.concatenate(kept[::-1]).astype(np.int32) if kept else np.zeros((0,), np.int32)


def shared_context_rows(turn_ids: Sequence[np.ndarray], reply_ids: Sequence[np.ndarray],
                        max_len: int) -> list[np.ndarray]:
  """One row `context + kept_reply(reply) + [EOC]` per reply, all with the SAME context:
  `context_suffix(turn_ids, max_len - 1 - longest kept reply)`. Rows are int32, at most
  `max_len` long, with EOC last."""
  if max_len < 2:
    raise ValueError(f"max_len must be >= 2 (one reply token and EOC), got {max_len}")
  replies = [kept_reply(np.asarray(r, np.int32), max_len) for r in reply_ids]
  context = context_suffix(turn_ids, max_len - 1 - max(len(r) for r in replies))
  return [np.concatenate([context, r, [EOC_ID]]).astype(np.int32) for r in replies]


def _turn_ids(tokenizer: Tokenizer, context: str) -> list[np.ndarray]:
  """The context encoded turn by turn (identical to whole-text encoding for bytes), so
  that it can be cut at a turn boundary."""
  return [_encode(tokenizer, turn) for turn in split_turns(context)]


def encode_pm_sequence(tokenizer: Tokenizer, context: str, reply: str, max_len: int) -> np.ndarray:
  """ids(context) + ids(reply) + [EOC], at most `max_len` tokens, truncated on the left
  by the rule of `shared_context_rows` with a single reply. int32 (L,), EOC at L - 1."""
  return shared_context_rows(_turn_ids(tokenizer, context), [_encode(tokenizer, reply)], max_len)[0]


def encode_pm_pair(tokenizer: Tokenizer, context: str, chosen: str, rejected: str,
                   max_len: int) -> tuple[np.ndarray, np.ndarray, int, int]:
  """(chosen row, rejected row, chosen reply tokens, rejected reply tokens) of one
  comparison: both rows hold the same context suffix (`shared_context_rows`); the reply
  lengths count the whole replies, before any cut."""
  chosen_ids, rejected_ids = _encode(tokenizer, chosen), _encode(tokenizer, rejected)
  chosen_row, rejected_row = shared_context_rows(_turn_ids(tokenizer, context),
                                                 [chosen_ids, rejected_ids], max_len)
  return chosen_row, rejected_row, len(chosen_ids), len(rejected_ids)


def encode_lm_sequence(tokenizer: Tokenizer, text: str, max_len: int) -> np.ndarray:
  """ids(text) + [EOS], right-padded with PAD to (max_len,) int32.

  A text longer than `max_len - 1` tokens keeps its first `max_len` tokens and no EOS
  (the document did not end there).
  """
  ids = np.concatenate([_encode(tokenizer, text), [EOS_ID]])[:max_len]
  out = np.full((max_len,), PAD_ID, np.int32)
  out[:len(ids)] = ids
  return out


def _pad_rows(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
  out = np.full((len(rows), length), PAD_ID, np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out


@dataclasses.dataclass(frozen=True)
class PairArrays:
  """A whole split of comparisons as numpy arrays (N pairs, T = longest sequence).

  chosen_tokens, rejected_tokens: (N, T) int32, right-padded with PAD_ID
  chosen_eoc_index, rejected_eoc_index: (N,) int32, index of EOC in each row
  num_turns, source: (N,) int32; source indexes `source_names`
  weight: (N,) float32, default 1
  chosen_reply_len, rejected_reply_len: (N,) int32, tokens in the whole reply (before
    any cut; a row keeps the last min(len, max_len - 1) of them). None (the default)
    means the rows hold no context, so the reply is everything before EOC.
  """

  chosen_tokens: np.ndarray
  rejected_tokens: np.ndarray
  chosen_eoc_index: np.ndarray
  rejected_eoc_index: np.ndarray
  num_turns: np.ndarray
  source: np.ndarray
  weight: np.ndarray
  source_names: tuple[str, ...]
  chosen_reply_len: np.ndarray | None = None
  rejected_reply_len: np.ndarray | None = None

  def __post_init__(self):
    for side in ("chosen", "rejected"):
      lengths = getattr(self, f"{side}_reply_len")
      if lengths is None:
        lengths = getattr(self, f"{side}_eoc_index")
      object.__setattr__(self, f"{side}_reply_len", np.asarray(lengths, np.int32))

  def __len__(self) -> int:
    return len(self.weight)

  @property
  def seq_len(self) -> int:
    return self.chosen_tokens.shape[1]


def take_pairs(arrays: PairArrays, rows: np.ndarray) -> PairArrays:
  """The pairs at `rows` (in that order): every per-pair array indexed by `rows`,
  `source_names` unchanged."""
  return dataclasses.replace(arrays, **{f.name: getattr(arrays, f.name)[rows]
                                        for f in dataclasses.fields(arrays) if f.name != "source_names"})


def shorter_reply_baseline(arrays: PairArrays) -> float:
  """Accuracy of predicting that the pair's shorter reply (in tokens, whole replies) is the
  chosen one; equal lengths count half. NaN for no pairs."""
  if not len(arrays):
    return float("nan")
  margin = arrays.rejected_reply_len.astype(np.int64) - arrays.chosen_reply_len.astype(np.int64)
  return float(np.mean((margin > 0) + 0.5 * (margin == 0)))


class PairBatch(NamedTuple):
  """One PM batch: tokens (B, T) int32; the rest (B,) int32 except weight float32."""

  chosen_tokens: np.ndarray
  rejected_tokens: np.ndarray
  chosen_eoc_index: np.ndarray
  rejected_eoc_index: np.ndarray
  source: np.ndarray
  num_turns: np.ndarray
  weight: np.ndarray


def encode_pairs(tokenizer: Tokenizer, examples: Iterable[Mapping[str, Any]], max_len: int,
                 source_names: Sequence[str] | None = None,
                 weight: np.ndarray | None = None) -> PairArrays:
  """Encodes every comparison with `encode_pm_pair`; see `PairArrays`.

  `source_names` fixes the subset -> id table (pass the same one for train and test);
  by default it is DEFAULT_SOURCE_NAMES followed by any other names seen, sorted.
  """
  chosen, rejected, chosen_len, rejected_len, num_turns, subsets = [], [], [], [], [], []
  for ex in examples:
    c_row, r_row, c_len, r_len = encode_pm_pair(tokenizer, _as_str(ex["context"]), _as_str(ex["chosen"]),
                                                _as_str(ex["rejected"]), max_len)
    chosen.append(c_row)
    rejected.append(r_row)
    chosen_len.append(c_len)
    rejected_len.append(r_len)
    num_turns.append(int(ex["num_turns"]))
    subsets.append(_as_str(ex["subset"]))
  if source_names is None:
    source_names = DEFAULT_SOURCE_NAMES + tuple(sorted(set(subsets) - set(DEFAULT_SOURCE_NAMES)))
  name_to_id = {name: i for i, name in enumerate(source_names)}
  unknown = sorted(set(subsets) - set(name_to_id))
  if unknown:
    raise ValueError(f"subsets {unknown} are not in source_names {tuple(source_names)}")
  n = len(chosen)
  if weight is None:
    weight = np.ones((n,), np.float32)
  weight = np.asarray(weight, np.float32)
  if weight.shape != (n,):
    raise ValueError(f"weight has shape {weight.shape}, expected ({n},)")
  length = max([len(r) for r in chosen + rejected], default=1)
  return PairArrays(
      chosen_tokens=_pad_rows(chosen, length),
      rejected_tokens=_pad_rows(rejected, length),
      chosen_eoc_index=np.asarray([len(r) - 1 for r in chosen], np.int32).reshape(n),
      rejected_eoc_index=np.asarray([len(r) - 1 for r in rejected], np.int32).reshape(n),
      num_turns=np.asarray(num_turns, np.int32).reshape(n),
      source=np.asarray([name_to_id[s] for s in subsets], np.int32).reshape(n),
      weight=weight,
      source_names=tuple(source_names),
      chosen_reply_len=np.asarray(chosen_len, np.int32).reshape(n),
      rejected_reply_len=np.asarray(rejected_len, np.int32).reshape(n),
  )


class _EpochOrder:
  """Which rows batch (epoch, position) holds: a function of (seed, epoch) only.

  Epoch e permutes the N rows with `np.random.default_rng([seed, e])`; batch p takes
  rows perm[p*B:(p+1)*B]. A short last batch (drop_remainder=False) is filled up to B
  with the epoch's first rows at weight 0, so every batch has the same shape.
  """

  def __init__(self, num_examples: int, batch_size: int, seed: int, drop_remainder: bool,
               num_epochs: int | None, state: Mapping[str, Any] | None):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_examples < (batch_size if drop_remainder else 1):
      raise ValueError(f"{num_examples} examples cannot fill one batch of {batch_size} "
                       f"(drop_remainder={drop_remainder})")
    self.num_examples, self.batch_size, self.seed = num_examples, batch_size, int(seed)
    self.drop_remainder, self.num_epochs = drop_remainder, num_epochs
    self.epoch, self.position = 0, 0
    self._perm_epoch, self._perm = None, None
    if state is not None:
      self.restore(state)

  def __len__(self) -> int:
    full, rest = divmod(self.num_examples, self.batch_size)
    return full + int(rest > 0 and not self.drop_remainder)

  def state(self) -> dict:
    return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
            "num_examples": self.num_examples, "batch_size": self.batch_size}

  def restore(self, state: Mapping[str, Any]) -> None:
    for key in ("seed", "num_examples", "batch_size"):
      if key in state and int(state[key]) != getattr(self, key):
        raise ValueError(f"iterator state has {key}={state[key]}, this iterator has {getattr(self, key)}")
    epoch, position = int(state["epoch"]), int(state["position"])
    if not 0 <= position <= len(self):
      raise ValueError(f"iterator state position {position} is outside 0..{len(self)}")
    self.epoch, self.position = epoch, position

  def next_rows(self) -> tuple[np.ndarray, np.ndarray]:
    """(row indices (B,), weight multiplier (B,)) of the next batch; StopIteration at the end."""
    if self.position >= len(self):
      self.epoch, self.position = self.epoch + 1, 0
    if self.num_epochs is not None and self.epoch >= self.num_epochs:
      raise StopIteration
    if self._perm_epoch != self.epoch:
      self._perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_examples)
      self._perm_epoch = self.epoch
    rows = self._perm[self.position * self.batch_size:(self.position + 1) * self.batch_size]
    live = np.ones((self.batch_size,), np.float32)
    if len(rows) < self.batch_size:
      live[len(rows):] = 0.0
      rows = np.concatenate([rows, self._perm[:self.batch_size - len(rows)]])
    self.position += 1
    return rows, live


class _Resumable:
  """Length, state and restore of an iterator whose batch rows come from `self._order`."""

  _order: _EpochOrder

  def __len__(self) -> int:
    """Batches per epoch."""
    return len(self._order)

  def state(self) -> dict:
    """JSON-serialisable position: {epoch, position, seed, num_examples, batch_size}."""
    return self._order.state()

  def restore(self, state: Mapping[str, Any]) -> None:
    self._order.restore(state)

  def __iter__(self):
    return self

  def run_batch_rows(self) -> list[np.ndarray]:
    """The row indices (B,) of every batch of the whole run, from its start (a fresh order
    of the same seed, so a resumed iterator gives the same list); needs num_epochs."""
    o = self._order
    if o.num_epochs is None:
      raise ValueError("run_batch_rows needs a finite num_epochs")
    fresh = _EpochOrder(o.num_examples, o.batch_size, o.seed, o.drop_remainder, o.num_epochs, None)
    rows = []
    while True:
      try:
        rows.append(fresh.next_rows()[0])
      except StopIteration:
        return rows


class PairIterator(_Resumable):
  """Shuffled, resumable `PairBatch`es over `PairArrays`.

  Args:
    arrays: from `encode_pairs`.
    batch_size: B.
    seed: epoch e's order is `default_rng([seed, e]).permutation(N)`.
    buckets: None pads every batch to `arrays.seq_len`; otherwise a few lengths, and a
      batch is cut to the smallest one >= its longest sequence (max EOC index + 1).
    drop_remainder: drop a short last batch, or fill it (see `_EpochOrder`).
    num_epochs: stop after this many epochs; None repeats forever.
    state: a `state()` to resume from.
  """

  def __init__(self, arrays: PairArrays, batch_size: int, seed: int, buckets: Sequence[int] | None = None,
               drop_remainder: bool = True, num_epochs: int | None = 1,
               state: Mapping[str, Any] | None = None):
    self.arrays = arrays
    self.buckets = tuple(sorted(int(b) for b in buckets)) if buckets else None
    if self.buckets and self.buckets[-1] < arrays.seq_len:
      raise ValueError(f"the largest bucket {self.buckets[-1]} is shorter than the longest "
                       f"sequence ({arrays.seq_len} tokens)")
    self._order = _EpochOrder(len(arrays), batch_size, seed, drop_remainder, num_epochs, state)

  def _length(self, longest: int) -> int:
    if self.buckets is None:
      return self.arrays.seq_len
    return next(b for b in self.buckets if b >= longest)

  def __next__(self) -> PairBatch:
    rows, live = self._order.next_rows()
    a = self.arrays
    longest = int(max(a.chosen_eoc_index[rows].max(), a.rejected_eoc_index[rows].max())) + 1
    length = self._length(longest)
    pad = max(0, length - a.seq_len)  # a bucket longer than the arrays: pad on the right

    def tokens(matrix: np.ndarray) -> np.ndarray:
      batch = matrix[rows, :min(length, a.seq_len)]  # (B, T)
      return np.pad(batch, ((0, 0), (0, pad)), constant_values=PAD_ID) if pad else batch

    return PairBatch(
        chosen_tokens=tokens(a.chosen_tokens),
        rejected_tokens=tokens(a.rejected_tokens),
        chosen_eoc_index=a.chosen_eoc_index[rows],
        rejected_eoc_index=a.rejected_eoc_index[rows],
        source=a.source[rows],
        num_turns=a.num_turns[rows],
        weight=a.weight[rows] * live,
    )


class LMBatch(NamedTuple):
  """One LM batch: tokens (B, T) int32 (PAD-padded), weight (B,) float32."""

  tokens: np.ndarray
  weight: np.ndarray


class LMIterator(_Resumable):
  """Shuffled, resumable `LMBatch`es over a (N, T) matrix of `encode_lm_sequence` rows.

  Same order and state semantics as `PairIterator` (no buckets).
  """

  def __init__(self, tokens: np.ndarray, batch_size: int, seed: int, drop_remainder: bool = True,
               num_epochs: int | None = 1, state: Mapping[str, Any] | None = None):
    self.tokens = np.asarray(tokens, np.int32)
    if self.tokens.ndim != 2:
      raise ValueError(f"tokens must be (N, T), got shape {self.tokens.shape}")
    self._order = _EpochOrder(len(self.tokens), batch_size, seed, drop_remainder, num_epochs, state)

  def __next__(self) -> LMBatch:
    rows, live = self._order.next_rows()
    return LMBatch(tokens=self.tokens[rows], weight=live)
