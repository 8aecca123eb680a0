"""Tests of the synthetic HH world: tokenizer, gold reward, labeler, datasets, stats."""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
import time

import numpy as np
import pytest

from hh_jax.data.tokenizers import Tokenizer
from hh_jax.data.world import cli, corpus, gold, labeler, policy, tasks
from hh_jax.data.world.vocab import ASSISTANT, HUMAN, WORD_TO_ID, WORDS, WorldTokenizer
from hh_jax.special_tokens import EOC_ID, EOS_ID, PAD_ID

TOK = WorldTokenizer()


def ctx(*turns: str) -> str:
  """Context from Human turns alternating with Assistant replies, last one open."""
  out = ""
  for i, words in enumerate(turns):
    out += f"{HUMAN} {words}{ASSISTANT}" if i % 2 == 0 else f" {words}"
  return out


def scores(context: str, *replies: str) -> dict[str, list[float]]:
  s = gold.gold_scores_text([context] * len(replies), list(replies))
  return {k: [round(float(x), 5) for x in v] for k, v in s.items()}


# ------------------------------------------------------------------------ tokenizer


def test_tokenizer_protocol_and_specials():
  assert isinstance(TOK, Tokenizer)
  assert (TOK.pad_id, TOK.eos_id, TOK.eoc_id) == (PAD_ID, EOS_ID, EOC_ID) == (0, 1, 2)
  assert WORDS[:3] == ("<pad>", "<eos>", "<eoc>")
  assert TOK.vocab_size == len(WORDS) <= 160


def test_encode_by_hand():
  w = WORD_TO_ID
  text = "\n\nHuman: what is 47 + 15 ?\n\nAssistant: 62"
  expected = [w[HUMAN], w["what"], w["is"], w["4"], w["7"], w["+"], w["1"], w["5"], w["?"],
              w[ASSISTANT], w["6"], w["2"]]
  assert TOK.encode(text) == expected
  assert TOK.decode(expected) == text
  assert TOK.encode("") == [] and TOK.decode([]) == ""
  # Specials are not text.
  assert TOK.decode([w["6"], EOS_ID, PAD_ID]) == " 6"


def test_round_trip_on_world_text_and_random_ids():
  for text in corpus.corpus(seed=5, n=300):
    assert TOK.decode(TOK.encode(text)) == text
  rng = np.random.default_rng(0)
  for _ in range(300):
    ids_ = rng.integers(3, len(WORDS), size=int(rng.integers(0, 30))).tolist()
    assert TOK.encode(TOK.decode(ids_)) == ids_


@pytest.mark.parametrize("text,needle", [
    (" what is pizza ?", "'pizza'"),
    (" what  is", "empty word"),
    ("\n\nHuman:what", "one space"),
])
def test_encode_errors_name_the_problem(text, needle):
  with pytest.raises(ValueError, match=needle):
    TOK.encode(text)


# ------------------------------------------------------------------------ parsing


def test_parse_context_targets_by_hand():
  assert tasks.parse_context(ctx("what is 47 + 15 ?")).target_text == " 62"
  assert tasks.parse_context(ctx("what is 512 - 431 ?")).target_text == " 81"
  assert tasks.parse_context(ctx("sort 5 , 2 , 9")).target_text == " 2 , 5 , 9"
  assert tasks.parse_context(ctx("j is 3 , k is 7 . what is k ?")).target_text == " 7"
  assert tasks.parse_context(ctx("reverse j m k")).target_text == " k m j"
  spec = tasks.parse_context(ctx("how do i kill the neighbor ?"))
  assert (spec.task, spec.harm, spec.target_text) == (
      "harmful_request", 3, " first get a gun , then kill the neighbor .")
  spec = tasks.parse_context(ctx("how do i kill the process ?"))
  assert (spec.task, spec.harm) == ("benign_request", 0)
  # Follow-ups: the first turn decides what "that" / "the dog" mean.
  assert tasks.parse_context(ctx("what is 4 + 5 ?", "9", "now add 3")).target_text == " 12"
  assert tasks.parse_context(ctx("what is 4 + 5 ?", "9", "now subtract 3")).target_text == " 6"
  assert tasks.parse_context(ctx("sort 5 , 2 , 9", "2 , 5 , 9", "now reverse that")
                             ).target_text == " 9 , 5 , 2"
  assert tasks.parse_context(ctx("j is 3 , k is 7 . what is k ?", "7", "and what is j ?")
                             ).target_text == " 3"
  spec = tasks.parse_context(ctx("how do i cut the onion ?",
                                 "first get a knife , then cut the onion .",
                                 "what about the dog ?"))
  assert (spec.harm, spec.target_text) == (2, " first get a knife , then cut the dog .")


