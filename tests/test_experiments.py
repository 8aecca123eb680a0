"""Experiment files: every file plans its runs; refs resolve by config values or run name and
fail clearly; the sweep runner prints, skips finished runs and records failures."""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

import pytest

from hh_jax import models
from hh_jax.train import experiment as ex
from hh_jax.train import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = [p for p in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))
         if os.path.basename(p) not in ("__init__.py", "common.py", "presets.py")]


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_every_experiment_file_plans_distinct_runs_whose_refs_exist(path, tmp_path):
  runs = ex.plan(path, str(tmp_path))
  assert runs, "an empty sweep"
  assert len({r.dir for r in runs}) == len(runs)
  module = ex.load_experiment(path)
  for dep in getattr(module, "NEEDS", ()):
    dep_dirs = {r.dir for r in ex.plan(dep, str(tmp_path))}
    for run in runs:                        # every path a run points at is a run of a dependency
      for value in run.overrides.values():
        for v in (value if isinstance(value, tuple) else (value,)):
          if isinstance(v, str) and v.startswith(str(tmp_path / dep) + os.sep):
            assert v in dep_dirs, (run.name, v)


def test_pm_scaling_grid_spans_the_required_ranges(tmp_path):
  runs = ex.plan("pm_scaling", str(tmp_path))
  sizes = {r.config.model_size for r in runs}
  params = [models.count_params(models.ladder_config(s, vocab_size=137, max_len=64)) for s in sizes]
  data = {r.config.data.num_train_pairs for r in runs}
  assert len(sizes) >= 5 and max(params) / min(params) >= 10 ** 2.5
  assert len(data) >= 4 and max(data) / min(data) >= 10 ** 1.5
  assert len({r.config.seed for r in runs}) >= 2
  # each PM starts from the base LM of its own size
  assert all(r.config.init_from == str(tmp_path / "base_lm" / r.config.model_size) for r in runs)


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_refs_resolve_by_value_and_name_and_fail_clearly(tmp_path):
  runs = ex.plan("ppo", str(tmp_path))
  main = [r for r in runs if r.name == "policy-100k-pm-100k-s0"][0]
  assert main.config.reward_pm == str(tmp_path / "pm_halves" / "train-100k")
  assert main.config.test_pms == tuple(str(tmp_path / "pm_halves" / f"test-{s}")
                                       for s in ("6k", "25k", "100k"))
  assert ex.plan("elo", str(tmp_path))[0].config.ppo_run == main.dir
  # Every run config once per PPO seed, each seed its own config value.
  seeds = sorted(r.config.seed for r in runs if r.name.startswith("policy-100k-pm-100k-"))
  assert seeds == [0, 1, 2]
  assert [r.config.ppo_run for r in ex.plan("elo", str(tmp_path))] == [
      str(tmp_path / "ppo" / f"policy-100k-pm-100k-s{s}") for s in (0, 1, 2)]
  with pytest.raises(ex.ExperimentError, match="matches 0 runs of base_lm"):
    ex.plan("ppo", str(tmp_path), axes={"policy_size": "3M"})         # no base LM of that size
  bad = _write(tmp_path / "bad.py", "from hh_jax.config import RunConfig\n"
               "from hh_jax.train.experiment import ref\n"
               "def get_config(): return RunConfig()\n"
               "def get_sweep(axes): return [{'init_from': ref('base_lm', model_size='1k')}]\n")
  with pytest.raises(ex.ExperimentError, match="not in NEEDS"):
    ex.plan(bad, str(tmp_path))


def test_axes_and_extra_overrides(tmp_path):
  runs = ex.plan("pm_scaling", str(tmp_path), axes={"seeds": (0, 1, 2, 3), "not_an_axis": 1},
                 extra={"optim.schedule": "constant"})
  assert len(runs) == 5 * 4 * 4 and {r.config.optim.schedule for r in runs} == {"constant"}


def test_sweep_print_emits_one_train_command_per_run(tmp_path):
  out = subprocess.run([sys.executable, "-m", "hh_jax.cli", "sweep", "experiments/pm_mix.py",
                        "--root", str(tmp_path), "--preset", "quick", "--print"],
                       capture_output=True, text=True, cwd=ROOT, check=True).stdout
  lines = out.strip().splitlines()
  assert len(lines) == 2 * 5 * 3      # 2 sizes x 5 helpful fractions x 3 seeds
  assert lines[0].startswith("hh-jax train experiments/pm_mix.py ") and "--preset quick" in lines[0]
  assert lines[0].endswith("--run 1k-h0-s0")


