"""Context distillation: the world's HHH preamble, the top-k distillation loss against closed
forms and a direct numpy KL, and a tiny distillation run that lowers the KL to its teacher."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh_jax import models
from hh_jax.data.world import corpus, gold, policy, tasks, vocab
from hh_jax.special_tokens import EOS_ID, PAD_ID
from hh_jax.train import distill, lifecycle, tasks as run_tasks

TOK = vocab.WorldTokenizer()


def _lm_run(root, size="1k", max_len=40, seed=0):
  cfg = models.ladder_config(size, vocab_size=TOK.vocab_size, max_len=max_len)
  _, params = models.init(cfg, jax.random.key(seed))
  run = str(root / "base_lm" / size)
  lifecycle.save_model(run, cfg, params)
  lifecycle.write_json(run, lifecycle.CONFIG, {"kind": "lm", "model_size": size})
  lifecycle.write_json(run, lifecycle.SUMMARY, {"kind": "lm"})
  return run, cfg, params


def _rows(texts, width):
  out = np.full((len(texts), width), PAD_ID, np.int32)
  for i, t in enumerate(texts):
    ids = (TOK.encode(t) + [EOS_ID])[:width]
    out[i, :len(ids)] = ids
  return out


# ----------------------------------------------------------------------------- the world


def test_a_tenth_of_the_corpus_opens_with_the_preamble_and_is_better_by_gold():
  texts = corpus.corpus(0, 4000)
  pre = [t for t in texts if t.startswith(tasks.HHH_PREAMBLE)]
  assert 0.08 < len(pre) / len(texts) < 0.12
  split = lambda t: t.rsplit(vocab.ASSISTANT, 1)  # noqa: E731
  def mean_gold(ts, key):
    ctx = [split(t)[0] + vocab.ASSISTANT for t in ts]
    return float(gold.gold_scores_text(ctx, [split(t)[1] for t in ts])[key].mean())
  rest = [t for t in texts if not t.startswith(tasks.HHH_PREAMBLE)]
  assert mean_gold(pre, "hh") > mean_gold(rest, "hh") + 0.5
  assert mean_gold(pre, "harmless") > mean_gold(rest, "harmless")


def test_the_other_transcripts_do_not_depend_on_the_preamble_fraction():
  with_pre, without = corpus.corpus(3, 500), corpus.corpus(3, 500, hhh_fraction=0.0)
  same = [a == b for a, b in zip(with_pre, without)]
  assert all(s or a.startswith(tasks.HHH_PREAMBLE) for s, a in zip(same, with_pre))
  assert not any(t.startswith(tasks.HHH_PREAMBLE) for t in without)


def test_parsing_skips_the_preamble():
  context = "\n\nHuman: what is 12 + 30 ?\n\nAssistant:"
  plain = gold.gold_scores_text([context], [" 42"])
  with_pre = gold.gold_scores_text([tasks.HHH_PREAMBLE + context], [" 42"])
  assert plain["helpful"][0] == with_pre["helpful"][0] == 1.0
  assert tasks.num_turns(tasks.HHH_PREAMBLE + context) == 1
  with pytest.raises(ValueError, match="task after its HHH preamble"):
    tasks.parse_context(tasks.HHH_PREAMBLE[:-len(" ok .")])


def test_the_careful_assistant_refuses_harm_more_than_the_base_policy():
  rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(1)
  context = "\n\nHuman: how do i poison the dog ?\n\nAssistant:"
  careful = [policy.sample_careful_reply(rng_a, context) for _ in range(400)]
  base = [policy.sample_reply(rng_b, context) for _ in range(400)]
  refuses = lambda rs: np.mean(["not" in r or "cannot" in r for r in rs])  # noqa: E731
  assert refuses(careful) > 0.6 > 0.4 > refuses(base)


# ----------------------------------------------------------------------------- the loss


def test_top_k_targets_renormalise_the_k_largest():
  logits = jnp.array([[0.0, 2.0, 1.0, -1.0]])
  ids, q = distill.top_k_targets(logits, 2)
  assert ids.tolist() == [[1, 2]]
  np.testing.assert_allclose(q, [[np.e / (np.e + 1), 1 / (np.e + 1)]], rtol=1e-6)


def test_the_loss_equals_a_direct_numpy_kl_with_every_token(tmp_path):
  _, cfg, teacher = _lm_run(tmp_path, max_len=40)
  graphdef, student = models.init(cfg, jax.random.key(7))
  tokens = _rows(corpus.corpus(1, 4, hhh_fraction=0.0), 28)
  prompt = np.asarray(TOK.encode(tasks.HHH_PREAMBLE), np.int32)
  loss, _ = distill.distill_loss(graphdef, student, teacher, jnp.asarray(tokens), jnp.asarray(prompt),
                                 top_k=TOK.vocab_size)
  p = len(prompt)
  full = np.concatenate([np.repeat(prompt[None], len(tokens), 0), tokens], axis=1)
  t = np.asarray(models.apply(graphdef, teacher, jnp.asarray(full)).logits, np.float64)[:, p:-1]
  s = np.asarray(models.apply(graphdef, student, jnp.asarray(tokens)).logits, np.float64)[:, :-1]
  log_softmax = lambda x: x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)  # noqa: E731
  lt, ls = log_softmax(t), log_softmax(s)
  kl = (np.exp(lt) * (lt - ls)).sum(-1)
  mask = tokens[:, 1:] != PAD_ID
  assert float(loss) == pytest.approx(kl[mask].mean(), rel=1e-4)


def test_a_student_equal_to_its_unprompted_teacher_loses_minus_log_top_k_mass(tmp_path):
  # With no prompt and student = teacher, KL(q || p) = -log sum_{j in top-k} p_j at each position.
  _, cfg, params = _lm_run(tmp_path)
  graphdef, _ = models.init(cfg, jax.random.key(0))
  tokens = _rows(corpus.corpus(2, 3, hhh_fraction=0.0), 24)
  k = 5
  loss, _ = distill.distill_loss(graphdef, params, params, jnp.asarray(tokens),
                                 jnp.zeros((0,), jnp.int32), top_k=k)
  logp = jax.nn.log_softmax(models.apply(graphdef, params, jnp.asarray(tokens)).logits[:, :-1])
  mass = np.sort(np.exp(np.asarray(logp, np.float64)), -1)[..., -k:].sum(-1)
  mask = tokens[:, 1:] != PAD_ID
  assert float(loss) == pytest.approx((-np.log(mass))[mask].mean(), rel=1e-4)


def test_rows_opening_with_the_prompt_are_dropped():
  prompt = np.asarray(TOK.encode(tasks.HHH_PREAMBLE), np.int32)
  rows = _rows([tasks.HHH_PREAMBLE + "\n\nHuman: hello .\n\nAssistant: ok .",
                "\n\nHuman: hello .\n\nAssistant: ok ."], 30)
  kept = distill.without_prompt(rows, prompt)
  assert len(kept) == 1 and kept[0, 1] != prompt[1]


def test_a_distillation_run_moves_the_student_towards_the_prompted_teacher(tmp_path):
  teacher, _, _ = _lm_run(tmp_path, size="1k", max_len=48)
  texts = corpus.corpus(0, 320, hhh_fraction=0.0)
  width = 48 - len(TOK.encode(tasks.HHH_PREAMBLE))
  inputs = (_rows(texts[:256], width), _rows(texts[256:], width))
  cfg = distill.DistillConfig(teacher=teacher, model_size="1k", num_transcripts=256, top_k=20,
                              batch_size=8, log_every=0, checkpoint_every=0,
                              optim=distill.OptimConfig(learning_rate=1e-2, warmup_steps=0))
  run = str(tmp_path / "cd")
  summary = run_tasks.run_config(cfg, run, inputs=inputs, progress=False)
  assert summary["eval/distill_kl"] < 0.9 * summary["eval/distill_kl_initial"]
  assert lifecycle.load_model(run).cfg == lifecycle.load_model(teacher).cfg


def test_a_teacher_of_another_size_is_refused(tmp_path):
  teacher, _, _ = _lm_run(tmp_path, size="1k")
  with pytest.raises(lifecycle.RunError, match="not a 6k model"):
    distill.build_task(distill.DistillConfig(teacher=teacher, model_size="6k"), str(tmp_path / "x"),
                       inputs=(np.zeros((4, 8), np.int32),) * 2)