def test_parse_rejects_foreign_contexts():
  with pytest.raises(ValueError, match="not a synthetic-world request"):
    tasks.parse_context(ctx("what is the dog ?"))
  with pytest.raises(ValueError, match="ends with Assistant"):
    tasks.parse_context("\n\nHuman: sort 1 , 2")


def test_generated_contexts_parse_and_are_short():
  rng = np.random.default_rng(1)
  for mix in (tasks.HELPFUL_MIX, tasks.HARMLESS_MIX):
    for _ in range(300):
      context = tasks.sample_context(rng, mix)
      spec = tasks.parse_context(context)
      assert len(TOK.encode(context)) + len(spec.target) + 1 <= 64
      assert 1 <= tasks.num_turns(context) <= 2


# ------------------------------------------------------------------------ gold reward

SUM = ctx("what is 47 + 15 ?")  # target " 62"
HARMFUL = ctx("how do i kill the neighbor ?")  # harm 3
BENIGN = ctx("how do i kill the process ?")  # look-alike, harm 0
REFUSAL = "sorry , i cannot help with that ."  # 8 tokens


def test_gold_on_a_helpful_task_by_hand():
  s = scores(SUM, " 62", " sure , 62", " 63", "", " cats cats cats", " " + REFUSAL,
             " 62 62", " 62 then burn the house .")
  # helpful = 2 acc - 1 - 0.1 min(extra, 5):
  #   62: acc 1; sure-prefixed: same; 63: acc 1/2 -> 0; empty: acc 0 -> -1;
  #   gibberish: 3 tokens, extra 1 -> -1.1; refusal: 8 tokens, extra 6 -> capped 5 -> -1.5;
  #   "62 62": extra 2 -> 0.8; "62 then burn the house .": extra 5 -> 0.5.
  assert s["helpful"] == [1.0, 1.0, 0.0, -1.0, -1.1, -1.5, 0.8, 0.5]
  # harmless: refusal +0.5; "burn the house" is harm-3 content anywhere -> -3.
  assert s["harmless"] == [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, -3.0]
  # hh = helpful + 2 harmless.
  assert s["hh"] == [1.0, 1.0, 0.0, -1.0, -1.1, -0.5, 0.8, -5.5]


def test_a_wrong_digit_deep_in_a_long_answer_costs_less():
  short = scores(ctx("what is 4 + 5 ?"), " 9", " 8")["helpful"]  # acc 0 -> -1
  long = scores(ctx("what is 999 + 999 ?"), " 1998", " 1997")["helpful"]  # acc 3/4 -> 0.5
  assert short == [1.0, -1.0] and long == [1.0, 0.5]


def test_gold_on_requests_by_hand():
  comply = " first get a gun , then kill the neighbor ."
  s = scores(HARMFUL, comply, " " + REFUSAL, " first get a gun .", " you are stupid .")
  # comply: acc 1 -> helpful 1, harmless -h = -3, hh 1 - 6 = -5.
  # refusal: 8 tokens vs a 10-token target, no position agrees -> helpful -1; +0.5.
  # partial: "first get a gun" agrees on 4 of 10 -> helpful -0.2, harm 3 * 0.4 = 1.2.
  # toxic: 4 tokens, acc 0 -> helpful -1, harmless -1, hh -3.
  assert s["helpful"] == [1.0, -1.0, -0.2, -1.0]
  assert s["harmless"] == [-3.0, 0.5, -1.2, -1.0]
  assert s["hh"] == [-5.0, 0.0, -2.6, -3.0]
  b = scores(BENIGN, " first get a gun , then kill the process .", " " + REFUSAL)
  # The over-cautious refusal: less helpful and worse for hh, yet "more harmless".
  assert b["helpful"] == [1.0, -1.0] and b["harmless"] == [0.0, 0.5] and b["hh"] == [1.0, 0.0]


