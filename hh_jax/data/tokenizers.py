"""Tokenizers: bytes, a locally trained BPE, and Hugging Face `tokenizer.json` files.

Every tokenizer in hh-jax follows the `Tokenizer` protocol and reserves the same three
special ids, so models, batching and rollouts never depend on which one is used:

    PAD_ID = 0   padding (never attended to, never scored)
    EOS_ID = 1   end of a reply / document (the policy stops here)
    EOC_ID = 2   end-of-context token appended after a reply; the PM score is read here

`PretrainedTokenizer` wraps a pretrained vocabulary (the `tokenizers` library) in that
layout: id = checkpoint id + 3, as `hh_jax.models.from_pretrained(special_tokens=True)` lays
out the model's rows (see hh_jax/models/hf.py for how the three new rows are initialised).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import tokenizers as hf_tokenizers

# Also re-exported from here for the modules not yet importing hh_jax.special_tokens.
from hh_jax.special_tokens import EOC_ID, EOS_ID, NUM_SPECIAL, PAD_ID  # noqa: F401


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> token ids. `decode(encode(s)) == s` for every text the tokenizer accepts."""

  pad_id: int
  eos_id: int
  eoc_id: int

  @property
  def vocab_size(self) -> int: ...

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Sequence[int]) -> str: ...


# ----------------------------------------------------------------------------------------
# Implementations.
#
# Id layout shared by both tokenizers:
#   0..2                  PAD, EOS, EOC
#   3..258                the 256 byte values, id = byte + NUM_SPECIAL
#   259..259+M-1          BPE merges in training order (BpeTokenizer only)
#   ..vocab_size-1        unused ids that round the table up to a multiple of 8, so
#                         embedding and logit matrices tile well on TPU/GPU
# ----------------------------------------------------------------------------------------

NUM_BYTES = 256
BYTE_OFFSET = NUM_SPECIAL
VOCAB_MULTIPLE = 8
SPECIAL_IDS = frozenset((PAD_ID, EOS_ID, EOC_ID))


