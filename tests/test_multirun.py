"""Grouped PM runs (hh_jax.train.multirun) against the sequential path, run by run: the same
final params and evaluation (float tolerance), the same run files and keys; a killed group
resumes; a diverging group keeps its checkpoints; planning groups only seed-differing small
PMs, and the sweep runs a group as one subprocess."""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np
import pytest

from hh_jax.config import DataConfig, OptimConfig, RunConfig, override
from hh_jax.data import packing
from hh_jax.data.batching import PairIterator
from hh_jax.data.pipeline import PMData
from hh_jax.metrics import NonFiniteLossError, read_jsonl
from hh_jax.train import experiment as ex
from hh_jax.train import lifecycle, multirun, pm, supervised, sweep, tasks
from tests.conftest import ToyTokenizer, toy_pairs
from tests.run_files import run_files

# 20 steps; logs at 5, 10, ...; checkpoints at 7, 14 (not multiples of the log interval)
CFG = RunConfig(kind="pm", model_size="1k", batch_size=16, log_every=5, checkpoint_every=7,
                data=DataConfig(max_len=16),
                optim=OptimConfig(learning_rate=3e-3, warmup_steps=3, schedule="linear"))
SEEDS = (0, 1, 2)
TIMING = ("perf/", "time/")


def _data(seed: int) -> PMData:
  """A member's own training pairs (as load_pm_data draws per seed), shared eval pairs."""
  return PMData(tokenizer=ToyTokenizer(), train=toy_pairs(320, seed=10 + seed, harmless_every=3),
                eval=toy_pairs(128, seed=99, harmless_every=3),
                eval_extras={"p_chosen": np.full(128, 0.9)})


def _cfgs(cfg=CFG):
  return [override(cfg, {"seed": s}) for s in SEEDS]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
  root = tmp_path_factory.mktemp("seq")
  dirs = [str(root / f"s{s}") for s in SEEDS]
  for cfg, d, s in zip(_cfgs(), dirs, SEEDS):
    tasks.run_config(cfg, d, inputs=_data(s), progress=False)
  return dirs


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
  root = tmp_path_factory.mktemp("group")
  dirs = [str(root / f"s{s}") for s in SEEDS]
  summaries = multirun.run_group(_cfgs(), dirs, [_data(s) for s in SEEDS])
  return dirs, summaries


def _strip(record: dict) -> dict:
  return {k: v for k, v in record.items() if not k.startswith(TIMING)}


def _assert_params_close(a: str, b: str, rtol=2e-4, atol=2e-5) -> None:
  pa, pb = lifecycle.load_model(a).params, lifecycle.load_model(b).params
  assert jax.tree.structure(pa) == jax.tree.structure(pb)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_each_member_equals_the_sequential_run_of_its_seed(sequential, grouped):
  dirs, summaries = grouped
  for seq, grp, summary in zip(sequential, dirs, summaries):
    assert lifecycle.is_finished(grp)
    _assert_params_close(seq, grp)
    s_seq, s_grp = lifecycle.read_json(seq, "summary.json"), lifecycle.read_json(grp, "summary.json")
    assert summary == s_grp and set(s_seq) == set(s_grp)
    for k, v in _strip(s_seq).items():
      if isinstance(v, float):
        assert s_grp[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
      else:
        assert s_grp[k] == v, k
    a, b = np.load(os.path.join(seq, "eval_scores.npz")), np.load(os.path.join(grp, "eval_scores.npz"))
    np.testing.assert_allclose(a["chosen"], b["chosen"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["rejected"], b["rejected"], rtol=1e-4, atol=1e-5)


def test_members_differ_from_each_other(grouped):
  """Each member has its own init, data and order: no two members' params coincide."""
  dirs, _ = grouped
  leaves = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(lifecycle.load_model(d).params)])
            for d in dirs]
  assert not np.allclose(leaves[0], leaves[1]) and not np.allclose(leaves[1], leaves[2])


