"""OOD detection (hh_jax.eval.ood, hh_jax.train.ood_run, analysis.ood) against independent
computations: explicit inverses and loops, brute-force pair counts, and an end-to-end run on a
tiny random-weight base LM."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from hh_jax import models
from hh_jax.eval import ood
from hh_jax.special_tokens import PAD_ID


def _correlated(n: int, d: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_fit_gaussian_is_mean_and_biased_covariance():
  x = _correlated(50, 4, 0)
  g = ood.fit_gaussian(x)
  np.testing.assert_allclose(g.mean, np.mean(x, 0))
  np.testing.assert_allclose(g.cov, np.cov(x, rowvar=False, bias=True))


def test_mahalanobis_and_srmd_match_explicit_inverse_loop():
  train, test = _correlated(200, 5, 1), _correlated(30, 5, 2) * 1.5
  mu = train.mean(0)
  cov = sum(np.outer(v - mu, v - mu) for v in train) / len(train)
  inv_full, inv_diag = np.linalg.inv(cov), np.diag(1.0 / np.diag(cov))
  md = np.array([(x - mu) @ inv_full @ (x - mu) for x in test])
  md_diag = np.array([(x - mu) @ inv_diag @ (x - mu) for x in test])
  np.testing.assert_allclose(ood.md_scores(train, test), md, rtol=1e-9)
  np.testing.assert_allclose(ood.srmd_scores(train, test), md - md_diag, rtol=1e-9, atol=1e-9)
  # the general relative form with an unrelated background Gaussian
  bg_mu, bg_cov = np.ones(5), np.eye(5) * 2.0
  rmd = md - np.array([(x - bg_mu) @ np.linalg.inv(bg_cov) @ (x - bg_mu) for x in test])
  got = ood.relative_mahalanobis(test, ood.Gaussian(mu, cov), ood.Gaussian(bg_mu, bg_cov))
  np.testing.assert_allclose(got, rmd, rtol=1e-9)


def _brute_auroc(scores, labels) -> float:
  pos, neg = scores[labels], scores[~labels]
  wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
  return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_brute_force_pair_count_with_ties(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 5, size=40).astype(float)        # many ties
  labels = rng.random(40) < 0.4
  assert ood.auroc(scores, labels) == pytest.approx(_brute_auroc(scores, labels), abs=1e-12)


def test_auroc_hand_values():
  assert ood.auroc(np.array([3.0, 2.0, 1.0]), np.array([True, False, False])) == 1.0
  assert ood.auroc(np.array([1.0, 2.0, 3.0]), np.array([True, False, False])) == 0.0
  assert ood.auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5


def _bootstrap_width(n: int, seed: int) -> tuple[float, list]:
  rng = np.random.default_rng(seed)
  labels = rng.random(n) < 0.5
  scores = rng.normal(size=n) + labels                       # AUROC about 0.76
  point = ood.auroc(scores, labels)
  reps = ood.stratified_bootstrap(lambda idx, _: ood.auroc(scores[idx], labels[idx]), labels,
                                  300, seed)
  lo, hi = ood.percentile_interval(reps)
  return point, [lo, hi]


def test_bootstrap_interval_contains_estimate_and_shrinks_with_n():
  small_point, small = _bootstrap_width(100, 0)
  big_point, big = _bootstrap_width(3000, 0)
  assert small[0] <= small_point <= small[1] and big[0] <= big_point <= big[1]
  assert big[1] - big[0] < 0.5 * (small[1] - small[0])


def test_middle_gap_and_exposure_layer():
  assert ood.middle_gap(np.array([0.6, 0.9, 0.7])) == pytest.approx(0.2)
  assert ood.middle_gap(np.array([0.6, 0.7, 0.9])) == pytest.approx(-0.2)
  assert np.isnan(ood.middle_gap(np.array([0.6, 0.7])))
  assert [ood.exposure_layer(n) for n in (1, 2, 4, 6)] == [1, 1, 2, 3]


def test_fit_logistic_satisfies_optimality_condition():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(80, 3))
  y = (x[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(float)
  c = rng.uniform(0.5, 2.0, size=80)
  l2 = 0.1
  w, b = ood.fit_logistic(x, y, c, l2)
  p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
  cn = c / c.sum()
  np.testing.assert_allclose(x.T @ (cn * (p - y)) + l2 * w, 0.0, atol=1e-9)
  assert abs(np.sum(cn * (p - y))) < 1e-8                    # the unpenalised bias


def test_outlier_exposure_weights_equal_replicated_copies():
  rng = np.random.default_rng(4)
  x_in, x_out, x_test = rng.normal(size=(60, 3)), rng.normal(size=(4, 3)) + 1.0, rng.normal(size=(10, 3))
  got = ood.outlier_exposure_scores(x_in, x_out, x_test, l2=0.05)
  mu, sd = x_in.mean(0), x_in.std(0)
  copies = np.repeat(x_out, 60 // 4, axis=0)                 # the paper's N // M copies
  x = np.concatenate([(x_in - mu) / sd, (copies - mu) / sd])
  y = np.concatenate([np.zeros(60), np.ones(len(copies))])
  w, b = ood.fit_logistic(x, y, np.ones(len(x)), 0.05)
  np.testing.assert_allclose(got, ((x_test - mu) / sd) @ w + b, rtol=1e-7, atol=1e-9)


def test_pool_hidden_mean_and_last_match_loops():
  rng = np.random.default_rng(5)
  hidden = rng.normal(size=(3, 2, 5, 4)).astype(np.float32)  # (L+1, B, T, D)
  mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], bool)  # left- and right-padded rows
  mean = np.asarray(ood.pool_hidden(hidden, mask, "mean"))
  last = np.asarray(ood.pool_hidden(hidden, mask, "last"))
  for b in range(2):
    real = np.flatnonzero(mask[b])
    np.testing.assert_allclose(mean[:, b], hidden[:, b, real].mean(1), rtol=1e-6)
    np.testing.assert_allclose(last[:, b], hidden[:, b, real[-1]], rtol=1e-6)


def test_prompt_activations_are_the_hidden_streams():
  cfg = models.ladder_config("1k", vocab_size=20, max_len=8)
  graphdef, params = models.init(cfg, jax.random.key(0))
  model = type("M", (), {"graphdef": graphdef, "params": params})()
  tokens = np.array([[PAD_ID, PAD_ID, 5, 6, 7, 8, 9, 4], [PAD_ID] * 5 + [3, 11, 4]] * 3, np.int32)
  acts = ood.prompt_activations(model, tokens, "last", batch_size=4)     # 6 rows, 2 batches
  out = models.apply(graphdef, params, tokens, return_hidden=True)
  assert acts.shape == (cfg.n_layers + 1, 6, cfg.d_model)
  for layer, h in enumerate(out.hidden):
    np.testing.assert_allclose(acts[layer], np.asarray(h)[:, -1], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- end to end


def _records(n: int, seed: int) -> list[tuple[str, str]]:
  from hh_jax.data.world import corpus
  return corpus.sample_prompt_records(seed, n, 0.5, "train")


@pytest.fixture(scope="module")
def tiny_ood_run(tmp_path_factory):
  """An OOD run on a random-weight 6k base LM saved as a finished run directory."""
  from hh_jax.data.world.vocab import WorldTokenizer
  from hh_jax.train import lifecycle, ood_run, tasks
  root = tmp_path_factory.mktemp("ood")
  base = str(root / "base_lm" / "6k")
  cfg = models.ladder_config("6k", vocab_size=WorldTokenizer().vocab_size, max_len=48)
  _, params = models.init(cfg, jax.random.key(0))
  lifecycle.save_model(base, cfg, params)
  lifecycle.write_json(base, lifecycle.CONFIG, {"kind": "lm", "model_size": "6k"})
  lifecycle.write_json(base, lifecycle.SUMMARY, {"kind": "lm"})
  run_cfg = ood_run.OODConfig(base_lm=base, ks=(1, 10), num_draws=2, n_boot=20, batch_size=64)
  inputs = {"train": _records(300, 0), "test": _records(200, 1)}
  run_dir = str(root / "ood" / "6k")
  summary = tasks.run_config(run_cfg, run_dir, inputs=inputs, progress=False)
  return run_dir, summary


def test_ood_run_writes_its_files(tiny_ood_run):
  run_dir, summary = tiny_ood_run
  for name in ("config.json", "summary.json", "ood.json", "ood_scores.npz"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  with open(os.path.join(run_dir, "ood.json")) as f:
    result = json.load(f)
  assert result["model_size"] == "6k" and result["num_layers"] == 2
  assert len(result["auroc_srmd"]) == 3 and len(result["auroc_exposure"]) == 2
  for a, (lo, hi) in zip(result["auroc_srmd"], result["auroc_srmd_ci"]):
    assert 0.0 <= lo <= a <= hi <= 1.0
  scores = np.load(os.path.join(run_dir, "ood_scores.npz"))
  labels = scores["labels"]
  assert scores["srmd"].shape == (3, len(labels)) and scores["exposure"].shape == (2, 2, len(labels))
  keep = labels != 2
  assert result["auroc_srmd"][1] == pytest.approx(ood.auroc(scores["srmd"][1][keep], labels[keep] == 1))
  assert summary["ood/best_layer"] == result["best_layer"]


def test_ood_labels_follow_subset_and_harm():
  from hh_jax.data.world import tasks as world_tasks
  from hh_jax.train import ood_run
  records = _records(200, 2)
  labels = ood_run.label_records(records)
  for (context, subset), label in zip(records, labels):
    if subset == "helpful":
      assert label == ood_run.HELPFUL
    else:
      harm = world_tasks.parse_context(context).harm
      assert label == (ood_run.HARMFUL if harm > 0 else ood_run.BENIGN_REDTEAM)
  # World version 4: red-team prompts are harmful requests only, so none is excluded.
  assert set(labels.tolist()) == {ood_run.HELPFUL, ood_run.HARMFUL}


def test_analysis_reads_the_run(tiny_ood_run):
  from analysis import ood as ood_analysis
  from analysis import runs
  run_dir, _ = tiny_ood_run
  result, figures, notes = ood_analysis.analyze_ood(runs.find_runs(os.path.dirname(run_dir)))
  out = ood_analysis.run_ood(os.path.dirname(run_dir), os.path.join(os.path.dirname(run_dir), "figs"))
  assert any(f.endswith("ood_analysis.json") for f in out["files"])
  assert set(figures) == {"ood_auroc_vs_layer", "ood_auroc_vs_k"} and not notes
  (row,) = result["sizes"]
  assert row["model_size"] == "6k" and row["interval"].startswith("bootstrap")
  ids = [c["id"] for c in result["claims"]]
  assert ids == ["ood_auroc_middle_layers", "ood_outlier_exposure_helps"]
  assert set(result["claims"][0]) == {"id", "claim", "paper", "ours", "ci", "held", "detail"}


def _row(size, params, srmd, gap, gap_ci, gain, gain_ci):
  return {"model_size": size, "params": params, "num_layers": len(srmd) - 1, "ks": [1, 10],
          "exposure_layer": 1, "auroc_srmd": srmd, "auroc_srmd_ci": None, "middle_gap": gap,
          "middle_gap_ci": gap_ci, "auroc_exposure": [0.9, 0.95], "exposure_gain": [0.0, gain],
          "exposure_gain_ci": [[0.0, 0.0], gain_ci], "best_layer": int(np.argmax(srmd)),
          "best_auroc": max(srmd), "interval": "bootstrap over test prompts"}


def test_ood_claims_are_judged_on_the_largest_size_and_can_fail():
  from analysis import ood as ood_analysis
  small = _row("6k", 6626, [0.5, 0.6, 0.55], 0.05, [0.01, 0.09], 0.1, [0.05, 0.15])
  good = _row("400k", 397058, [0.5, 0.9, 0.8], 0.1, [0.05, 0.15], 0.05, [0.02, 0.08])
  bad = _row("400k", 397058, [0.5, 0.8, 0.9], -0.1, [-0.15, -0.05], 0.01, [-0.01, 0.03])
  held = ood_analysis.ood_claims({"sizes": [small, good]})
  assert [c["held"] for c in held] == [True, True] and held[0]["ours"] == 0.1
  failed = ood_analysis.ood_claims({"sizes": [small, bad]})
  assert [c["held"] for c in failed] == [False, False] and failed[1]["ours"] == 0.01
  assert not any(c["held"] for c in ood_analysis.ood_claims(None))


def test_statistics_pool_seeds_with_a_t_interval():
  from analysis import fits
  from analysis import ood as ood_analysis
  from analysis.runs import Run
  runs = []
  for seed, (gap, gain) in enumerate([(0.05, 0.02), (0.07, 0.04), (0.06, 0.03)]):
    result = {"model_size": "400k", "num_layers": 2, "params": 397058, "layers": [0, 1, 2],
              "auroc_srmd": [0.5, 0.9, 0.9 - gap], "auroc_srmd_ci": [[0, 1]] * 3,
              "auroc_md": [0.5, 0.9, 0.9], "auroc_md_ci": [[0, 1]] * 3, "middle_gap": gap,
              "middle_gap_ci": [0, 1], "ks": [10], "auroc_exposure": [0.9 + gain],
              "auroc_exposure_ci": [[0, 1]], "exposure_gain": [gain], "exposure_gain_ci": [[0, 1]],
              "exposure_layer": 1, "auroc_exposure_draws": [[0.9 + gain]]}
    run = Run(dir=f"/x/ood/400k-s{seed}", name=f"ood/400k-s{seed}",
              config={"kind": "ood", "seed": seed}, summary={"kind": "ood", "seed": seed})
    run.__dict__["_ood"] = result
    runs.append(run)
  rows = ood_analysis.size_table([{"run": r.name, "seed": r.summary["seed"], **r.__dict__["_ood"]}
                                  for r in runs])
  gap = ood_analysis.middle_gap_statistic({"ood": {"sizes": rows}})
  expect = fits.seed_interval([0.05, 0.07, 0.06])
  assert gap["values"]["value"] == pytest.approx(expect["mean"])
  assert [gap["values"]["ci_low"], gap["values"]["ci_high"]] == pytest.approx(expect["ci"])
  assert gap["counts"] == {"seeds": 3, "sizes": 1} and rows[0]["interval"].startswith("t interval")
  gain = ood_analysis.exposure_gain_statistic({"ood": {"sizes": rows}})
  assert gain["values"]["value"] == pytest.approx(0.03)
  assert "not_tested" in ood_analysis.middle_gap_statistic({})
