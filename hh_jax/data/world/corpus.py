"""Datasets of the synthetic world as plain Python: LM corpus, RL prompts, comparisons.

Everything is a pure function of (world seed, data seed, size, split): each (dataset, split)
has its own numpy PCG64 stream `default_rng([seed, stream, split, sub, world_seed])`, and
comparison labels a second one (sub = 1), so the first m examples of a size-n dataset are exactly the size-m dataset
(dataset-size sweeps use nested subsets) and the same seed gives byte-identical data.
The `hh_synth` TFDS builder serves exactly these examples.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from hh_jax.data.world import gold, labeler, policy, tasks

SUBSETS = ("helpful", "harmless")
_STREAMS = {"lm": 1, "helpful": 2, "harmless": 3, "prompts": 4, "mix": 5}
# "validation" is for every choice made by looking at results; "test" only for the claims.
_SPLITS = {"train": 0, "test": 1, "validation": 2}
_MIXES = {"helpful": tasks.HELPFUL_MIX, "harmless": tasks.HARMLESS_MIX}
COMPARISON_FIELDS = (
    "context", "chosen", "rejected", "num_turns", "chosen_full", "rejected_full", "subset",
    "gold_helpful_chosen", "gold_helpful_rejected", "gold_harmless_chosen",
    "gold_harmless_rejected", "p_chosen", "task")


def _rng(name: str, seed: int, split: str, world_seed: int, sub: int = 0) -> np.random.Generator:
  if split not in _SPLITS:
    raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
  return np.random.default_rng([int(seed), _STREAMS[name], _SPLITS[split], sub, int(world_seed)])


def _contexts(rng: np.random.Generator, n: int, helpful_fraction: float,
              world_seed: int) -> list[tuple[str, str]]:
  """n (context, subset): the helpful prompt mix with prob helpful_fraction, else red-team."""
  if not 0.0 <= helpful_fraction <= 1.0:
    raise ValueError(f"helpful_fraction must lie in [0, 1], got {helpful_fraction}")
  out = []
  for _ in range(n):
    subset = "helpful" if rng.random() < helpful_fraction else "harmless"
    out.append((tasks.sample_context(rng, _MIXES[subset], world_seed), subset))
  return out


def sample_prompt_records(seed: int, n: int, mix: float = 0.5, split: str = "train",
                          world_seed: int = 0) -> list[tuple[str, str]]:
  """n RL prompts as (context, subset): subset "helpful" or "harmless" (red-team) is the
  prompt distribution it was drawn from; `mix` = fraction helpful."""
  return _contexts(_rng("prompts", seed, split, world_seed), n, mix, world_seed)


def sample_prompts(seed: int, n: int, mix: float = 0.5, split: str = "train",
                   world_seed: int = 0) -> list[str]:
  """n RL prompts (contexts ending in "\n\nAssistant:"); `mix` = fraction helpful."""
  return [context for context, _ in sample_prompt_records(seed, n, mix, split, world_seed)]


# Fraction of LM-corpus transcripts written by the careful assistant, after the HHH preamble.
HHH_FRACTION = 0.1


def corpus(seed: int, n: int, mix: float = 0.5, split: str = "train",
           world_seed: int = 0, hhh_fraction: float = HHH_FRACTION) -> list[str]:
  """n full transcripts (context + base-policy reply) for pretraining base LMs.

  Replies have mixed quality (correct, partly wrong, refusing, harmful, off-topic,
  empty); `mix` = fraction of helpful prompts, the rest red-team requests. A fraction
  `hhh_fraction` of them (drawn from their own stream, sub = 2) are instead
  `tasks.HHH_PREAMBLE` + context + a careful reply (`policy.sample_careful_reply`): the
  paper's HHH prompt works because text after such a prompt is better, and so it is here.
  The other transcripts are the same with any hhh_fraction.
  """
  rng = _rng("lm", seed, split, world_seed)
  careful = _rng("lm", seed, split, world_seed, sub=2)
  out = []
  for context, _ in _contexts(rng, n, mix, world_seed):
    reply = policy.sample_reply(rng, context, world_seed=world_seed)
    if careful.random() < hhh_fraction:
      out.append(tasks.HHH_PREAMBLE + context
                 + policy.sample_careful_reply(careful, context, world_seed))
    else:
      out.append(context + reply)
  return out


@dataclasses.dataclass(frozen=True)
class ComparisonSet:
  """Labelled comparisons, column-wise, with the `hh_synth` example schema.

  Attributes:
    columns: field name (COMPARISON_FIELDS) -> list of str or numpy array, one entry per
      comparison.
    bayes_ceiling: mean of max(p_chosen, 1 - p_chosen), the best expected accuracy.
  """

  columns: dict[str, list | np.ndarray]
  bayes_ceiling: float

  def __len__(self) -> int:
    return len(self.columns["context"])

  def examples(self) -> Iterator[dict]:
    """Rows as dicts of str / int / float (the TFDS example format)."""
    cols = self.columns
    for i in range(len(self)):
      yield {k: (cols[k][i] if isinstance(cols[k], list) else cols[k][i].item())
             for k in COMPARISON_FIELDS}


def _subset_comparisons(subset: str, seed: int, n: int, split: str,
                        beta: float | None, world_seed: int) -> ComparisonSet:
  rng = _rng(subset, seed, split, world_seed)
  contexts, replies_a, replies_b = [], [], []
  for _ in range(n):
    context = tasks.sample_context(rng, _MIXES[subset], world_seed)
    a, b = policy.sample_pair(rng, context, world_seed=world_seed)
    contexts.append(context)
    replies_a.append(a)
    replies_b.append(b)
  if n == 0:
    numeric = {"num_turns": np.int32, "p_chosen": np.float32}
    return ComparisonSet({k: np.zeros(0, numeric.get(k, np.float32)) if k in numeric
                          or k.startswith("gold_") else [] for k in COMPARISON_FIELDS},
                         float("nan"))
  gold_a = gold.gold_scores_text(contexts, replies_a, world_seed)
  gold_b = gold.gold_scores_text(contexts, replies_b, world_seed)
  labels = labeler.label_scored(gold_a, gold_b, _rng(subset, seed, split, world_seed, sub=1),
                                subset, beta)
  a_won = labels.a_preferred
  chosen = [a if w else b for a, b, w in zip(replies_a, replies_b, a_won)]
  rejected = [b if w else a for a, b, w in zip(replies_a, replies_b, a_won)]
  columns: dict[str, list | np.ndarray] = {
      "context": contexts,
      "chosen": chosen,
      "rejected": rejected,
      "num_turns": np.array([tasks.num_turns(c) for c in contexts], np.int32),
      "chosen_full": [c + r for c, r in zip(contexts, chosen)],
      "rejected_full": [c + r for c, r in zip(contexts, rejected)],
      "subset": [subset] * n,
      "p_chosen": labels.p_chosen.astype(np.float32),
      "task": [tasks.parse_context(c, world_seed).task for c in contexts],
  }
  for reward in ("helpful", "harmless"):
    columns[f"gold_{reward}_chosen"] = np.where(a_won, gold_a[reward], gold_b[reward])
    columns[f"gold_{reward}_rejected"] = np.where(a_won, gold_b[reward], gold_a[reward])
  return ComparisonSet(columns, labels.bayes_accuracy)


def comparisons(subset: str, seed: int, n: int, split: str = "train",
                helpful_fraction: float = 0.5, beta: float | None = None,
                world_seed: int = 0) -> ComparisonSet:
  """n labelled comparisons: two base-policy replies to one context, labelled by the
  gold labeler (helpful subset by gold helpfulness, harmless by gold harmlessness).

  Args:
    subset: "helpful", "harmless", or "mix" (round(n * helpful_fraction) helpful
      comparisons, the prefix of the helpful set, and the rest from the harmless set,
      shuffled together).
    seed, n, split: what the data is a pure function of ("train", "validation" or "test").
    beta: labeler sharpness (default labeler.DEFAULT_BETA[subset]).
    world_seed: the world (`tasks.world`) the data is drawn from.
  """
  if subset in SUBSETS:
    return _subset_comparisons(subset, seed, n, split, beta, world_seed)
  if subset != "mix":
    raise ValueError(f"subset must be one of {SUBSETS + ('mix',)}, got {subset!r}")
  n_helpful = int(round(n * helpful_fraction))
  return mix_comparisons(
      _subset_comparisons("helpful", seed, n_helpful, split, beta, world_seed),
      _subset_comparisons("harmless", seed, n - n_helpful, split, beta, world_seed),
      seed, split, world_seed)


def mix_comparisons(helpful: ComparisonSet, harmless: ComparisonSet, seed: int,
                    split: str = "train", world_seed: int = 0) -> ComparisonSet:
  """Two comparison sets shuffled together (the permutation depends on seed, split, world)."""
  n = len(helpful) + len(harmless)
  order = _rng("mix", seed, split, world_seed).permutation(n)
  parts = (helpful.columns, harmless.columns)
  columns = {}
  for k in COMPARISON_FIELDS:
    if isinstance(parts[0][k], list):
      joined = list(parts[0][k]) + list(parts[1][k])
      columns[k] = [joined[i] for i in order]
    else:
      columns[k] = np.concatenate([parts[0][k], parts[1][k]])[order]
  p = np.asarray(columns["p_chosen"], np.float64)
  return ComparisonSet(columns, labeler.bayes_accuracy(p))
