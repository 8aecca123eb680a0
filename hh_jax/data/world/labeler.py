"""The gold labeler: a Bradley-Terry crowdworker with known noise.

    P(A preferred to B) = sigmoid(beta (R(A) - R(B)))

with R a gold reward (gold.py) chosen by the comparison's subset: helpfulness for
helpful comparisons, harmlessness for harmless (red-team) ones, as HH-RLHF's
crowdworkers were asked. The best any preference model can do on a set of comparisons
labelled this way is to always pick the gold-preferred reply, whose expected accuracy
(the Bayes ceiling) is exactly

    ceiling = mean_pairs max(p, 1 - p).

beta sets the noise: larger beta, cleaner labels. The defaults put the ceilings of the
default comparison sets inside [0.75, 0.90] (see `hh-jax world stats`), near the
paper's crowdworker agreement, leaving room for models of different sizes to differ.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from hh_jax.data.world import gold

DEFAULT_BETA = {"helpful": 2.5, "harmless": 4.0, "hh": 2.0}


def preference_prob(reward_a: np.ndarray, reward_b: np.ndarray, beta: float) -> np.ndarray:
  """P(A > B) = sigmoid(beta (R(A) - R(B))), elementwise, float64."""
  gap = beta * (np.asarray(reward_a, np.float64) - np.asarray(reward_b, np.float64))
  return 0.5 * (1.0 + np.tanh(0.5 * gap))  # = 1 / (1 + exp(-gap)), without overflow


def bayes_accuracy(p_a: np.ndarray) -> float:
  """Expected accuracy of always picking the gold-preferred reply: mean max(p, 1 - p)."""
  p_a = np.asarray(p_a, np.float64)
  return float(np.mean(np.maximum(p_a, 1.0 - p_a))) if p_a.size else float("nan")


@dataclasses.dataclass(frozen=True)
class LabeledPairs:
  """Labels of B comparisons.

  Attributes:
    a_preferred: (B,) bool, the labeler's sampled choice.
    p_a: (B,) P(A preferred) under the labeler.
    gold_a, gold_b: gold rewards {"helpful", "harmless", "hh"} of each side, (B,) each.
    bayes_accuracy: mean max(p_a, 1 - p_a), the ceiling of any model on these labels.
  """

  a_preferred: np.ndarray
  p_a: np.ndarray
  gold_a: dict[str, np.ndarray]
  gold_b: dict[str, np.ndarray]
  bayes_accuracy: float

  @property
  def p_chosen(self) -> np.ndarray:
    """P(the reply the labeler chose is preferred): p_a or 1 - p_a."""
    return np.where(self.a_preferred, self.p_a, 1.0 - self.p_a)


def label_scored(gold_a: dict[str, np.ndarray], gold_b: dict[str, np.ndarray],
                 rng: np.random.Generator, reward: str | Sequence[str] = "helpful",
                 beta: float | Sequence[float] | None = None) -> LabeledPairs:
  """Labels of pairs whose gold rewards are known; `reward`/`beta` may vary per pair."""
  batch = len(gold_a["helpful"])
  rewards = np.broadcast_to(np.asarray(reward), (batch,))
  if beta is None:
    beta = np.array([DEFAULT_BETA[r] for r in rewards]) if batch else np.zeros(0)
  beta = np.broadcast_to(np.asarray(beta, np.float64), (batch,))
  r_a = np.zeros(batch)
  r_b = np.zeros(batch)
  for name in np.unique(rewards):
    if name not in gold_a:
      raise ValueError(f"unknown reward {name!r}; expected one of {sorted(gold_a)}")
    sel = rewards == name
    r_a[sel], r_b[sel] = gold_a[name][sel], gold_b[name][sel]
  p_a = preference_prob(r_a, r_b, beta)
  a_preferred = rng.random(batch) < p_a
  return LabeledPairs(a_preferred, p_a, gold_a, gold_b, bayes_accuracy(p_a))


def label_pairs(contexts, replies_a, replies_b, rng: np.random.Generator,
                reward: str | Sequence[str] = "helpful",
                beta: float | Sequence[float] | None = None,
                world_seed: int = 0) -> LabeledPairs:
  """Label B reply pairs from any source (a trained base LM, the world's base policy).

  Args:
    contexts: one context or B contexts: texts, or token-id sequences when the replies
      are id arrays.
    replies_a, replies_b: B complete reply texts (leading space, "" allowed), or (B, T)
      token ids with EOS/PAD as in `gold.gold_scores`.
    rng: numpy Generator drawing the labels.
    reward: "helpful", "harmless" or "hh", for all pairs or per pair.
    beta: labeler sharpness; default DEFAULT_BETA[reward].
    world_seed: the world whose gold reward judges the replies.
  """
  if isinstance(replies_a, np.ndarray):
    gold_a = gold.gold_scores(contexts, replies_a, world_seed)
    gold_b = gold.gold_scores(contexts, np.asarray(replies_b), world_seed)
  else:
    gold_a = gold.gold_scores_text(contexts, replies_a, world_seed)
    gold_b = gold.gold_scores_text(contexts, replies_b, world_seed)
  return label_scored(gold_a, gold_b, rng, reward, beta)