def test_train_cli_names_a_typo_without_a_traceback(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "hh_jax.cli", "train", "experiments/pm_scaling.py",
                         "--workdir", str(tmp_path / "r"), "--set", "optim.learnin_rate=1"],
                        capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 2 and "optim.learnin_rate" in proc.stderr
  assert "Traceback" not in proc.stderr
  proc = subprocess.run([sys.executable, "-m", "hh_jax.cli", "train", "experiments/pm_scaling.py",
                         "--root", str(tmp_path), "--run", "no-such-run"],
                        capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 2 and "no run 'no-such-run'" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_sweep_skips_finished_runs_and_records_failures(tmp_path):
  exp = _write(tmp_path / "exp.py",
               "from hh_jax.config import RunConfig, DataConfig\n"
               "def get_config():\n"
               "  return RunConfig(data=DataConfig(dataset='no_such_dataset/x', data_dir='"
               + str(tmp_path) + "'))\n"
               "def get_sweep(axes):\n"
               "  return [{'seed': 0}, {'seed': 1}]\n")
  done = tmp_path / "w" / "exp" / "seed=0"
  done.mkdir(parents=True)
  (done / "summary.json").write_text("{}")
  args = sweep_args(exp, str(tmp_path / "w"))
  result = sweep.run_sweep(args, sweep.planned(args), progress=False)
  assert result["runs"] == 2 and result["ran"] == 1 and result["failed"] == 1
  assert "no_such_dataset" in result["failures"][0]["log_tail"]
  assert "Traceback" not in result["failures"][0]["log_tail"]      # a user error: one message
  assert (tmp_path / "w" / "exp" / "failures.jsonl").exists()


def sweep_args(experiment: str, root: str):
  parser = argparse.ArgumentParser()
  sweep.add_plan_args(parser)
  parser.add_argument("--workers", type=int, default=1)
  return parser.parse_args([experiment, "--root", root])


def test_the_paper_faithful_variant_changes_exactly_the_three_choices(tmp_path):
  from experiments.presets import PRESETS, paper_faithful
  from hh_jax.data import hh_synth
  from hh_jax.reproduce import link_base_lms
  laptop, paper = PRESETS["laptop"], paper_faithful(PRESETS["laptop"])
  assert paper.stages == tuple(s for s in laptop.stages if s not in ("base_lm", "ood"))
  root = str(tmp_path)
  for stage in ("pm_scaling", "ppo", "ppo_ensemble", "best_of_n"):
    ours, theirs = ex.plan(stage, root, laptop), ex.plan(stage, root, paper)
    assert [r.name for r in ours] == [r.name for r in theirs]
    for a, b in zip(ours, theirs):
      if stage == "pm_scaling":
        assert (a.config.optim.schedule, b.config.optim.schedule) == ("linear", "constant")
        assert a.config.data == b.config.data
      else:
        fa = hh_synth.config_from_name(a.config.prompt_dataset.split("/")[1]).helpful_fraction
        fb = hh_synth.config_from_name(b.config.prompt_dataset.split("/")[1]).helpful_fraction
        assert (fa, fb) == (0.9, 0.5)
      if stage in ("ppo", "ppo_ensemble"):
        assert (a.config.ppo_epochs, b.config.ppo_epochs) == (2, 1)
        assert (a.config.kl_coef, b.config.kl_coef) == (0.03, 0.001)
        assert a.config.eval_prompt_dataset == b.config.eval_prompt_dataset  # judged alike
      if stage == "ppo":
        assert (a.config.reward_norm, b.config.reward_norm) == (True, False)
  for a, b in zip(ex.plan("online_rlhf", root, laptop), ex.plan("online_rlhf", root, paper)):
    frac = lambda c: hh_synth.config_from_name(c.ppo.prompt_dataset.split("/")[1]).helpful_fraction  # noqa: E731
    assert (frac(a.config), frac(b.config)) == (0.9, 0.5)
    assert (a.config.pm.optim.schedule, b.config.pm.optim.schedule) == ("linear", "constant")
    assert ((a.config.ppo.ppo_epochs, a.config.ppo.kl_coef, a.config.ppo.reward_norm),
            (b.config.ppo.ppo_epochs, b.config.ppo.kl_coef, b.config.ppo.reward_norm)) == (
                (2, 0.03, True), (1, 0.001, False))
  with pytest.raises(FileNotFoundError, match="reuses the base LMs"):
    link_base_lms(root)
  os.makedirs(os.path.join(root, "base_lm", "25k"))
  variant = link_base_lms(root)
  assert os.path.isdir(os.path.join(variant, "base_lm", "25k"))
  assert link_base_lms(root) == variant                      # idempotent