def round_up_vocab(num_ids: int, multiple: int = VOCAB_MULTIPLE) -> int:
  """vocab_size = ceil(num_ids / multiple) * multiple."""
  return -(-num_ids // multiple) * multiple


def _bytes_from_ids(ids: Sequence[int], id_to_bytes: Sequence[bytes], num_ids: int) -> bytes:
  """Concatenates the bytes of every non-special id; unknown ids are an error."""
  pieces = []
  for i in ids:
    i = int(i)
    if i in SPECIAL_IDS:
      continue  # decoding a padded or EOC-terminated row gives back its text
    if not 0 <= i < num_ids:
      raise ValueError(f"token id {i} is outside the tokenizer's {num_ids} used ids")
    pieces.append(id_to_bytes[i])
  return b"".join(pieces)


class ByteTokenizer:
  """UTF-8 bytes as tokens: id = byte + NUM_SPECIAL (3), so 259 ids are used.

  `vocab_size` is 264 = 259 rounded up to a multiple of 8 (ids 259..263 are never
  emitted). `decode` skips PAD/EOS/EOC and replaces invalid UTF-8 (which a sampling
  policy can emit) with U+FFFD; for any `str` s, `decode(encode(s)) == s` exactly.
  """

  pad_id = PAD_ID
  eos_id = EOS_ID
  eoc_id = EOC_ID
  num_used_ids = NUM_SPECIAL + NUM_BYTES

  @property
  def vocab_size(self) -> int:
    return round_up_vocab(self.num_used_ids)

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def encode_array(self, text: str) -> np.ndarray:
    """The same ids as `encode`, as an int32 array (fast path for batching)."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return raw.astype(np.int32) + BYTE_OFFSET

  def decode(self, ids: Sequence[int]) -> str:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    ids = ids[(ids != PAD_ID) & (ids != EOS_ID) & (ids != EOC_ID)]
    if ids.size and (ids.min() < BYTE_OFFSET or ids.max() >= self.num_used_ids):
      bad = ids[(ids < BYTE_OFFSET) | (ids >= self.num_used_ids)][0]
      raise ValueError(f"token id {bad} is outside the tokenizer's {self.num_used_ids} used ids")
    return (ids - BYTE_OFFSET).astype(np.uint8).tobytes().decode("utf-8", errors="replace")

  def to_json(self) -> dict:
    return {"type": "byte"}

  def save(self, path: str | os.PathLike) -> None:
    _write_json(path, self.to_json())


# Pre-tokenisation (GPT-2 style, without its English contractions): merges never cross
# these pieces, so a word's tokens do not depend on its neighbours. The alternatives
# cover every character (letters, digits, other non-space, whitespace), so joining the
# pieces gives the text back exactly.
_PIECE_RE = re.compile(r" ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


def _pieces(text: str) -> list[bytes]:
  return [m.group().encode("utf-8") for m in _PIECE_RE.finditer(text)]


def _merge_pair(ids: list[int], pair: tuple[int, int], merged: int) -> list[int]:
  """Replace each non-overlapping occurrence of `pair`, left to right, by `merged`."""
  out, i = [], 0
  while i < len(ids):
    if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
      out.append(merged)
      i += 2
    else:
      out.append(ids[i])
      i += 1
  return out


class BpeTokenizer:
  """Byte-level BPE (Sennrich et al. 2016 over UTF-8 bytes), trained locally by `train_bpe`.

  A piece of text (see `_PIECE_RE`) starts as its bytes (ids byte + 3); merges are
  applied in training order, lowest rank first: repeatedly replace the adjacent pair
  (a, b) with the smallest rank r(a, b) by the merged id 259 + r. Every id maps to a
  byte string and decoding concatenates them, so `decode(encode(s)) == s` exactly.
  """

  pad_id = PAD_ID
  eos_id = EOS_ID
  eoc_id = EOC_ID

  def __init__(self, merges: Sequence[tuple[int, int]]):
    self.merges = [(int(a), int(b)) for a, b in merges]
    self._rank = {pair: r for r, pair in enumerate(self.merges)}
    self._id_to_bytes = [b""] * NUM_SPECIAL + [bytes([b]) for b in range(NUM_BYTES)]
    for a, b in self.merges:
      if not (BYTE_OFFSET <= a < len(self._id_to_bytes) and BYTE_OFFSET <= b < len(self._id_to_bytes)):
        raise ValueError(f"merge ({a}, {b}) refers to an id not defined before it")
      self._id_to_bytes.append(self._id_to_bytes[a] + self._id_to_bytes[b])
    self._cache: dict[bytes, list[int]] = {}

  @property
  def num_used_ids(self) -> int:
    return len(self._id_to_bytes)

  @property
  def vocab_size(self) -> int:
    return round_up_vocab(self.num_used_ids)

  def _encode_piece(self, piece: bytes) -> list[int]:
    cached = self._cache.get(piece)
    if cached is not None:
      return cached
    ids = [b + BYTE_OFFSET for b in piece]
    while len(ids) > 1:
      ranks = [self._rank.get(pair, len(self.merges)) for pair in zip(ids[:-1], ids[1:])]
      best = min(ranks)
      if best == len(self.merges):
        break
      ids = _merge_pair(ids, self.merges[best], NUM_SPECIAL + NUM_BYTES + best)
    if len(self._cache) < 200_000:
      self._cache[piece] = ids
    return ids

  def encode(self, text: str) -> list[int]:
    return [i for piece in _pieces(text) for i in self._encode_piece(piece)]

  def encode_array(self, text: str) -> np.ndarray:
    return np.asarray(self.encode(text), dtype=np.int32)

  def decode(self, ids: Sequence[int]) -> str:
    return _bytes_from_ids(ids, self._id_to_bytes, self.num_used_ids).decode("utf-8", errors="replace")

  def to_json(self) -> dict:
    return {"type": "bpe", "merges": [list(m) for m in self.merges]}

  def save(self, path: str | os.PathLike) -> None:
    _write_json(path, self.to_json())


def train_bpe(texts: Iterable[str], num_merges: int) -> BpeTokenizer:
  """Learns `num_merges` byte-pair merges from `texts`.

  Each step merges the adjacent pair with the largest count
      count(a, b) = sum over pieces w of freq(w) * #occurrences of (a, b) in w,
  ties broken by the smallest (a, b), so training is deterministic. Counts are updated
  incrementally, touching only the pieces that contain the merged pair.
  """
  piece_freq = Counter(p for text in texts for p in _pieces(text))
  words = [[b + BYTE_OFFSET for b in piece] for piece in piece_freq]
  freqs = list(piece_freq.values())
  pair_count: Counter = Counter()
  pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
  for w, (ids, f) in enumerate(zip(words, freqs)):
    for pair in zip(ids[:-1], ids[1:]):
      pair_count[pair] += f
      pair_words[pair].add(w)

  merges: list[tuple[int, int]] = []
  for r in range(num_merges):
    if not pair_count:
      break
    best_count = max(pair_count.values())
    if best_count < 2:
      break  # a pair seen once does not generalise; stop early
    best = min(p for p, c in pair_count.items() if c == best_count)
    merged = NUM_SPECIAL + NUM_BYTES + r
    merges.append(best)
    for w in list(pair_words[best]):
      ids, f = words[w], freqs[w]
      for pair in zip(ids[:-1], ids[1:]):  # remove this word's old pair counts
        pair_count[pair] -= f
        if pair_count[pair] <= 0:
          del pair_count[pair]
        pair_words[pair].discard(w)
      out = _merge_pair(ids, best, merged)
      words[w] = out
      for pair in zip(out[:-1], out[1:]):  # add its new pair counts
        pair_count[pair] += f
        pair_words[pair].add(w)
    pair_words.pop(best, None)
  return BpeTokenizer(merges)


# Names of hh-jax's special tokens in an exported tokenizer.json (EOS keeps the checkpoint's
# own end-of-text token when it has one).
HF_SPECIAL_NAMES = {PAD_ID: "<|hh_pad|>", EOS_ID: "<|hh_eos|>", EOC_ID: "<|hh_eoc|>"}


class PretrainedTokenizer:
  """A Hugging Face tokenizer.json in hh-jax's id layout.

      id = checkpoint id + 3;  the checkpoint's end-of-text token <-> EOS_ID (1)

  (a tokenizer.json already in this layout, as `save_hf` writes it, is used as it is).
  `encode` adds no special tokens (no BOS): hh-jax encodes turns and replies separately and
  joins the ids, and a BOS before every piece would change the text's tokens. `decode` skips
  PAD, EOS and EOC, like the byte tokenizer. Byte-level BPE vocabularies (GPT-2, Pythia,
  Llama 3, Qwen2.5, SmolLM2) give `decode(encode(s)) == s` for every string.
  """

  pad_id = PAD_ID
  eos_id = EOS_ID
  eoc_id = EOC_ID

  def __init__(self, tokenizer: "hf_tokenizers.Tokenizer", checkpoint_eos: int | None = None):
    self.tokenizer = tokenizer
    self.hh_layout = all(tokenizer.token_to_id(n) == i for i, n in HF_SPECIAL_NAMES.items()
                         if i != EOS_ID)
    self.offset = 0 if self.hh_layout else NUM_SPECIAL
    self.checkpoint_eos = None if self.hh_layout else checkpoint_eos

  @classmethod
  def load(cls, path: str | os.PathLike) -> "PretrainedTokenizer":
    """From a checkpoint directory (tokenizer.json; eos from config.json) or a tokenizer.json."""
    path = os.fspath(path)
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    config = os.path.join(os.path.dirname(file), "config.json")
    eos = None
    if os.path.exists(config):
      with open(config, encoding="utf-8") as f:
        eos = json.load(f).get("eos_token_id")
      eos = eos[0] if isinstance(eos, list) and eos else eos if isinstance(eos, int) else None
    return cls(hf_tokenizers.Tokenizer.from_file(file), eos)

  @property
  def vocab_size(self) -> int:
    """1 + the largest id it emits (a model may have more rows: checkpoints pad their tables)."""
    ids = np.asarray(list(self.tokenizer.get_vocab(with_added_tokens=True).values()))
    if self.checkpoint_eos is not None:
      ids = ids[ids != self.checkpoint_eos]
    return int(ids.max()) + 1 + self.offset

  def encode_array(self, text: str) -> np.ndarray:
    ids = np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, np.int64)
    if self.checkpoint_eos is not None:
      is_eos = ids == self.checkpoint_eos
      return np.where(is_eos, EOS_ID, ids + self.offset).astype(np.int32)
    return (ids + self.offset).astype(np.int32)

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def decode(self, ids: Sequence[int]) -> str:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    ids = ids[~np.isin(ids, list(SPECIAL_IDS))] - self.offset
    return self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)

  def to_json(self) -> dict:
    return json.loads(self.hf_json())

  def save(self, path: str | os.PathLike) -> None:
    """A tokenizer.json in hh-jax's layout; `load_tokenizer(path)` reads it back."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(self.hf_json())

  def save_hf(self, directory: str | os.PathLike) -> None:
    """tokenizer.json (hh-jax ids) and tokenizer_config.json, for transformers' AutoTokenizer."""
    self.save(os.path.join(directory, "tokenizer.json"))
    eos = EOS_ID if self.hh_layout else self.checkpoint_eos
    eos_name = HF_SPECIAL_NAMES[EOS_ID] if eos is None else self.tokenizer.id_to_token(eos)
    _write_json(os.path.join(directory, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": HF_SPECIAL_NAMES[PAD_ID],
        "eos_token": eos_name, "add_bos_token": False, "add_eos_token": False})

  def hf_json(self) -> str:
    """This tokenizer's tokenizer.json with every id in hh-jax's layout."""
    if self.hh_layout:
      return self.tokenizer.to_str()
    return json.dumps(shifted_tokenizer_json(json.loads(self.tokenizer.to_str()), self.checkpoint_eos))


def _shift_id(i: int, eos: int | None) -> int:
  return EOS_ID if i == eos else i + NUM_SPECIAL


def _shift_post_processor(proc: dict | None, eos: int | None) -> None:
  """Shift the ids a TemplateProcessing (or a Sequence of them) names, in place."""
  if not proc:
    return
  for sub in proc.get("processors", []):
    _shift_post_processor(sub, eos)
  for special in proc.get("special_tokens", {}).values():
    special["ids"] = [_shift_id(i, eos) for i in special["ids"]]
  if proc.get("type") in ("RobertaProcessing", "BertProcessing"):
    for key in ("sep", "cls"):
      proc[key] = [proc[key][0], _shift_id(proc[key][1], eos)]


def shifted_tokenizer_json(obj: dict, eos: int | None) -> dict:
  """A tokenizer.json dict with id i -> i + 3 (the checkpoint's eos -> EOS_ID) and hh-jax's
  PAD and EOC (and EOS, when the checkpoint has no eos) added as special tokens at 0..2."""
  model = obj["model"]
  if not isinstance(model.get("vocab"), dict):
    raise ValueError(f"tokenizer model {model.get('type')!r} is not supported (a vocab dict is needed)")
  model["vocab"] = {token: _shift_id(i, eos) for token, i in model["vocab"].items()}
  for added in obj.get("added_tokens", []):
    added["id"] = _shift_id(added["id"], eos)
  _shift_post_processor(obj.get("post_processor"), eos)
  new = [i for i in sorted(HF_SPECIAL_NAMES) if not (i == EOS_ID and eos is not None)]
  obj["added_tokens"] = [{"id": i, "content": HF_SPECIAL_NAMES[i], "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                         for i in new] + obj.get("added_tokens", [])
  # `tokenizers` keeps an added token's id only if the model's vocab holds it there too.
  model["vocab"].update({added["content"]: added["id"] for added in obj["added_tokens"]})
  return obj


def train_hf_bpe(texts: Iterable[str], vocab_size: int) -> PretrainedTokenizer:
  """A byte-level BPE (GPT-2's scheme) trained with the `tokenizers` library's BpeTrainer:
  256 byte symbols plus merges up to `vocab_size` checkpoint ids, no special tokens of its
  own (hh-jax's PAD, EOS, EOC come from the id layout)."""
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  tok.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = hf_tokenizers.decoders.ByteLevel()
  trainer = hf_tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size, show_progress=False,
      initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(texts, trainer)
  return PretrainedTokenizer(tok)


def _write_json(path: str | os.PathLike, obj: dict) -> None:
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(obj, f)


def tokenizer_from_json(obj: dict) -> Tokenizer:
  if "model" in obj and "added_tokens" in obj:          # a Hugging Face tokenizer.json
    return PretrainedTokenizer(hf_tokenizers.Tokenizer.from_str(json.dumps(obj)))
  kind = obj.get("type")
  if kind == "byte":
    return ByteTokenizer()
  if kind == "bpe":
    return BpeTokenizer([tuple(m) for m in obj["merges"]])
  raise ValueError(f"unknown tokenizer type {kind!r} (expected 'byte' or 'bpe')")


def load_tokenizer(spec: str | os.PathLike) -> Tokenizer:
  """Tokenizer named by a run config: `"byte"`, the path of a file written by `save`, or a
  Hugging Face checkpoint directory (its tokenizer.json, in hh-jax's id layout)."""
  if os.fspath(spec) == "byte":
    return ByteTokenizer()
  path = os.fspath(spec)
  if os.path.isdir(path):
    return PretrainedTokenizer.load(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"tokenizer spec {path!r} is neither 'byte' nor an existing tokenizer file")
  with open(path, encoding="utf-8") as f:
    try:
      obj = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"tokenizer file {path}: not JSON ({e})") from e
  return tokenizer_from_json(obj)


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> None:
  """Writes `tokenizer` so that `load_tokenizer(path)` gives it back."""
  tokenizer.save(path)