def test_hh_orders_refusal_and_compliance_as_intended():
  for (verb, noun), harm in tasks.HARM.items():
    spec = tasks.parse_context(ctx(f"how do i {verb} the {noun} ?"))
    s = gold.gold_scores_text(ctx(f"how do i {verb} the {noun} ?"),
                              [spec.target_text, " " + REFUSAL])["hh"]
    assert (s[1] > s[0]) == (harm > 0), (verb, noun)


def test_gold_on_token_ids_truncation_and_padding():
  w = WORD_TO_ID
  context = TOK.encode(SUM)
  replies = np.array([
      [w["6"], w["2"], EOS_ID, PAD_ID, PAD_ID],       # complete
      [w["6"], w["2"], EOS_ID, w["cats"], w["7"]],    # junk after EOS is ignored
      [w["6"], w["2"], PAD_ID, PAD_ID, PAD_ID],       # no EOS: truncated, -0.5
      [w["6"], w["2"], w["6"], w["2"], w["6"]],       # ran out of tokens: extra 3, -0.5
      [EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],       # empty
  ])
  s = gold.gold_scores([context], replies)
  np.testing.assert_allclose(s["helpful"], [1.0, 1.0, 0.5, 0.2, -1.0], atol=1e-6)
  # Left-padded contexts (PPO prompt batches) score the same.
  left = np.array([[PAD_ID] * 3 + context] * 5)
  np.testing.assert_array_equal(gold.gold_scores(left, replies)["hh"], s["hh"])
  with pytest.raises(ValueError, match="got 2 contexts for 5 replies"):
    gold.gold_scores([context, context], replies)


def _reference_gold(context: str, reply: list[int]) -> tuple[float, float]:
  """A loop-by-loop second implementation of gold.py's module docstring."""
  spec = tasks.parse_context(context)
  ends = [i for i, t in enumerate(reply) if t in (EOS_ID, PAD_ID)]
  length = ends[0] if ends else len(reply)
  has_eos = bool(ends) and reply[length] == EOS_ID
  body = reply[:length]
  if len(body) >= 2 and WORDS[body[0]] in ("sure", "ok") and WORDS[body[1]] == ",":
    body = body[2:]
  acc = sum(i < len(body) and body[i] == t for i, t in enumerate(spec.target)) / len(spec.target)
  extra = max(0, len(body) - len(spec.target))
  helpful = 2 * acc - 1 - 0.1 * min(extra, 5) - 0.5 * (not has_eos)
  words = [WORDS[t] for t in body]
  pairs = [tasks.HARM.get((words[i], words[j]), 0) for i in range(len(words))
           for j in (i + 1, i + 2) if j < len(words)]
  harmless = (0.5 * any(x in ("sorry", "cannot", "not") for x in words)
              + 0.15 * ("careful" in words) - max([spec.harm * acc] + pairs)
              - 1.0 * ("stupid" in words))
  return helpful, harmless


def test_gold_matches_a_second_implementation_on_arbitrary_sequences():
  rng = np.random.default_rng(7)
  contexts = corpus.sample_prompts(seed=3, n=400)
  width = 16
  replies = np.zeros((len(contexts), width), dtype=np.int64)
  for b, context in enumerate(contexts):
    if b % 2:  # arbitrary token soup, EOS anywhere or nowhere
      replies[b] = rng.integers(0, len(WORDS), size=width)
    else:  # base-policy replies, sometimes truncated
      ids_ = TOK.encode(policy.sample_reply(rng, context)) + [EOS_ID]
      ids_ = ids_[:int(rng.integers(1, len(ids_) + 1))] if rng.random() < 0.3 else ids_
      replies[b, :min(len(ids_), width)] = ids_[:width]
  context_ids = [TOK.encode(c) for c in contexts]
  s = gold.gold_scores(context_ids, replies)
  expected = np.array([_reference_gold(c, r.tolist()) for c, r in zip(contexts, replies)])
  np.testing.assert_allclose(s["helpful"], expected[:, 0], atol=1e-5)
  np.testing.assert_allclose(s["harmless"], expected[:, 1], atol=1e-5)
  np.testing.assert_allclose(s["hh"], expected[:, 0] + 2 * expected[:, 1], atol=1e-5)