def test_member_directories_hold_the_sequential_files_and_keys(sequential, grouped):
  dirs, _ = grouped
  for seq, grp in zip(sequential, dirs):
    assert run_files(seq) == run_files(grp)
    assert lifecycle.read_json(seq, "config.json") == lifecycle.read_json(grp, "config.json")
    m_seq, m_grp = (read_jsonl(os.path.join(d, "metrics.jsonl")) for d in (seq, grp))
    assert [r["step"] for r in m_seq] == [r["step"] for r in m_grp] == [5, 10, 15, 20]
    for r_seq, r_grp in zip(m_seq, m_grp):
      assert set(r_seq) == set(r_grp)
      for k, v in _strip(r_seq).items():
        assert r_grp[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


def test_a_killed_group_resumes_to_the_uninterrupted_groups_files(tmp_path, grouped):
  full, _ = grouped
  dirs = [str(tmp_path / f"s{s}") for s in SEEDS]
  stopped = multirun.run_group(_cfgs(), dirs, [_data(s) for s in SEEDS], stop_after_steps=10)
  assert stopped == [{"stopped_at": 10}] * 3
  assert [multirun.latest_step(d) for d in dirs] == [10] * 3
  assert not any(lifecycle.is_finished(d) for d in dirs)
  multirun.run_group(_cfgs(), dirs, [_data(s) for s in SEEDS])
  for a, b in zip(full, dirs):
    assert run_files(a) == run_files(b)
    assert ([_strip(r) for r in read_jsonl(os.path.join(a, "metrics.jsonl"))]
            == [_strip(r) for r in read_jsonl(os.path.join(b, "metrics.jsonl"))])
    _assert_params_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_group_with_one_member_left_finishes_it_sequentially(tmp_path, sequential):
  """Two members finished, one stopped mid-run: the third resumes alone from its checkpoint
  and equals the sequential run of its seed."""
  dirs = [str(tmp_path / f"s{s}") for s in SEEDS]
  multirun.run_group(_cfgs()[:2], dirs[:2], [_data(s) for s in SEEDS[:2]])
  tasks.run_config(_cfgs()[2], dirs[2], inputs=_data(2), progress=False, stop_after_steps=9)
  summaries = multirun.run_group(_cfgs(), dirs, [_data(s) for s in SEEDS])
  assert all(lifecycle.is_finished(d) for d in dirs)
  assert summaries[2] == lifecycle.read_json(dirs[2], "summary.json")
  _assert_params_close(sequential[2], dirs[2], rtol=1e-6, atol=1e-7)


def test_padded_path_members_equal_sequential_runs(tmp_path):
  cfg = override(CFG, {"data.packing": False})
  seq = [str(tmp_path / f"seq{s}") for s in SEEDS[:2]]
  grp = [str(tmp_path / f"grp{s}") for s in SEEDS[:2]]
  for c, d, s in zip(_cfgs(cfg), seq, SEEDS):
    tasks.run_config(c, d, inputs=_data(s), progress=False)
  multirun.run_group(_cfgs(cfg)[:2], grp, [_data(s) for s in SEEDS[:2]])
  for a, b in zip(seq, grp):
    _assert_params_close(a, b)


def test_group_layout_holds_every_members_batches():
  """The shared layout fits each member's every batch (pack_pairs raises if not) and is at
  least as large as each member's own layout at the same row length."""
  datas = [_data(s) for s in SEEDS]
  rows = [PairIterator(d.train, 16, seed=s).run_batch_rows() for d, s in zip(datas, SEEDS)]
  model_cfg = supervised.model_config_of(CFG, 29)
  shared = multirun.group_layout(model_cfg, [d.train for d in datas], rows)
  for d, r in zip(datas, rows):
    own = packing.plan_pair_layout(d.train, r, shared.row_len)
    assert own.rows <= shared.rows and own.slots <= shared.slots
    for batch_rows in r:
      batch = {k: getattr(d.train, k)[batch_rows] for k in pm.PAIR_KEYS}
      packing.pack_pairs(batch, shared)


def test_stack_and_member_tree_are_inverse():
  trees = [{"a": np.full((2, 3), i, np.float32), "k": jax.random.key(i)} for i in range(3)]
  stacked = multirun.stack_trees(trees)
  assert stacked["a"].shape == (3, 2, 3) and stacked["k"].shape == (3,)
  for i in range(3):
    back = multirun.member_tree(stacked, i)
    np.testing.assert_array_equal(back["a"], trees[i]["a"])
    assert jax.random.key_data(back["k"]).tolist() == jax.random.key_data(trees[i]["k"]).tolist()


def _planned(name: str, cfg) -> ex.PlannedRun:
  return ex.PlannedRun("e", name, f"/x/{name}", {}, cfg)


def test_plan_groups_groups_seed_differing_small_pms_only():
  lm = override(CFG, {"kind": "lm"})
  runs = [_planned("a0", CFG), _planned("lm", lm), _planned("a1", override(CFG, {"seed": 1})),
          _planned("b0", override(CFG, {"data.num_train_pairs": 100})),
          _planned("big", override(CFG, {"model_size": "25k"})),
          _planned("a2", override(CFG, {"seed": 2}))]
  groups = multirun.plan_groups(runs)
  assert [[r.name for r in g] for g in groups] == [["a0", "a1", "a2"], ["lm"], ["b0"], ["big"]]
  assert [[r.name for r in g] for g in multirun.plan_groups(runs, limit=0)] == [
      [r.name] for r in runs]
  capped = multirun.plan_groups(runs, max_members=2)
  assert [[r.name for r in g] for g in capped][:1] == [["a0", "a1"]] and ["a2"] in [
      [r.name for r in g] for g in capped]


def test_run_group_refuses_runs_that_differ_in_more_than_seed(tmp_path):
  with pytest.raises(lifecycle.RunError, match="seed only"):
    multirun.run_group([CFG, override(CFG, {"seed": 1, "batch_size": 8})],
                       [str(tmp_path / "a"), str(tmp_path / "b")], [_data(0), _data(1)])


def test_seedless_key_ignores_seed_only():
  assert multirun.seedless_key(CFG) == multirun.seedless_key(override(CFG, {"seed": 5}))
  assert multirun.seedless_key(CFG) != multirun.seedless_key(override(CFG, {"batch_size": 8}))
  assert json.loads(multirun.seedless_key(CFG))["seed"] is None


def test_a_diverging_group_keeps_each_members_last_good_checkpoint(tmp_path):
  """lr 1e30 (as tests/test_pm_train.py's NaN test): every member diverges; none writes a
  summary, each keeps a checkpoint, and the error names every member's directory."""
  cfg = override(CFG, {"optim.learning_rate": 1e30, "optim.warmup_steps": 4,
                       "optim.grad_clip_norm": 0.0, "checkpoint_every": 1})
  dirs = [str(tmp_path / f"s{s}") for s in SEEDS[:2]]
  with pytest.raises(NonFiniteLossError, match="training diverged") as err:
    multirun.run_group(_cfgs(cfg)[:2], dirs, [_data(s) for s in SEEDS[:2]])
  for d in dirs:
    assert d in str(err.value) and not lifecycle.is_finished(d)
    assert multirun.latest_step(d) > 0


def test_a_sweep_runs_a_group_as_one_subprocess_and_records_each_failure(tmp_path):
  exp = tmp_path / "exp.py"
  exp.write_text("from hh_jax.config import RunConfig, DataConfig\n"
                 "def get_config():\n"
                 "  return RunConfig(model_size='1k', data=DataConfig(dataset='no_such_dataset/x', "
                 f"data_dir='{tmp_path}'))\n"
                 "def get_sweep(axes):\n"
                 "  return [{'seed': 0}, {'seed': 1}, {'model_size': '25k'}]\n")
  parser = argparse.ArgumentParser()
  sweep.add_plan_args(parser)
  parser.add_argument("--workers", type=int, default=1)
  args = parser.parse_args([str(exp), "--root", str(tmp_path / "w")])
  runs = sweep.planned(args)
  assert [[r.name for r in g] for g in sweep.sweep_groups(args, runs)] == [
      ["seed=0", "seed=1"], ["model_size=25k"]]
  assert sweep.train_command(args, runs[:2])[-4:] == ["--run", "seed=0", "--run", "seed=1"]
  result = sweep.run_sweep(args, runs[:2], progress=False)       # one subprocess, two runs
  assert result["ran"] == 2 and result["failed"] == 2
  assert all("no_such_dataset" in f["log_tail"] for f in result["failures"])
  assert len(read_jsonl(str(tmp_path / "w" / "exp" / "failures.jsonl"))) == 2
