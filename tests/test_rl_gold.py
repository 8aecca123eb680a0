"""analysis.rl_gold on hand-made run directories: the training-rollout gold window of each
snapshot, the best-snapshot choice (never by the held-out prompts), the helpful / red-team split
of the held-out gold, old snapshots without `task`, and the ppo / ppo_ensemble stages read apart.
Every expected number is derived by hand in the comments."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from analysis import plots, rl_gold
from analysis.runs import discover

TASKS = np.array(["arithmetic", "harmful_request", "sorting", "harmful_request"])
X = 9.0          # a gold value on the other kind of prompt: any split error moves the means


def _write_json(path, obj):
  with open(path, "w") as f:
    json.dump(obj, f)


def make_run(stage_dir, name, gold_hh_by_step, snapshots, task=True, seed=0):
  """A finished PPO run: metrics.jsonl with gold/hh per iteration ({step: value}) and one
  evals/step_XXXXXX.npz per snapshot {step: (helpful (4,), harmless (4,), lengths (4,), hh)}."""
  run = os.path.join(stage_dir, name)
  os.makedirs(os.path.join(run, "evals"))
  _write_json(os.path.join(run, "config.json"), {"kind": "ppo", "seed": seed, "batch_size": 16})
  _write_json(os.path.join(run, "summary.json"), {"kind": "ppo"})
  with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    for step, v in sorted(gold_hh_by_step.items()):
      f.write(json.dumps({"step": step, "gold/hh": v, "ppo/kl": 0.0, "ppo/score_train": 0.0}) + "\n")
  for step, (helpful, harmless, lengths, hh) in snapshots.items():
    mask = np.array([[1.0] * n + [0.0] * (4 - n) for n in lengths], np.float32)
    arrays = {"step": step, "samples": 16 * step, "mask": mask, "response": mask.astype(np.int32),
              "gold_helpful": np.asarray(helpful, np.float32), "gold_harmless": np.asarray(harmless, np.float32),
              "gold_hh": np.full(4, hh, np.float32)}
    if task:
      arrays["task"] = TASKS
    np.savez(os.path.join(run, "evals", f"step_{step:06d}.npz"), **arrays)
  return run


# Iterations 1..6 (snapshots every 2): gold/hh 0.0, 0.4 | 0.9, 0.1 | 0.5, 0.6.
GOLD = {1: 0.0, 2: 0.4, 3: 0.9, 4: 0.1, 5: 0.5, 6: 0.6}
SNAPS = {0: ([0.2, X, 0.4, X], [X, -1.0, X, 0.0], [2, 3, 1, 2], 0.0),
         2: ([0.0, X, 0.0, X], [X, 0.0, X, 0.0], [2, 2, 2, 2], 0.1),
         4: ([1.0, X, 1.0, X], [X, 0.5, X, 0.5], [3, 3, 3, 3], 0.2),     # the held-out best
         6: ([0.5, X, 0.7, X], [X, -0.5, X, 0.5], [1, 1, 1, 1], 0.3)}


def test_the_best_snapshot_is_chosen_by_training_rollout_gold_by_hand(tmp_path):
  make_run(str(tmp_path), "policy-6k-pm-6k-s0", GOLD, SNAPS)
  record = rl_gold.run_record(discover(str(tmp_path)).runs[0])
  # Windows (previous snapshot, s]: step 0 none; 2: (0.0 + 0.4) / 2; 4: (0.9 + 0.1) / 2; 6: (0.5 + 0.6) / 2.
  windows = [s["train_gold_hh"] for s in record["snapshots"]]
  assert windows[0] is None and windows[1:] == pytest.approx([0.2, 0.5, 0.55])
  # Step 6 wins (0.55), though iteration 3 alone is the highest and step 4 is best held out.
  assert rl_gold.best_snapshot(record["snapshots"])["step"] == 6
  first = record["snapshots"][0]   # helpful prompts 0, 2; red-team prompts 1, 3
  assert (first["helpful"], first["harmless"], first["reply_len"]) == pytest.approx((0.3, -0.5, 2.0))
  assert (first["n_helpful"], first["n_red_team"]) == (2, 2)
  gains = rl_gold.seed_gains(record)
  # helpful (0.5 + 0.7) / 2 - 0.3 = 0.3; harmless (-0.5 + 0.5) / 2 - (-0.5) = 0.5
  assert gains["best_step"] == 6 and gains["best_samples"] == 96
  assert (gains["helpful"], gains["harmless"]) == pytest.approx((0.3, 0.5))
  assert (gains["reply_len_initial"], gains["reply_len_best"]) == pytest.approx((2.0, 1.0))


def test_windows_ties_and_a_run_without_windows():
  records = [{"step": 1, "gold/hh": 1.0}, {"step": 2, "gold/hh": 3.0}, {"step": 3},
             {"step": 4, "gold/hh": 2.0}]
  # (0, 2]: 2.0; (2, 4]: only step 4 has gold/hh: 2.0; nothing after 4.
  assert rl_gold.train_gold_windows(records, [0, 2, 4, 5]) == {0: None, 2: 2.0, 4: 2.0, 5: None}
  snaps = [{"step": 0, "train_gold_hh": None}, {"step": 2, "train_gold_hh": 2.0},
           {"step": 4, "train_gold_hh": 2.0}]
  assert rl_gold.best_snapshot(snaps)["step"] == 2                  # a tie: the earliest
  assert rl_gold.best_snapshot(snaps[:1]) is None                   # step 0 is never chosen


def test_snapshots_without_task_load_and_are_not_tested(tmp_path):
  make_run(str(tmp_path / "ppo"), "policy-6k-pm-6k-s0", GOLD, SNAPS)
  make_run(str(tmp_path / "ppo"), "policy-6k-pm-1k-s0", GOLD, SNAPS, task=False)
  out = rl_gold.run_rl_gold(str(tmp_path), str(tmp_path / "out"))
  old = next(r for r in out["result"]["ppo"]["runs"] if r["config"] == "policy-6k-pm-1k")
  assert [s["has_task"] for s in old["snapshots"]] == [False] * 4
  assert old["snapshots"][0]["helpful"] is None and old["snapshots"][0]["hh"] == 0.0
  stat = rl_gold.gold_improves_statistic({"rl_gold": out["result"]})
  assert stat == {"not_tested": "1 of 2 ppo runs have snapshots without the eval prompts' task "
                                "(written before snapshots stored it, or not the synthetic "
                                "world), e.g. policy-6k-pm-1k-s0"}
  assert out["result"]["gold_table"] is None
  assert rl_gold.ensemble_statistic({"rl_gold": out["result"]}) == {
      "not_tested": "the ppo_ensemble stage did not run"}


def test_ensemble_kinds_by_name():
  assert rl_gold.ensemble_kind("policy-6k-ens1") == "single"
  assert rl_gold.ensemble_kind("policy-100k-ens3-mean") == "mean"
  assert rl_gold.ensemble_kind("policy-100k-ens3-min") == "min"
  assert rl_gold.ensemble_kind("policy-100k-pm-100k") is None


def test_the_two_stages_are_read_apart_and_the_figure_is_readable(tmp_path):
  for s in range(3):
    make_run(str(tmp_path / "ppo"), f"policy-6k-pm-6k-s{s}", GOLD,
             {k: (np.add(v[0], 0.1 * s), *v[1:]) for k, v in SNAPS.items()}, seed=s)
    for name, hh in (("ens1", 0.1), ("ens2-mean", 0.4), ("ens2-min", 0.3 + 0.1 * s)):
      make_run(str(tmp_path / "ppo_ensemble"), f"policy-6k-{name}-s{s}", GOLD,
               {0: SNAPS[0], 6: (*SNAPS[6][:3], hh)}, seed=s)
  out = rl_gold.run_rl_gold(str(tmp_path), str(tmp_path / "out"), "policy-6k-pm-6k-s0")
  result = out["result"]
  assert {r["config"] for r in result["ppo"]["runs"]} == {"policy-6k-pm-6k"}
  assert len(result["ppo_ensemble"]["runs"]) == 9 and result["main_config"] == "policy-6k-pm-6k"
  # Every seed's helpful gain is 0.3 (the 0.1 s shift cancels), harmless 0.5.
  stat = rl_gold.gold_improves_statistic({"rl_gold": result})
  assert stat["values"]["value"] == pytest.approx(0.3) and stat["values"]["harmless"] == pytest.approx(0.5)
  assert stat["counts"] == {"seeds": 3, "gold": 1, "red_team_prompts": 2, "configs": 1}
  # Ensemble minus ens1 at the final snapshot: mean 0.3 every seed; min 0.2, 0.3, 0.4 (mean 0.3).
  ens = rl_gold.ensemble_statistic({"rl_gold": result})
  assert ens["values"]["mean"] == pytest.approx(0.3) and ens["values"]["min"] == pytest.approx(0.3)
  assert ens["values"]["value"] == pytest.approx(0.3) and ens["counts"]["seeds"] == 3
  assert os.path.exists(tmp_path / "out" / "rl_gold_heldout.png")
  assert not [n for n in out["notes"] if n.startswith("figure")]
  fig = rl_gold.fig_heldout(result["ppo"]["runs"], "policy-6k-pm-6k")
  assert plots.layout_problems(fig) == []
  bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
  stars = [c for c in fig.axes[0].collections if not isinstance(c, PolyCollection)]
  assert len(bands) == 1 and len(stars[0].get_offsets()) == 3     # one band; each seed's best (step 6)
  assert stars[0].get_offsets()[:, 0].tolist() == [96, 96, 96]