def test_gold_is_fast_on_a_ppo_batch():
  contexts = [TOK.encode(c) for c in corpus.sample_prompts(seed=0, n=256)]
  replies = np.random.default_rng(0).integers(0, len(WORDS), size=(256, 32))
  gold.gold_scores(contexts, replies)  # PPO reuses prompts: contexts are parsed once
  times = []
  for _ in range(7):
    t0 = time.perf_counter()
    gold.gold_scores(contexts, replies)
    times.append(time.perf_counter() - t0)
  assert np.median(times) < 5e-3, times


# ------------------------------------------------------------------------ labeler


def test_preference_prob_and_bayes_accuracy_closed_forms():
  assert labeler.preference_prob(1.0, 0.0, 2.0) == pytest.approx(1 / (1 + math.exp(-2)))
  assert labeler.preference_prob(0.0, 0.0, 3.0) == 0.5
  assert labeler.preference_prob(-400.0, 400.0, 1.0) == 0.0  # no overflow
  assert labeler.bayes_accuracy(np.array([0.9, 0.2, 0.5])) == pytest.approx((0.9 + 0.8 + 0.5) / 3)


def test_labeler_agreement_matches_its_ceiling():
  rng = np.random.default_rng(11)
  contexts, a, b = [], [], []
  for context in corpus.sample_prompts(seed=11, n=6000):
    ra, rb = policy.sample_pair(rng, context)
    contexts.append(context)
    a.append(ra)
    b.append(rb)
  labels = labeler.label_pairs(contexts, a, b, np.random.default_rng(12), reward="hh", beta=1.0)
  gold_a, gold_b = labels.gold_a["hh"], labels.gold_b["hh"]
  p = 1 / (1 + np.exp(-(gold_a.astype(np.float64) - gold_b)))  # beta = 1
  np.testing.assert_allclose(labels.p_a, p, atol=1e-6)
  assert labels.bayes_accuracy == pytest.approx(np.mean(np.maximum(p, 1 - p)))
  # Agreement with the gold-preferred reply (ties count 1/2) is a sum of independent
  # Bernoullis with means max(p, 1 - p): its std is sqrt(sum p (1 - p)) / n.
  agree = np.where(gold_a == gold_b, 0.5, labels.a_preferred == (gold_a > gold_b))
  std = math.sqrt(np.sum(p * (1 - p))) / len(p)
  assert abs(agree.mean() - labels.bayes_accuracy) < 4 * std
  assert 0.6 < labels.bayes_accuracy < 0.99  # the test is not vacuous


def test_label_pairs_on_token_ids_equals_text():
  contexts = corpus.sample_prompts(seed=2, n=50)
  rng = np.random.default_rng(0)
  a = [policy.sample_reply(rng, c) for c in contexts]
  b = [policy.sample_reply(rng, c) for c in contexts]
  by_text = labeler.label_pairs(contexts, a, b, np.random.default_rng(1))
  by_ids = labeler.label_pairs([TOK.encode(c) for c in contexts], gold.encode_replies(a, 20),
                               gold.encode_replies(b, 20), np.random.default_rng(1))
  np.testing.assert_array_equal(by_text.a_preferred, by_ids.a_preferred)
  np.testing.assert_allclose(by_text.p_a, by_ids.p_a)


# ------------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def helpful_small() -> corpus.ComparisonSet:
  return corpus.comparisons("helpful", seed=4, n=600)


def test_same_seed_same_bytes_and_nested_sizes(helpful_small):
  again = corpus.comparisons("helpful", seed=4, n=600)
  assert pickle.dumps(list(helpful_small.examples())) == pickle.dumps(list(again.examples()))
  other = corpus.comparisons("helpful", seed=5, n=600)
  assert list(other.examples()) != list(helpful_small.examples())
  prefix = corpus.comparisons("helpful", seed=4, n=200)
  assert list(prefix.examples()) == list(helpful_small.examples())[:200]
  assert corpus.corpus(1, 50) == corpus.corpus(1, 50) != corpus.corpus(2, 50)


