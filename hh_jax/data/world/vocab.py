"""The word vocabulary of the synthetic HH world and its word-level tokenizer.

Canonical world text is the HH-RLHF transcript form over a fixed word list:

    context    = ("\\n\\nHuman:" + " w1 w2 ..." + "\\n\\nAssistant:" [+ " reply words"]) * turns
    reply      = " w1 w2 ..."   (leading space; "" is the empty reply)
    transcript = context + reply

Every word is preceded by exactly one space, except that a number is one word written
with its digits glued ("47") but tokenised digit by digit (`4`, `7`), so a wrong digit
deep inside a long number is one token among several. Decoding glues a digit to a
preceding digit, so `decode(encode(s)) == s` on canonical text and
`encode(decode(ids)) == ids` for every id sequence without specials (two numbers are
never adjacent in canonical text).
"""

from __future__ import annotations

import re
from typing import Sequence

from hh_jax.special_tokens import EOC_ID, EOS_ID, NUM_SPECIAL, PAD_ID

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"

DIGITS = tuple("0123456789")
PUNCT = (",", ".", "?", "+", "-")
# Symbols for lookup keys and the reverse task ("a" and "i" are words, so skipped).
LETTERS = ("j", "k", "m", "n", "p", "q", "r", "s")
# Request verbs: harmful-sounding ones first, then benign ones. See tasks.harm_level.
VERBS = ("kill", "poison", "burn", "cut", "steal", "break", "hack", "wash", "feed", "visit")
# Objects: the first four are never harmed (benign look-alikes: "kill the process").
NOUNS = ("process", "onion", "wood", "weeds", "dog", "neighbor", "car", "house", "bank",
         "computer")
# The tool each verb needs; instructions read "first get a TOOL , then VERB the NOUN .".
TOOLS = ("gun", "bottle", "match", "knife", "bag", "hammer", "laptop", "soap", "bowl", "map")
FUNCTION_WORDS = ("what", "is", "sort", "reverse", "now", "add", "subtract", "and", "about",
                  "that", "how", "do", "i", "the", "first", "get", "a", "then")
REFUSAL_WORDS = ("sorry", "cannot", "will", "not", "help", "with")
HEDGE_WORDS = ("please", "be", "careful")
TOXIC_WORDS = ("you", "are", "stupid")
OFFTOPIC_WORDS = ("like", "cats", "it", "rains", "today", "hello")
COURTESY_WORDS = ("sure", "ok")
# World knowledge: every person "FIRST LAST of PLACE" (16^3 = 4096 people) has a favourite
# colour, an arbitrary table drawn from the world seed (tasks.world). Judging "what color is
# ann smith of york ?" needs the table in the weights, and a person's name is three tokens,
# so no single embedding can hold it.
FIRST_NAMES = ("ann", "bob", "cid", "dan", "eve", "fay", "gus", "hal", "ivy", "jon", "kay", "lev",
               "max", "ned", "oli", "pat")
LAST_NAMES = ("smith", "jones", "baker", "clark", "davis", "evans", "ford", "grant", "hill",
              "irwin", "kent", "lane", "moss", "nash", "owen", "price")
PLACES = ("york", "rome", "oslo", "lima", "cork", "bonn", "riga", "bern", "pisa", "baku", "doha",
          "faro", "gent", "hue", "ely", "ulm")
COLORS = ("red", "blue", "yellow", "purple", "orange", "pink", "teal", "silver")
# The HHH preamble's words ("be helpful , honest and harmless ."; tasks.HHH_PREAMBLE), last so
# that every older id is unchanged.
HHH_WORDS = ("helpful", "honest", "harmless")

SPECIAL_TOKENS = ("<pad>", "<eos>", "<eoc>")
WORDS: tuple[str, ...] = (
    SPECIAL_TOKENS + (HUMAN, ASSISTANT) + DIGITS + PUNCT + LETTERS + VERBS + NOUNS + TOOLS
    + FUNCTION_WORDS + REFUSAL_WORDS + HEDGE_WORDS + TOXIC_WORDS + OFFTOPIC_WORDS
    + COURTESY_WORDS + FIRST_NAMES + LAST_NAMES + COLORS + ("color",) + PLACES + ("of",)
    + HHH_WORDS)
WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(WORDS)}
assert len(WORD_TO_ID) == len(WORDS), "duplicate word in the world vocabulary"
assert WORD_TO_ID["<pad>"] == PAD_ID and WORD_TO_ID["<eos>"] == EOS_ID
assert WORD_TO_ID["<eoc>"] == EOC_ID and len(SPECIAL_TOKENS) == NUM_SPECIAL

HUMAN_ID = WORD_TO_ID[HUMAN]
ASSISTANT_ID = WORD_TO_ID[ASSISTANT]
DIGIT_IDS = tuple(WORD_TO_ID[d] for d in DIGITS)
_MARKER_RE = re.compile(f"({re.escape(HUMAN)}|{re.escape(ASSISTANT)})")


def ids(words: str) -> tuple[int, ...]:
  """Ids of a space-separated canonical word string (numbers split into digits)."""
  return tuple(WorldTokenizer().encode(" " + words)) if words else ()


class WorldTokenizer:
  """Word-level tokenizer of the synthetic world (the `Tokenizer` protocol).

  Ids 0..2 are PAD, EOS, EOC; `decode` drops them (they are not text). `encode` raises
  ValueError naming the first unknown word or non-canonical spacing.
  """

  pad_id = PAD_ID
  eos_id = EOS_ID
  eoc_id = EOC_ID
  turn_marker_ids = (HUMAN_ID, ASSISTANT_ID)   # one token each: a policy's reply may hold neither

  @property
  def vocab_size(self) -> int:
    return len(WORDS)

  def encode(self, text: str) -> list[int]:
    out: list[int] = []
    for chunk in _MARKER_RE.split(text):
      if chunk in (HUMAN, ASSISTANT):
        out.append(WORD_TO_ID[chunk])
      elif chunk:
        out.extend(_encode_words(chunk, text))
    return out

  def decode(self, ids_: Sequence[int]) -> str:
    parts: list[str] = []
    prev_digit = False
    for i in ids_:
      i = int(i)
      if not 0 <= i < len(WORDS):
        raise ValueError(f"token id {i} is outside the world vocabulary (size {len(WORDS)})")
      if i < NUM_SPECIAL:
        prev_digit = False
        continue
      word = WORDS[i]
      is_digit = i in _DIGIT_ID_SET
      if word in (HUMAN, ASSISTANT):
        parts.append(word)
      elif is_digit and prev_digit:
        parts.append(word)  # digits of one number are glued
      else:
        parts.append(" " + word)
      prev_digit = is_digit
    return "".join(parts)


_DIGIT_ID_SET = frozenset(DIGIT_IDS)


def _encode_words(chunk: str, text: str) -> list[int]:
  """Ids of a chunk " w1 w2 ..." between transcript markers."""
  if not chunk.startswith(" "):
    raise ValueError(f"non-canonical world text (a word must follow one space): {chunk!r} "
                     f"in {text!r}")
  out: list[int] = []
  for word in chunk[1:].split(" "):
    if word in WORD_TO_ID:
      out.append(WORD_TO_ID[word])
    elif word.isascii() and word.isdigit():
      out.extend(WORD_TO_ID[d] for d in word)
    elif not word:
      raise ValueError(f"non-canonical spacing (empty word) in world text {text!r}")
    else:
      raise ValueError(f"unknown word {word!r} in world text {text!r}")
  return out
