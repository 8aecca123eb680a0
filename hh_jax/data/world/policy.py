"""A simulated base policy: replies of mixed quality, the raw material of every dataset.

Its samples play the part of the 52B context-distilled model's samples in the paper:
the LM corpus is made of them, comparison pairs are two of them for one context, and
PPO starts from an LM trained on them, so it has room to improve (answer correctly,
refuse harmful requests, comply with benign look-alikes).

Reply kinds and their probabilities (`TASK_KINDS`, `FACT_KINDS`, `REQUEST_KINDS`) are the
knobs that set what comparisons contain; the gold reward never sees the kind, only the tokens.
Replies to tasks are mostly right or wrong in content (a near miss, a wrong number or colour),
which only a judge that reads the context can tell apart: with the first version's mix (30%
correct, 30% near miss, a third refusals, hedges, off-topic, degenerate or toxic replies) a
logistic regression on the reply's bag of words, blind to the context, scored 0.666 on
helpful comparisons of a validation world (seed 101, validation split; Bayes ceiling 0.825),
above the PMs trained on them; with this mix it scores 0.612 (ceiling 0.816). Requests keep
their mix: harmlessness judgments remain largely readable from the reply (refusals, the
harmful words themselves), as in the paper's red-team data.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hh_jax.data.world import tasks, vocab
from hh_jax.data.world.vocab import COLORS, LETTERS, TOOLS

REFUSALS = ("sorry , i cannot help with that .", "i will not help with that .",
            "sorry , i will not do that .", "i cannot do that .",
            "sorry , i cannot help with that . please be careful .")
HEDGE = "please be careful ."
OFF_TOPIC = ("i like cats .", "it rains today .", "hello .", "cats cats cats", "i like it .")
TOXIC = "you are stupid ."

# kind -> probability, for helpful tasks and for requests (benign or harmful).
TASK_KINDS = {"correct": 0.42, "near_miss": 0.30, "wrong": 0.16, "refusal": 0.04,
              "hedged": 0.03, "off_topic": 0.02, "degenerate": 0.02, "toxic": 0.01}
REQUEST_KINDS = {"comply": 0.28, "partial": 0.14, "comply_hedged": 0.08, "wrong_tool": 0.08,
                 "refusal": 0.24, "hedge_only": 0.06, "off_topic": 0.06, "toxic": 0.06}
COURTESY_PROB = 0.25

_TOK = vocab.WorldTokenizer()
_DIGIT_IDS = np.array(vocab.DIGIT_IDS)
_LETTER_IDS = np.array([vocab.WORD_TO_ID[w] for w in LETTERS])


def _pick(rng: np.random.Generator, options: Sequence):
  return options[int(rng.integers(len(options)))]


def _kind(rng: np.random.Generator, kinds: dict[str, float]) -> str:
  names = list(kinds)
  probs = np.array([kinds[k] for k in names])
  return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def _text(ids_: Sequence[int]) -> str:
  return _TOK.decode(ids_)


def _courtesy(rng: np.random.Generator, reply: str) -> str:
  return " sure ," + reply if reply and rng.random() < COURTESY_PROB else reply


def _other_color(rng: np.random.Generator, spec: tasks.Spec) -> str:
  """A fact reply with the wrong colour."""
  return " " + _pick(rng, [c for c in COLORS if c != spec.items[0]])


def _near_miss(rng: np.random.Generator, spec: tasks.Spec) -> str:
  """The target with one (sometimes two) content tokens replaced or two items swapped."""
  if spec.task == "fact":
    return _other_color(rng, spec)
  target = list(spec.target)
  content = [i for i, t in enumerate(target) if t in vocab.DIGIT_IDS or t in _LETTER_IDS]
  if spec.task in ("sort", "reverse") and len(spec.items) >= 2 and rng.random() < 0.5:
    # Swap two adjacent items: every item present, order wrong.
    step = 2 if spec.sep else 1
    i = int(rng.integers(len(spec.items) - 1)) * step
    target[i], target[i + step] = target[i + step], target[i]
    if target != list(spec.target):
      return _text(target)
  for _ in range(1 + int(rng.random() < 0.3)):
    i = _pick(rng, content)
    pool = _DIGIT_IDS if target[i] in vocab.DIGIT_IDS else _LETTER_IDS
    target[i] = int(_pick(rng, [t for t in pool if t != target[i]]))
  return _text(target)


def _wrong(rng: np.random.Generator, spec: tasks.Spec, context: str) -> str:
  """A plausible wrong answer built from the prompt: a number or the list as given."""
  if spec.task == "fact":
    return _other_color(rng, spec)
  last = context.rsplit(vocab.HUMAN, 1)[1].split(vocab.ASSISTANT)[0]
  words = last.split()
  numbers = [w for w in words if w.isdigit()]
  if spec.task == "sort" and len(words) > 2 and words[0] == "sort":
    return " " + " ".join(words[1:])  # the list unsorted
  if spec.task == "reverse" and words[0] == "reverse":
    return " " + " ".join(words[1:])  # copied, not reversed
  if spec.task == "lookup" and spec.table:
    return " " + _pick(rng, [v for _, v in spec.table])  # any value of the table
  if numbers:
    return " " + _pick(rng, numbers)  # repeats a number of the prompt
  return " " + str(int(rng.integers(0, 100)))


def _degenerate(rng: np.random.Generator, spec: tasks.Spec) -> str:
  target = spec.target_text
  choice = int(rng.integers(4))
  if choice == 0:  # repeated (a comma between numbers keeps two numbers two words)
    return target + (" ," if target[-1].isdigit() else "") + target
  if choice == 1 and len(spec.target) > 1:
    return _text(spec.target[:int(rng.integers(1, len(spec.target)))])  # cut short
  if choice == 2:
    return ""  # empty reply
  return " " + " ".join([_pick(rng, ("cats", "the", "is", "what"))] * int(rng.integers(2, 5)))


# Fact replies are mostly a colour, right or wrong: the pairs that need the knowledge table.
FACT_KINDS = {"correct": 0.47, "near_miss": 0.47, "refusal": 0.02, "hedged": 0.02,
              "off_topic": 0.01, "degenerate": 0.005, "toxic": 0.005}


def _task_reply(rng: np.random.Generator, spec: tasks.Spec, context: str,
                kinds: dict[str, float] | None = None) -> str:
  kind = _kind(rng, kinds or (FACT_KINDS if spec.task == "fact" else TASK_KINDS))
  if kind == "correct":
    return _courtesy(rng, spec.target_text)
  if kind == "near_miss":
    return _courtesy(rng, _near_miss(rng, spec))
  if kind == "wrong":
    return _courtesy(rng, _wrong(rng, spec, context))
  if kind == "refusal":
    return " " + _pick(rng, REFUSALS)
  if kind == "hedged":
    answer = spec.target_text if rng.random() < 0.5 else _near_miss(rng, spec)
    return f"{answer} {HEDGE}"
  if kind == "off_topic":
    return " " + _pick(rng, OFF_TOPIC)
  if kind == "degenerate":
    return _degenerate(rng, spec)
  return f"{spec.target_text} {TOXIC}" if rng.random() < 0.5 else " " + TOXIC


def _request_reply(rng: np.random.Generator, spec: tasks.Spec,
                   kinds: dict[str, float] | None = None) -> str:
  kind = _kind(rng, kinds or REQUEST_KINDS)
  words = spec.target_text.split()  # first get a TOOL , then VERB the NOUN .
  if kind == "comply":
    return _courtesy(rng, spec.target_text)
  if kind == "partial":
    return " " + " ".join(words[:_pick(rng, (4, 7, 8))]) + " ."  # stops mid-instructions
  if kind == "comply_hedged":
    return f"{spec.target_text} {HEDGE}"
  if kind == "wrong_tool":
    words[3] = _pick(rng, [t for t in TOOLS if t != words[3]])
    return _courtesy(rng, " " + " ".join(words))
  if kind == "refusal":
    return " " + _pick(rng, REFUSALS)
  if kind == "hedge_only":
    return " " + HEDGE
  if kind == "off_topic":
    return " " + _pick(rng, OFF_TOPIC)
  return " " + TOXIC


# The careful assistant: the one whose transcripts open with the HHH preamble in the LM corpus
# (`tasks.HHH_PREAMBLE`, `corpus.HHH_FRACTION`). It answers tasks right more often, refuses
# harmful requests and complies with benign ones; still imperfect, so that a prompted LM can
# only be as good as what it knows (a wrong colour stays wrong).
CAREFUL_TASK_KINDS = {"correct": 0.80, "near_miss": 0.10, "wrong": 0.04, "refusal": 0.01,
                      "hedged": 0.02, "off_topic": 0.01, "degenerate": 0.01, "toxic": 0.01}
CAREFUL_FACT_KINDS = {"correct": 0.85, "near_miss": 0.13, "refusal": 0.01, "hedged": 0.01}
CAREFUL_HARMFUL_KINDS = {"refusal": 0.75, "hedge_only": 0.10, "comply_hedged": 0.05,
                         "comply": 0.05, "partial": 0.05}
CAREFUL_BENIGN_KINDS = {"comply": 0.75, "partial": 0.05, "comply_hedged": 0.05,
                        "wrong_tool": 0.05, "refusal": 0.10}


def sample_careful_reply(rng: np.random.Generator, context: str, world_seed: int = 0) -> str:
  """One reply of the careful assistant (above) to a context without the preamble."""
  spec = tasks.parse_context(context, world_seed)
  if spec.family == "request":
    kinds = CAREFUL_HARMFUL_KINDS if spec.harm > 0 else CAREFUL_BENIGN_KINDS
    return _request_reply(rng, spec, kinds)
  return _task_reply(rng, spec, context,
                     CAREFUL_FACT_KINDS if spec.task == "fact" else CAREFUL_TASK_KINDS)


def sample_reply(rng: np.random.Generator, context: str, world_seed: int = 0) -> str:
  """One base-policy reply (canonical text: leading space, or "" for the empty reply)."""
  spec = tasks.parse_context(context, world_seed)
  if spec.family == "request":
    return _request_reply(rng, spec)
  return _task_reply(rng, spec, context)


def sample_pair(rng: np.random.Generator, context: str, max_tries: int = 8,
                world_seed: int = 0) -> tuple[str, str]:
  """Two different base-policy replies to one context (identical pairs carry no label)."""
  a = sample_reply(rng, context, world_seed)
  b = a
  for _ in range(max_tries):
    b = sample_reply(rng, context, world_seed)
    if b != a:
      break
  return a, b
