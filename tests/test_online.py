"""Iterated online RLHF on a tiny world: the gold labels, the planned pool sizes, resuming a
killed online run without redoing finished sub-runs, and the online-vs-static gold win rate
against a direct computation from gold scores."""

from __future__ import annotations

import json
import math
import os

import jax
import numpy as np
import pytest

from hh_jax import models
from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.data import batching, pipeline
from hh_jax.data.world import corpus, gold, labeler, policy, vocab
from hh_jax.special_tokens import EOS_ID, PAD_ID
from hh_jax.train import lifecycle, online, online_eval, tasks
from hh_jax.train.ppo import PPOConfig
from hh_jax.train.ppo_run import PPOInputs

TOK = vocab.WorldTokenizer()
MAX_LEN, PROMPT_LEN, NEW = 40, 24, 6
BASE, PER_ROUND, ROUNDS = 16, 24, 2


def _comparison_set(n: int, split: str, names=None) -> tuple[batching.PairArrays, np.ndarray]:
  cs = corpus.comparisons("mix", 0, n, split)
  examples = list(cs.examples())
  return batching.encode_pairs(TOK, examples, MAX_LEN, names), np.asarray(cs.columns["p_chosen"])


def _inputs() -> online.OnlineInputs:
  train, _ = _comparison_set(BASE + ROUNDS * PER_ROUND, "train")
  test, p_test = _comparison_set(32, "test", train.source_names)
  records = corpus.sample_prompt_records(0, 64)
  contexts, subsets = [c for c, _ in records], [s for _, s in records]
  prompts = pipeline.left_pad([TOK.encode(c) for c in contexts], PROMPT_LEN)
  return online.OnlineInputs(
      static=pipeline.PMData(TOK, train, test, {"p_chosen": p_test}),
      contexts=contexts, subsets=subsets,
      ppo=PPOInputs(prompts, gold_fn=pipeline.gold_fn("hh_synth/prompts")))


def _base_lm(root) -> str:
  cfg = models.ladder_config("1k", vocab_size=TOK.vocab_size, max_len=MAX_LEN)
  _, params = models.init(cfg, jax.random.key(0))
  run = str(root / "base_lm")
  lifecycle.save_model(run, cfg, params)
  lifecycle.write_json(run, lifecycle.CONFIG, {"kind": "lm", "model_size": "1k"})
  lifecycle.write_json(run, lifecycle.SUMMARY, {"kind": "lm"})
  return run


def _config(base_lm: str, static: bool) -> online.OnlineConfig:
  return online.OnlineConfig(
      base_lm=base_lm, rounds=ROUNDS, labels_per_round=PER_ROUND, base_labels=BASE, static=static,
      pair="latest_vs_base",
      pm=RunConfig(kind="pm", batch_size=16, log_every=1, checkpoint_every=0,
                   data=DataConfig(max_len=MAX_LEN, packing=False, num_eval_pairs=None),
                   optim=OptimConfig(learning_rate=1e-3, warmup_steps=0)),
      ppo=PPOConfig(num_iterations=2, batch_size=8, minibatch_size=8, ppo_epochs=1,
                    max_new_tokens=NEW, prompt_len=PROMPT_LEN, checkpoint_every=0, log_every=1))


