"""Held-out policy evaluation: exact answers against a direct string comparison, capability by
hand, the policy_eval run's wiring, and the alignment-tax and context-distillation statistics
against hand-computed paired t intervals."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from analysis import criteria as crit
from analysis import policy_evals, report
from analysis.runs import find_runs
from hh_jax import models
from hh_jax.data.world import corpus, gold, tasks, vocab
from hh_jax.eval import capability
from hh_jax.train import evals, lifecycle, tasks as run_tasks

TOK = vocab.WorldTokenizer()
T2 = 4.303                      # t_{0.975, 2}, as tabulated to 4 significant digits


def _direct_exact(context: str, reply: str, ended: bool) -> bool:
  """The reply's words, after an optional "sure ," / "ok ,", are the target's, and it ended."""
  words = reply.split()
  if len(words) >= 2 and words[0] in ("sure", "ok") and words[1] == ",":
    words = words[2:]
  return ended and " ".join(words) == tasks.parse_context(context).target_text.strip()


def test_exact_answers_agree_with_a_direct_string_comparison():
  contexts = [c for c, s in corpus.sample_prompt_records(0, 60, mix=1.0)
              if tasks.parse_context(c).family != "request"][:30]
  cases, ended = [], []
  for i, c in enumerate(contexts):
    target = tasks.parse_context(c).target_text
    cut = " ".join(target.split()[:-1])
    for reply in (target, " sure ," + target, target + " .", " " + cut if cut else " 7", " red", ""):
      cases.append((c, reply))
      ended.append(True)
  rows = gold.encode_replies([r for _, r in cases], width=24)
  rows[-6:] = np.where(rows[-6:] == 1, 0, rows[-6:])       # the last context's replies: no EOS
  ended[-6:] = [False] * 6
  helpful = gold.gold_scores([tuple(TOK.encode(c)) for c, _ in cases], rows)["helpful"]
  direct = [_direct_exact(c, r, e) for (c, r), e in zip(cases, ended)]
  assert capability.exact_answers(helpful).tolist() == direct
  assert 0 < sum(direct) < len(direct)


def test_capability_is_the_unweighted_mean_over_the_task_families():
  exact = np.array([1, 0, 1, 1, 0], bool)
  families = np.array(["arithmetic", "arithmetic", "fact", "harmful_request", "fact"])
  # arithmetic 1/2, fact 1/2; the request is not a capability family.
  assert capability.capability(exact, families) == pytest.approx(0.5)
  assert capability.capability(exact[[0, 2]], families[[0, 2]]) == pytest.approx(1.0)
  assert math.isnan(capability.capability(exact[[3]], families[[3]]))


def _fake_ppo_run(root, size="1k", max_len=64):
  cfg = models.ladder_config(size, vocab_size=TOK.vocab_size, max_len=max_len)
  _, params = models.init(cfg, jax.random.key(0))
  init = str(root / "base_lm" / size)
  for run, config in ((init, {"kind": "lm", "model_size": size}),
                      (str(root / "ppo" / f"policy-{size}-pm-1k-s0"), {"kind": "ppo"})):
    lifecycle.save_model(run, cfg, params)
    lifecycle.write_json(run, lifecycle.CONFIG, {**config, "policy_init": init})
    lifecycle.write_json(run, lifecycle.SUMMARY, {"kind": config["kind"]})
  return str(root / "ppo" / f"policy-{size}-pm-1k-s0")


def test_a_policy_eval_run_scores_both_policies_on_the_same_prompts(tmp_path):
  ppo_run = _fake_ppo_run(tmp_path)
  prompts = np.asarray([TOK.encode(c) for c in corpus.sample_prompts(0, 16)], dtype=object)
  from hh_jax.data.pipeline import left_pad
  prompts = left_pad(list(prompts), 47)
  cfg = evals.PolicyEvalConfig(ppo_run=ppo_run, prompt_dataset="hh_synth/prompts", prompt_len=47,
                               num_prompts=16, max_new_tokens=16)
  run = str(tmp_path / "policy_eval" / "policy-1k-pm-1k-s0")
  run_tasks.run_config(cfg, run, inputs=prompts, progress=False)
  result = json.load(open(f"{run}/policy_eval.json"))
  # The final policy is the initial one here: the same params and keys give the same numbers.
  assert result["initial"] == result["final"]
  assert result["init_kind"] == "lm" and result["ppo_run"] == "policy-1k-pm-1k-s0"
  assert set(result["initial"]["gold_hh_by_family"]) == set(
      tasks.parse_context(c).task for c in corpus.sample_prompts(0, 16))
  rec = policy_evals.eval_record(find_runs(str(tmp_path / "policy_eval"), "policy_eval")[0])
  assert rec["seed"] == 0 and rec["config"] == "policy-1k-pm-1k"


def test_the_evaluation_samples_the_policy_ppo_trained_without_turn_markers():
  """With banned_ids (what policy_eval passes: the world's turn markers) neither decode emits
  one; the same near-uniform random model emits them without the ban."""
  cfg = models.ladder_config("1k", vocab_size=TOK.vocab_size, max_len=64)
  graphdef, params = models.init(cfg, jax.random.key(0))
  model = lifecycle.Model(graphdef=graphdef, params=params, cfg=cfg)
  from hh_jax.data.pipeline import left_pad, turn_marker_ids
  prompts = left_pad([TOK.encode(c) for c in corpus.sample_prompts(0, 64)], 47)
  markers = turn_marker_ids("hh_synth/prompts")
  assert markers == (vocab.HUMAN_ID, vocab.ASSISTANT_ID)
  seen = []

  def gold_fn(p, reply):
    seen.append(np.asarray(reply))
    return gold.gold_scores([tuple(r) for r in np.asarray(p)], np.asarray(reply))

  families = np.array([tasks.parse_context(c).task for c in corpus.sample_prompts(0, 64)])
  for banned, expect_markers in (((), True), (markers, False)):
    seen.clear()
    capability.evaluate_policy(model, prompts, families, gold_fn, max_new_tokens=16,
                               banned_ids=banned)
    emitted = np.isin(np.concatenate(seen), markers).any()
    assert emitted == expect_markers


def _record(params, seed, cap0, cap1, gold0=0.0, gold1=0.0, kind="lm"):
  side = lambda c, g: {"capability": c, "gold_hh": g, "gold_helpful": g, "gold_harmless": 0.0}  # noqa: E731
  return {"run": f"r{params}-{kind}-s{seed}", "config": f"c{params}{kind}", "seed": seed,
          "params": params, "init_kind": kind, "initial": side(cap0, gold0),
          "final": side(cap1, gold1)}


def _inputs(tax_small, tax_large, cd_final, cd_init):
  recs = []
  for s in range(3):
    recs.append(_record(1000, s, 0.3, 0.3 + tax_small[s]))
    recs.append(_record(25000, s, 0.5, 0.5 + tax_large[s], gold0=0.1, gold1=0.4))
    recs.append(_record(25000, s, 0.5, 0.5, gold0=0.1 + cd_init[s], gold1=0.4 + cd_final[s],
                        kind="distill"))
  result = {"tax": policy_evals.tax_table(recs), "context_distillation": policy_evals.cd_table(recs)}
  return {"policy_eval": json.loads(json.dumps(result))}        # as the report reads it back


def test_the_tax_and_distillation_statistics_are_paired_t_intervals():
  inputs = _inputs(tax_small=[-0.10, -0.12, -0.08], tax_large=[0.0, 0.0, 0.03],
                   cd_final=[0.1, 0.2, 0.3], cd_init=[0.05, 0.05, 0.08])
  tax = policy_evals.alignment_tax_statistic(inputs)
  # d = (0.10, 0.12, 0.11): mean 0.11, sd 0.01.
  assert tax["values"]["value"] == pytest.approx(0.11)
  assert tax["values"]["ci_low"] == pytest.approx(0.11 - T2 * 0.01 / math.sqrt(3))
  assert tax["counts"] == {"seeds": 3, "sizes": 2}
  cd = policy_evals.cd_gold_statistic(inputs)
  assert cd["values"]["value"] == pytest.approx(0.2)
  assert cd["values"]["ci_high"] == pytest.approx(0.2 + T2 * 0.1 / math.sqrt(3))
  assert cd["values"]["init"] == pytest.approx(0.06)


def _verdicts(inputs):
  spec = {c["id"]: c for c in crit.load_criteria()["claims"]}
  chosen = [spec["alignment_tax_by_size"], spec["context_distillation_init"]]
  return {c["id"]: c["verdict"] for c in report.judge_claims({"claims": chosen}, inputs, None)}


def test_both_claims_hold_fail_and_go_untested_as_their_criteria_say():
  good = _inputs([-0.10, -0.12, -0.08], [0.0, 0.0, 0.03], [0.1, 0.15, 0.2], [0.05, 0.05, 0.08])
  assert set(_verdicts(good).values()) == {"held"}
  bad = _inputs([-0.10, 0.12, 0.0], [0.0, 0.0, 0.03], [0.1, -0.2, 0.3], [0.05, 0.05, 0.08])
  assert set(_verdicts(bad).values()) == {"not held"}
  # PPO from the distilled model ends higher, but it did not start higher: not held.
  init_only = _inputs([-0.10, -0.12, -0.08], [0.0, 0.0, 0.03], [0.1, 0.15, 0.2], [0.05, -0.05, 0.0])
  assert _verdicts(init_only)["context_distillation_init"] == "not held"
  assert set(_verdicts({"policy_eval": None}).values()) == {"not tested"}