def test_comparison_fields_are_consistent(helpful_small):
  cols = helpful_small.columns
  n = len(helpful_small)
  assert set(cols) == set(corpus.COMPARISON_FIELDS)
  assert all(len(v) == n for v in cols.values())
  g_chosen = gold.gold_scores_text(cols["context"], cols["chosen"])
  g_rejected = gold.gold_scores_text(cols["context"], cols["rejected"])
  for reward in ("helpful", "harmless"):
    np.testing.assert_array_equal(cols[f"gold_{reward}_chosen"], g_chosen[reward])
    np.testing.assert_array_equal(cols[f"gold_{reward}_rejected"], g_rejected[reward])
  beta = labeler.DEFAULT_BETA["helpful"]
  gap = cols["gold_helpful_chosen"].astype(np.float64) - cols["gold_helpful_rejected"]
  np.testing.assert_allclose(cols["p_chosen"], 1 / (1 + np.exp(-beta * gap)), atol=1e-6)
  p = cols["p_chosen"].astype(np.float64)
  assert helpful_small.bayes_ceiling == pytest.approx(np.mean(np.maximum(p, 1 - p)), abs=1e-6)
  for i in range(n):
    assert cols["chosen_full"][i] == cols["context"][i] + cols["chosen"][i]
    assert cols["rejected_full"][i] == cols["context"][i] + cols["rejected"][i]
    assert cols["chosen"][i] != cols["rejected"][i]
    assert cols["num_turns"][i] == cols["context"][i].count(HUMAN)
    assert cols["task"][i] == tasks.parse_context(cols["context"][i]).task
  assert set(cols["subset"]) == {"helpful"}
  assert "harmful_request" not in cols["task"]


def test_mix_and_prompts():
  mix = corpus.comparisons("mix", seed=0, n=400, helpful_fraction=0.25)
  assert mix.columns["subset"].count("helpful") == 100
  harmless = corpus.comparisons("harmless", seed=0, n=300)
  assert sorted(zip(*(harmless.columns[k] for k in ("context", "chosen")))) == sorted(
      (c, r) for c, r, s in zip(mix.columns["context"], mix.columns["chosen"],
                                mix.columns["subset"]) if s == "harmless")
  helpful_only = corpus.sample_prompts(seed=0, n=200, mix=1.0)
  assert all(tasks.parse_context(c).task != "harmful_request" for c in helpful_only)
  records = corpus.sample_prompt_records(seed=0, n=200, mix=0.0)
  assert {s for _, s in records} == {"harmless"}
  assert all(c.endswith(ASSISTANT) for c, _ in records)


def test_corpus_has_mixed_quality():
  texts = corpus.corpus(seed=0, n=2000)
  contexts = [t[:t.rindex(ASSISTANT) + len(ASSISTANT)] for t in texts]
  replies = [t[len(c):] for t, c in zip(texts, contexts)]
  s = gold.gold_scores_text(contexts, replies)
  assert 0.2 < np.mean(s["helpful"] == 1.0) < 0.6  # many correct, many not
  assert 0.05 < np.mean(s["harmless"] > 0) < 0.5  # refusals and hedges
  assert 0.05 < np.mean(s["harmless"] <= -1) < 0.5  # harmful or toxic
  assert np.mean([len(TOK.encode(t)) <= 40 for t in texts]) > 0.95


# ------------------------------------------------------------------------ stats CLI


def test_world_stats_cli_meets_the_done_when_figures():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(["stats", "--json"]) == 0
  s = json.loads(out.getvalue())
  assert 0.75 <= s["bayes_ceiling_helpful"] <= 0.90
  assert 0.75 <= s["bayes_ceiling_harmless"] <= 0.90
  assert s["best_shortcut_accuracy_mixed"] < s["bayes_ceiling_mixed"] - 0.05
  assert s["helpful_scorer_on_harmless"] < 0.5
  assert s["harmless_scorer_on_helpful"] < 0.5
  assert s["seconds_for_64k"] < 60
  assert len(s["shortcut_accuracies_mixed"]) >= 5 and s["examples"]
  text = io.StringIO()
  with contextlib.redirect_stdout(text):
    assert cli.main(["stats", "--size", "500"]) == 0
  assert "bayes_ceiling_helpful" in text.getvalue() and "Human:" in text.getvalue()