class Killed(Exception):
  """Stands in for a kill: raised when the online run reaches round 1's PPO sub-run."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """An online run killed at round 1's PPO sub-run, then resumed; a static run; the sub-runs
  that actually ran (not skipped) in the resumed attempt."""
  root = tmp_path_factory.mktemp("online")
  base, inputs = _base_lm(root), _inputs()
  run = lambda cfg, d: tasks.run_config(cfg, d, inputs=inputs, progress=False)  # noqa: E731
  real_run_sub, ran = online.run_sub, []

  def killed_at_round_1_ppo(cfg, run_dir, build):
    if run_dir == online.round_dir(str(root / "online"), 1, "ppo"):
      raise Killed(run_dir)
    return real_run_sub(cfg, run_dir, build)

  def recording(cfg, run_dir, build):
    if not lifecycle.is_finished(run_dir):
      ran.append(os.path.relpath(run_dir, root))
    return real_run_sub(cfg, run_dir, build)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(online, "run_sub", killed_at_round_1_ppo)
    with pytest.raises(Killed):
      run(_config(base, False), str(root / "online"))
    assert not lifecycle.is_finished(str(root / "online"))
    mp.setattr(online, "run_sub", recording)
    run(_config(base, False), str(root / "online"))
  run(_config(base, True), str(root / "static"))
  return root, inputs, ran


def test_labels_are_the_gold_labellers_for_scripted_reply_pairs():
  rng = np.random.default_rng(0)
  records = corpus.sample_prompt_records(1, 300)
  contexts, subsets = [c for c, _ in records], [s for _, s in records]
  pairs = [policy.sample_pair(rng, c) for c in contexts]
  a, b = (gold.encode_replies([p[k] for p in pairs], width=24) for k in (0, 1))
  examples, _ = online.label_examples(contexts, subsets, a, b, np.random.default_rng(1), 0, TOK)
  # Independently: gold of the stored texts (each gets its EOS), the labeller's rule by subset.
  g_c = gold.gold_scores_text(contexts, [ex["chosen"] for ex in examples])
  g_r = gold.gold_scores_text(contexts, [ex["rejected"] for ex in examples])
  beta = np.array([labeler.DEFAULT_BETA[s] for s in subsets])
  r_c = np.where(np.array(subsets) == "helpful", g_c["helpful"], g_c["harmless"])
  r_r = np.where(np.array(subsets) == "helpful", g_r["helpful"], g_r["harmless"])
  p = 1.0 / (1.0 + np.exp(-beta * (r_c.astype(np.float64) - r_r)))
  np.testing.assert_allclose([ex["p_chosen"] for ex in examples], p, rtol=1e-5)
  np.testing.assert_allclose([ex["gold_helpful_chosen"] for ex in examples], g_c["helpful"], atol=1e-6)
  np.testing.assert_allclose([ex["gold_harmless_rejected"] for ex in examples], g_r["harmless"],
                             atol=1e-6)
  untied = r_c != r_r
  assert untied.sum() > 100 and np.mean(r_c[untied] > r_r[untied]) > 0.6
  assert set(corpus.COMPARISON_FIELDS) <= set(examples[0])
  assert [ex["chosen_full"] for ex in examples[:3]] == [c + ex["chosen"] for c, ex in
                                                         zip(contexts, examples[:3])]


def test_reply_text_stops_at_eos_or_pad():
  ids = TOK.encode(" 1 2 3 .")
  assert online.reply_text(ids + [EOS_ID, 9, 9], TOK) == " 123 ."
  assert online.reply_text(ids[:2] + [PAD_ID, 9], TOK) == " 12"


def test_the_online_runs_comparison_files_hold_the_labellers_probabilities(finished):
  root, _, _ = finished
  for r in range(ROUNDS):
    examples = json.loads((root / "online" / f"round-{r}" / "label" / online.COMPARISONS).read_text())
    assert len(examples) == PER_ROUND and {ex["round"] for ex in examples} == {r}
    base = f"{root.name}/base_lm"
    assert {ex["policy"] for ex in examples} == {base if r == 0 else "round-0/ppo"}
    assert {ex["other_policy"] for ex in examples} == {base}       # pair="latest_vs_base"
    for ex in examples:
      k = ex["subset"]
      p = labeler.preference_prob(ex[f"gold_{k}_chosen"], ex[f"gold_{k}_rejected"],
                                  labeler.DEFAULT_BETA[k])
      assert ex["p_chosen"] == pytest.approx(float(p), rel=1e-5)


def test_every_pool_has_the_planned_number_of_comparisons(finished):
  root, _, _ = finished
  rounds = json.loads((root / "online" / online.ROUNDS).read_text())
  assert [r["pool"]["total"] for r in rounds] == [BASE + PER_ROUND, BASE + 2 * PER_ROUND]
  for r in range(ROUNDS):
    pool = json.loads((root / "online" / f"round-{r}" / "pm" / online.POOL).read_text())
    assert (pool["static"], pool["online"]) == (BASE, (r + 1) * PER_ROUND)
    assert [f["comparisons"] for f in pool["online_files"]] == [PER_ROUND] * (r + 1)
    cfg = json.loads((root / "online" / f"round-{r}" / "pm" / lifecycle.CONFIG).read_text())
    assert cfg["data"]["num_train_pairs"] == BASE and cfg["init_from"] == str(root / "base_lm")
  static = json.loads((root / "static" / "round-0" / "pm" / online.POOL).read_text())
  assert (static["static"], static["online"], static["total"]) == (BASE + 2 * PER_ROUND, 0,
                                                                   rounds[-1]["pool"]["total"])
  assert not (root / "static" / "round-0" / "label").exists()
  assert not (root / "static" / "round-1").exists()
  assert "eval/accuracy" in rounds[0]["pm"] and "gold/hh" in rounds[0]["ppo"]


def test_a_killed_online_run_resumes_without_redoing_finished_sub_runs(finished):
  root, _, ran = finished
  assert ran == [os.path.join("online", "round-1", "ppo")]
  assert lifecycle.is_finished(str(root / "online"))
  final = lifecycle.load_model(str(root / "online"))
  last = lifecycle.load_model(str(root / "online" / "round-1" / "ppo"))
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(final.params),
                                                  jax.tree.leaves(last.params)))


def test_online_eval_win_rate_is_the_labellers_from_gold_scores(finished):
  root, inputs, _ = finished
  cfg = online_eval.OnlineEvalConfig(online_run=str(root / "online"), static_run=str(root / "static"),
                                     prompt_len=PROMPT_LEN, num_prompts=16, samples_per_prompt=2,
                                     max_new_tokens=NEW)
  tasks.run_config(cfg, str(root / "eval"), inputs=inputs.ppo.prompt_tokens, progress=False)
  result = json.loads((root / "eval" / online_eval.RESULT).read_text())
  z = np.load(root / "eval" / online_eval.ARRAYS)
  prompts = z["prompts"]
  assert len(prompts) == 32 and result["num_replies"] == 32
  g_on = gold.gold_scores(prompts, z["response__online"])["hh"].astype(np.float64)
  g_st = gold.gold_scores(prompts, z["response__static"])["hh"].astype(np.float64)
  win = float(np.mean(1.0 / (1.0 + np.exp(-2.0 * (g_on - g_st)))))
  assert result["win_rate"] == pytest.approx(win, rel=1e-6)
  if 0 < win < 1:
    assert result["elo_diff"] == pytest.approx(400 * math.log10(win / (1 - win)), rel=1e-6)
  assert set(result["gold"]) == {"online", "static", "base", "round-0", "round-1"}
  assert result["gold"]["online"] == pytest.approx(float(np.mean(g_on)), abs=1e-5)
  assert [r["pool"] for r in result["rounds"]] == [BASE + PER_ROUND, BASE + 2 * PER_ROUND]
  assert result["static_pool"] == BASE + 2 * PER_ROUND
  # The final online policy is round 1's: the same replies under the same key.
  np.testing.assert_array_equal(z["response__online"], z["response__round-1"])


def test_win_rate_and_elo_by_hand():
  assert online_eval.gold_win_rate([1.0, 0.0], [0.0, 0.0], 2.0) == pytest.approx(
      (1 / (1 + math.exp(-2.0)) + 0.5) / 2)
  assert online_eval.elo_difference(0.5) == 0.0
  assert online_eval.elo_difference(10 / 11) == pytest.approx(400.0)
  assert online_eval.elo_difference(1.0) == math.inf


# ----------------------------------------------------------------------------- analysis


def _fake_eval(root, seed: int, win: float, gold_online: float) -> None:
  run = root / f"eval-25k-s{seed}"
  run.mkdir(parents=True)
  rounds = [{"round": r, "pool": 2000 + 1000 * r, "pm_accuracy": 0.6 + 0.01 * r,
             "ppo_gold_hh": -1.0} for r in range(3)]
  result = {"win_rate": win, "elo_diff": 400 * math.log10(win / (1 - win)),
            "gold": {"online": gold_online, "static": -1.0, "base": -1.5, "round-0": -1.2,
                     "round-1": -1.1, "round-2": gold_online},
            "gold_diff": gold_online + 1.0, "rounds": rounds,
            "static_rounds": [{"round": 0, "pool": 4000, "pm_accuracy": 0.62, "ppo_gold_hh": -1.0}],
            "static_pool": 4000, "online_run": f"online-25k-s{seed}", "static_run": f"static-25k-s{seed}"}
  (run / online_eval.RESULT).write_text(json.dumps(result))
  (run / "config.json").write_text(json.dumps({"kind": "online_eval", "seed": seed}))
  (run / "summary.json").write_text(json.dumps({"kind": "online_eval"}))


def test_online_analysis_statistic_is_the_t_interval_over_seeds_and_the_figure_reads(tmp_path):
  from analysis import online as online_analysis
  from analysis import plots
  wins = {0: 0.55, 1: 0.6, 2: 0.52}
  for seed, w in wins.items():
    _fake_eval(tmp_path / "online_eval", seed, w, -0.9 + 0.01 * seed)
  out = online_analysis.run_online(str(tmp_path / "online_eval"), str(tmp_path / "fig"))
  saved = json.loads((tmp_path / "fig" / online_analysis.JSON_NAME).read_text())
  stat = online_analysis.online_vs_static_statistic({"online": saved})
  elo = np.array([400 * math.log10(w / (1 - w)) for w in wins.values()])
  half = 4.303 * elo.std(ddof=1) / math.sqrt(3)
  assert stat["values"]["value"] == pytest.approx(elo.mean())
  assert stat["values"]["ci_low"] == pytest.approx(elo.mean() - half)
  assert stat["values"]["ci_high"] == pytest.approx(elo.mean() + half)
  assert stat["values"]["win_rate"] == pytest.approx(np.mean(list(wins.values())))
  assert stat["counts"] == {"seeds": 3, "rounds": 3} and set(stat["per_seed"]) == {"0", "1", "2"}
  assert [r["pool"] for r in saved["table"]["rounds"]] == [2000, 3000, 4000]
  assert any(f.endswith("online_vs_static.png") for f in out["files"])
  fig = online_analysis.fig_online(saved["table"])
  assert plots.layout_problems(fig) == [] and plots.has_legend(fig)
  assert "not_tested" in online_analysis.online_vs_static_statistic({"online": None})
  assert online_analysis.run_online(str(tmp_path / "none"), str(tmp_path / "fig2"))["notes"]


def _fake_ppo_sub(run_dir, kl: list[float], gold: list[float], score: list[float]) -> None:
  run_dir.mkdir(parents=True)
  lines = [{"step": i + 1, "ppo/kl": k, "ppo/score_train": s, "gold/hh": g}
           for i, (k, g, s) in enumerate(zip(kl, gold, score))]
  (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
  (run_dir / "config.json").write_text(json.dumps({"kind": "ppo", "batch_size": 4}))
  (run_dir / "summary.json").write_text(json.dumps({"kind": "ppo"}))


def test_online_round_curves_are_each_sub_runs_gold_against_sqrt_kl(tmp_path):
  from analysis import online as online_analysis
  from analysis import plots
  rl_root = tmp_path / "online_rlhf"
  kl = [float(k * k) for k in range(1, 7)]      # sqrt(KL) 1..6
  for seed in (0, 1):
    _fake_eval(tmp_path / "online_eval", seed, 0.55, -0.9)
    for r in range(3):     # round r, seed s, iteration i: gold r + s / 10 + i / 10
      _fake_ppo_sub(rl_root / f"online-25k-s{seed}" / f"round-{r}" / "ppo", kl,
                    [r + seed / 10 + i / 10 for i in range(6)], [0.5 * r] * 6)
    _fake_ppo_sub(rl_root / f"static-25k-s{seed}" / "round-0" / "ppo", [k / 4 for k in kl],
                  [-1.0] * 6, [0.1 * i for i in range(6)])
  # seed 1's round 2 has not finished: a note, and that round keeps seed 0's curve only
  (rl_root / "online-25k-s1" / "round-2" / "ppo" / "summary.json").unlink()
  out = online_analysis.run_online(str(tmp_path / "online_eval"), str(tmp_path / "fig"), str(rl_root))
  curves = out["result"]["round_curves"]
  assert sorted(curves) == ["round-0", "round-1", "round-2", "static"]
  assert [c["seed"] for c in curves["round-1"]] == [0, 1] and len(curves["round-2"]) == 1
  np.testing.assert_allclose(curves["round-1"][1]["sqrt_kl"], [1, 2, 3, 4, 5, 6])
  np.testing.assert_allclose(curves["round-1"][1]["gold_hh"], [1.1 + i / 10 for i in range(6)])
  np.testing.assert_allclose(curves["static"][0]["sqrt_kl"], [0.5 * k for k in range(1, 7)])
  np.testing.assert_allclose(curves["static"][0]["score_train"], [0.1 * i for i in range(6)])
  assert any("online-25k-s1/round-2/ppo" in n for n in out["notes"])
  assert any(f.endswith("online_gold_vs_sqrt_kl.png") for f in out["files"])
  fig = online_analysis.fig_round_curves(curves, window=5)
  assert plots.layout_problems(fig) == [] and plots.has_legend(fig)
  # round 1: gains 0, .1, .., .5 over the first iteration; 5-iteration means of sqrt(KL) 3, 4
  # and of the gain 0.2, 0.3, the same in both seeds
  gold_ax, score_ax = fig.axes[:2]
  np.testing.assert_allclose(gold_ax.lines[1].get_xdata(), [3.0, 4.0])
  np.testing.assert_allclose(gold_ax.lines[1].get_ydata(), [0.2, 0.3])
  np.testing.assert_allclose(score_ax.lines[3].get_ydata(), [0.2, 0.3])      # static: 0.1 i


def test_running_mean_by_hand():
  from analysis import plots
  np.testing.assert_allclose(plots.running_mean([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])
  np.testing.assert_allclose(plots.running_mean([1, 2, 3], 5), [2.0])
