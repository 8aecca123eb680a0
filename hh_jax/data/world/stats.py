"""Health figures of the synthetic world: ceilings, shortcuts, the HH tension, speed.

A *scorer* ranks the two replies of a comparison by a number; its accuracy against the
stored labels counts ties as 1/2:

    acc(s) = mean_pairs ( [s(chosen) > s(rejected)] + 0.5 [s(chosen) = s(rejected)] ).

Shortcuts are single surface features of the reply (length, refusal words, digits, ...)
used in whichever direction scores best, so "best shortcut" is an upper bound on what
any one of them achieves.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from hh_jax.data.world import corpus, gold, policy, tasks, vocab

DEFAULT_SIZE = 32_000  # comparisons per subset, as in the default hh_synth configs

_TOK = vocab.WorldTokenizer()
_REFUSAL = {vocab.WORD_TO_ID[w] for w in ("sorry", "cannot", "not")}
_HEDGE = {vocab.WORD_TO_ID["careful"]}
_COURTESY = {vocab.WORD_TO_ID[w] for w in vocab.COURTESY_WORDS}
_DIGITS = set(vocab.DIGIT_IDS)


def scorer_accuracy(score_chosen: np.ndarray, score_rejected: np.ndarray) -> float:
  """Mean of [s(chosen) > s(rejected)] + 0.5 [tie] (module docstring)."""
  c, r = np.asarray(score_chosen, np.float64), np.asarray(score_rejected, np.float64)
  return float(np.mean((c > r) + 0.5 * (c == r)))


def _last_human(context: str) -> str:
  return context.rsplit(vocab.HUMAN, 1)[1].split(vocab.ASSISTANT)[0]


# name -> feature(last Human turn words, reply words, reply ids) -> float
SHORTCUTS: dict[str, Callable[[list[str], list[str], list[int]], float]] = {
    "length": lambda h, w, ids_: len(ids_),
    "contains_refusal": lambda h, w, ids_: not _REFUSAL.isdisjoint(ids_),
    "contains_digits": lambda h, w, ids_: not _DIGITS.isdisjoint(ids_),
    "repeats_prompt_number": lambda h, w, ids_: any(x.isdigit() and x in h for x in w),
    "contains_hedge": lambda h, w, ids_: not _HEDGE.isdisjoint(ids_),
    "contains_courtesy": lambda h, w, ids_: not _COURTESY.isdisjoint(ids_),
    "is_empty": lambda h, w, ids_: not w,
    "prompt_word_overlap": lambda h, w, ids_: sum(x in h for x in w) / max(len(w), 1),
    "distinct_tokens": lambda h, w, ids_: len(set(ids_)),
}


def _features(contexts: list[str], replies: list[str]) -> np.ndarray:
  """(B, n_shortcuts) shortcut features of replies."""
  out = np.zeros((len(replies), len(SHORTCUTS)))
  for b, (c, r) in enumerate(zip(contexts, replies)):
    h, w = _last_human(c).split(), r.split()
    ids_ = _TOK.encode(r)
    out[b] = [f(h, w, ids_) for f in SHORTCUTS.values()]
  return out


def shortcut_accuracies(cs: corpus.ComparisonSet) -> dict[str, float]:
  """Accuracy of every shortcut on a comparison set, in its better direction."""
  cols = cs.columns
  fc = _features(cols["context"], cols["chosen"])
  fr = _features(cols["context"], cols["rejected"])
  out = {}
  for j, name in enumerate(SHORTCUTS):
    acc = scorer_accuracy(fc[:, j], fr[:, j])
    out[name] = max(acc, 1.0 - acc)  # ties are symmetric, so reversing gives 1 - acc
  return out


def gold_scorer_accuracy(cs: corpus.ComparisonSet, reward: str) -> float:
  """Accuracy of ranking by one gold reward ("helpful" or "harmless") on the labels."""
  return scorer_accuracy(cs.columns[f"gold_{reward}_chosen"],
                         cs.columns[f"gold_{reward}_rejected"])


def example_dialogues(seed: int = 0, n: int = 6, world_seed: int = 0) -> list[dict]:
  """A few contexts with one base-policy reply each and its gold scores."""
  rng = np.random.default_rng([seed, 99])
  out = []
  for i in range(n):
    mix = tasks.HELPFUL_MIX if i % 2 == 0 else tasks.HARMLESS_MIX
    context = tasks.sample_context(rng, mix, world_seed)
    spec = tasks.parse_context(context, world_seed)
    other = policy.sample_reply(rng, context, world_seed)
    while other == spec.target_text:
      other = policy.sample_reply(rng, context, world_seed)
    replies = [spec.target_text, other]
    scores = gold.gold_scores_text([context] * 2, replies, world_seed)
    for j, reply in enumerate(replies):
      out.append({"context": context, "reply": reply, "task": spec.task,
                  **{k: round(float(v[j]), 3) for k, v in scores.items()}})
  return out


def _gold_seconds_per_256(seed: int = 0) -> float:
  prompts = corpus.sample_prompts(seed, 256)
  rng = np.random.default_rng(seed)
  ctx = [tuple(_TOK.encode(c)) for c in prompts]
  replies = rng.integers(0, len(vocab.WORDS), size=(256, 24))
  gold.gold_scores(ctx, replies)  # warm the context cache, as PPO reuses prompts
  t0 = time.perf_counter()
  for _ in range(10):
    gold.gold_scores(ctx, replies)
  return (time.perf_counter() - t0) / 10


def compute_stats(seed: int = 0, size: int = DEFAULT_SIZE, world_seed: int = 0) -> dict:
  """Every figure `hh-jax world stats` reports (see the Done-when list of the world)."""
  t0 = time.perf_counter()
  helpful = corpus.comparisons("helpful", seed, size, world_seed=world_seed)
  harmless = corpus.comparisons("harmless", seed, size, world_seed=world_seed)
  seconds = time.perf_counter() - t0
  mixed = corpus.mix_comparisons(helpful, harmless, seed, world_seed=world_seed)
  shortcuts = shortcut_accuracies(mixed)
  best = max(shortcuts, key=shortcuts.get)
  lengths = np.array([len(_TOK.encode(t)) for t in mixed.columns["chosen_full"]])
  tasks_all = mixed.columns["task"]
  return {
      "seed": seed,
      "world_seed": world_seed,
      "comparisons_per_subset": size,
      "vocab_size": _TOK.vocab_size,
      "bayes_ceiling_helpful": helpful.bayes_ceiling,
      "bayes_ceiling_harmless": harmless.bayes_ceiling,
      "bayes_ceiling_mixed": mixed.bayes_ceiling,
      "best_shortcut_accuracy_mixed": shortcuts[best],
      "best_shortcut_mixed": best,
      "shortcut_accuracies_mixed": shortcuts,
      "helpful_scorer_on_harmless": gold_scorer_accuracy(harmless, "helpful"),
      "harmless_scorer_on_helpful": gold_scorer_accuracy(helpful, "harmless"),
      "helpful_scorer_on_helpful": gold_scorer_accuracy(helpful, "helpful"),
      "harmless_scorer_on_harmless": gold_scorer_accuracy(harmless, "harmless"),
      "bayes_ceiling_by_task": {
          f"{sub}/{t}": _ceiling(cs, t) for sub, cs in (("helpful", helpful), ("harmless", harmless))
          for t in sorted(set(cs.columns["task"]))},
      "task_counts_mixed": {t: tasks_all.count(t) for t in sorted(set(tasks_all))},
      "transcript_tokens_mean": float(lengths.mean()),
      "transcript_tokens_max": int(lengths.max()),
      "fraction_transcripts_le_40_tokens": float(np.mean(lengths <= 40)),
      "fraction_two_turn": float(np.mean(mixed.columns["num_turns"] == 2)),
      "seconds_for_64k": seconds * 64_000 / (2 * size),
      "gold_seconds_per_256": _gold_seconds_per_256(seed),
      "examples": example_dialogues(seed, world_seed=world_seed),
  }


def _ceiling(cs: corpus.ComparisonSet, task: str) -> float:
  sel = np.array(cs.columns["task"]) == task
  p = np.asarray(cs.columns["p_chosen"], np.float64)[sel]
  return float(np.mean(np.maximum(p, 1.0 - p)))


def format_stats(stats: dict) -> str:
  """The text report of `hh-jax world stats`."""
  lines = ["# Synthetic HH world", "", "## Example dialogues (gold scores)"]
  for ex in stats["examples"]:
    lines.append((ex["context"] + ex["reply"]).replace("\n\n", " ").strip())
    lines.append(f"    [{ex['task']}] helpful={ex['helpful']:+.2f} harmless={ex['harmless']:+.2f}"
                 f" hh={ex['hh']:+.2f}")
  lines += ["", f"## Datasets (seed {stats['seed']}, {stats['comparisons_per_subset']} "
            "comparisons per subset)",
            f"vocab size {stats['vocab_size']}; transcript tokens mean "
            f"{stats['transcript_tokens_mean']:.1f}, max {stats['transcript_tokens_max']}, "
            f"{100 * stats['fraction_transcripts_le_40_tokens']:.1f}% <= 40; two-turn "
            f"{100 * stats['fraction_two_turn']:.1f}%",
            "tasks (mixed set): " + ", ".join(f"{k} {v}" for k, v in
                                                stats["task_counts_mixed"].items()),
            "Bayes ceiling by task: " + ", ".join(
                f"{k} {v:.3f}" for k, v in stats["bayes_ceiling_by_task"].items()),
            "", "## Done-when figures"]
  for key in ("bayes_ceiling_helpful", "bayes_ceiling_harmless", "bayes_ceiling_mixed",
              "best_shortcut_accuracy_mixed", "helpful_scorer_on_harmless",
              "harmless_scorer_on_helpful", "helpful_scorer_on_helpful",
              "harmless_scorer_on_harmless", "seconds_for_64k", "gold_seconds_per_256"):
    lines.append(f"{key:<32} {stats[key]:.4f}")
  lines.append(f"best shortcut: {stats['best_shortcut_mixed']}; all: " + ", ".join(
      f"{k} {v:.3f}" for k, v in stats["shortcut_accuracies_mixed"].items()))
  return "\n".join(lines)
