"""Every experiment file builds its config and sweep; the sweep runner names, prints and skips runs."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from hh_jax.config import override
from hh_jax.train import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))


@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if not p.endswith("__init__.py")],
                         ids=os.path.basename)
def test_experiment_file_builds_config_and_sweep(path):
  module = sweep.load_experiment(path)
  cfg = module.get_config()
  runs = module.get_sweep()
  assert runs, "an empty sweep"
  names = {sweep.run_name(o) for o in runs}
  assert len(names) == len(runs), "two runs of the sweep would share a directory"
  for overrides in runs:
    override(cfg, sweep.format_paths(overrides, "/tmp/x/y"))   # every key is a real field


def test_pm_scaling_grid_spans_the_required_ranges():
  module = sweep.load_experiment(os.path.join(ROOT, "experiments", "pm_scaling.py"))
  from hh_jax import models
  sizes = {o["model_size"] for o in module.get_sweep()}
  params = [models.count_params(models.ladder_config(s, vocab_size=137, max_len=64)) for s in sizes]
  data = {o["data.num_train_pairs"] for o in module.get_sweep()}
  seeds = {o["seed"] for o in module.get_sweep()}
  assert len(sizes) >= 5 and max(params) / min(params) >= 10 ** 2.5
  assert len(data) >= 4 and max(data) / min(data) >= 10 ** 1.5
  assert len(seeds) >= 2


def test_sweep_print_emits_one_command_per_run():
  path = os.path.join(ROOT, "experiments", "pm_scaling.py")
  out = subprocess.run([sys.executable, "-m", "hh_jax.cli", "sweep", path, "--workdir", "w",
                        "--print"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
  lines = out.strip().splitlines()
  assert len(lines) == len(sweep.load_experiment(path).get_sweep())
  assert lines[0].startswith("hh-jax train ") and "--set model_size=" in lines[0]


def test_override_typo_in_train_cli_names_the_field(tmp_path):
  path = os.path.join(ROOT, "experiments", "pm_scaling.py")
  proc = subprocess.run([sys.executable, "-m", "hh_jax.cli", "train", path, "--workdir",
                         str(tmp_path / "r"), "--set", "optim.learnin_rate=1"],
                        capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 2 and "optim.learnin_rate" in proc.stderr


def test_sweep_skips_finished_runs_and_records_failures(tmp_path):
  exp = tmp_path / "exp.py"
  exp.write_text(
      "from hh_jax.config import RunConfig, DataConfig\n"
      "def get_config():\n"
      "  return RunConfig(data=DataConfig(dataset='no_such_dataset/x', data_dir='" + str(tmp_path) + "'))\n"
      "def get_sweep():\n"
      "  return [{'seed': 0}, {'seed': 1}]\n")
  done = tmp_path / "w" / "seed=0"
  done.mkdir(parents=True)
  (done / "summary.json").write_text("{}")
  result = sweep.run_sweep(str(exp), str(tmp_path / "w"), progress=False)
  assert result["runs"] == 2 and result["ran"] == 1 and result["failed"] == 1
  assert "no_such_dataset" in result["failures"][0]["log_tail"]
  assert (tmp_path / "w" / "failures.jsonl").exists()
