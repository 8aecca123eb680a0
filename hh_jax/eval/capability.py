"""Held-out evaluation of one policy in the synthetic world: capability (exact answers) and the
gold reward by task family (Bai et al. 2022 Fig 3: the alignment tax or bonus of RLHF).

Capability is the exact-answer rate on the helpful task families (arithmetic, sort, lookup,
reverse, fact) under greedy decoding, as the paper's zero-shot evaluations score a model's
most likely answer. A reply is exact iff its gold helpfulness is 1: by the gold reward's
definition (hh_jax/data/world/gold.py)

    helpful = 2 acc - 1 - 0.1 min(extra, 5) - 0.5 [no EOS] = 1
      <=>  acc = 1, extra = 0 and the reply ends with EOS

i.e. the body (after an optional "sure ," / "ok ,") is the target, token for token, and
nothing more. The gold reward (hh, helpful, harmless) is averaged per family over replies
sampled at the policy's own temperature (what RL optimises), so "harmful_request" is the
harmlessness of a policy and the task families its helpfulness.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from hh_jax.train.rollout import sample_replies

CAPABILITY_FAMILIES = ("arithmetic", "sort", "lookup", "reverse", "fact")
EXACT_TOL = 1e-6


def exact_answers(gold_helpful: np.ndarray) -> np.ndarray:
  """(B,) bool: the reply is exactly the target (gold helpfulness 1, module docstring)."""
  return np.asarray(gold_helpful, np.float64) >= 1.0 - EXACT_TOL


def family_means(values: np.ndarray, families: np.ndarray) -> dict[str, float]:
  """Mean of `values` (B,) per family name (B,)."""
  values, families = np.asarray(values, np.float64), np.asarray(families)
  return {str(f): float(values[families == f].mean()) for f in np.unique(families)}


def capability(exact: np.ndarray, families: np.ndarray) -> float:
  """Unweighted mean over CAPABILITY_FAMILIES present of each family's exact-answer rate (so a
  frequent family does not stand for the others); nan if none is present."""
  rates = family_means(exact, families)
  present = [rates[f] for f in CAPABILITY_FAMILIES if f in rates]
  return float(np.mean(present)) if present else float("nan")


def evaluate_policy(model, prompts: np.ndarray, families: np.ndarray,
                    gold_fn: Callable[[np.ndarray, np.ndarray], dict], *, max_new_tokens: int,
                    temperature: float = 1.0, seed: int = 0, chunk: int = 256,
                    banned_ids: tuple[int, ...] = ()) -> dict:
  """Capability (greedy exact answers) and gold rewards by family (sampled at `temperature`)
  of `model` (anything with .graphdef and .params) on left-padded prompts (N, P), never
  emitting a token of `banned_ids` (the policy PPO trained: `rollout.ban_tokens`)."""
  key = jax.random.key(seed)
  decode = lambda t: sample_replies(model, prompts, key, max_new_tokens=max_new_tokens,  # noqa: E731
                                    temperature=t, chunk=chunk, banned_ids=banned_ids)
  g_greedy = gold_fn(prompts, decode(0.0))
  g_sampled = gold_fn(prompts, decode(temperature))
  exact = exact_answers(g_greedy["helpful"])
  out = {"capability": capability(exact, families),
         "exact_by_family": {f: v for f, v in family_means(exact, families).items()
                             if f in CAPABILITY_FAMILIES}}
  for k in ("hh", "helpful", "harmless"):
    out[f"gold_{k}"] = float(np.mean(g_sampled[k]))
    out[f"gold_{k}_by_family"] = family_means(g_sampled[k], families)
  return out
