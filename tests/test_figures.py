"""Figures a reader can read: every figure of the analysis, on the fake laptop-like results of
tests/test_analysis.py (its 500-4000 pair range is the short log range whose minor tick labels
used to overlap) and on a grid of 3 PPO seeds per config, has no clipped legend, no legend over
data and no overlapping tick labels (`plots.layout_problems`); and the check itself fails on each
of those faults."""

from __future__ import annotations

import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis import cli, plots
from analysis import pm as pm_lib
from analysis import pm_figures
from tests.test_analysis import build_results, make_ppo_run


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
  root = build_results(str(tmp_path_factory.mktemp("results")))
  ppo = os.path.join(root, "seeds", "ppo")
  rng = np.random.default_rng(7)
  for seed in range(3):
    for policy, pm in ((("p25k", 25_000), ("pm100k", 100_000)), (("p25k", 25_000), ("pm25k", 25_000))):
      make_ppo_run(ppo, f"{policy[0]}_{pm[0]}-s{seed}", policy, pm, rng)
  out = str(tmp_path_factory.mktemp("figures"))
  figs = dict(cli.run_pm(root, out, n_boot=50)["figures"])
  figs.update({f"rl/{k}": v for k, v in cli.run_rl(os.path.join(root, "quick"), out)["figures"].items()})
  figs.update({f"seeds/{k}": v for k, v in cli.run_rl(os.path.join(root, "seeds"), out)["figures"].items()})
  return figs


def test_every_figure_is_readable(figures):
  assert len(figures) >= 14
  problems = {stem: plots.layout_problems(fig) for stem, fig in figures.items()}
  assert {k: v for k, v in problems.items() if v} == {}


def test_seeds_of_one_config_are_one_line_with_a_band(figures):
  ax = figures["seeds/rl_score_vs_sqrt_kl"].axes[0]
  labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
  assert "policy p25k, PM pm100k (3 seeds)" in labels and "policy p25k, PM pm25k (3 seeds)" in labels
  assert len(ax.collections) == 2                       # one +-1 sd band per config
  styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
  assert styles["policy p25k, PM pm100k (3 seeds)"] != styles["policy p25k, PM pm25k (3 seeds)"]


def test_best_of_n_puts_logits_and_gold_on_separate_panels(figures):
  fig = figures["rl/rl_best_of_n"]
  ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
  assert any("logits" in y for y in ylabels) and any("gold units" in y for y in ylabels)
  assert not any("logits" in y and "gold" in y for y in ylabels)


def test_data_axis_is_ticked_at_the_data_sizes_without_minor_labels(figures):
  ax = figures["pm_accuracy_vs_data"].axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ["500", "1k", "2k", "4k"]
  assert not [t for t in ax.xaxis.get_ticklabels(minor=True) if t.get_text()]


def test_a_legend_outside_the_saved_image_is_reported(monkeypatch):
  fig, (ax,) = plots.new_figure()
  ax.plot([0, 1], [0, 1], label="a line")
  fig.legend(loc="center left", bbox_to_anchor=(1.3, 0.5))
  monkeypatch.setattr(plots, "SAVE_KW", {})           # saved as the figure rectangle: clipped
  assert any("clipped" in p for p in plots.layout_problems(fig))
  monkeypatch.setattr(plots, "SAVE_KW", {"bbox_inches": "tight", "pad_inches": 0.05})
  assert not any("clipped" in p for p in plots.layout_problems(fig))
  plt.close(fig)


def test_a_legend_over_data_is_reported():
  fig, (ax,) = plots.new_figure()
  x = np.linspace(0, 1, 50)
  ax.plot(x, x, label="diagonal")
  ax.legend(loc="center")
  assert any("covers" in p for p in plots.layout_problems(fig))
  ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
  assert plots.layout_problems(fig) == []
  plt.close(fig)


def test_overlapping_tick_labels_are_reported():
  fig, (ax,) = plots.new_figure()
  ax.plot([1, 2], [0, 1])
  ax.set_xticks([1.0, 1.02], ["a long tick label", "another long one"])
  assert any("x tick labels overlap" in p for p in plots.layout_problems(fig))
  plt.close(fig)


def test_the_old_data_figure_overlapped_its_minor_tick_labels():
  # What pm_accuracy_vs_data drew before log_ticks: matplotlib's default log axis over 500-8000
  # pairs labels its minor ticks, and on a 4-inch panel they collide.
  fig, (ax,) = plots.new_figure()
  ax.plot([500, 2000, 8000], [0.6, 0.65, 0.7])
  ax.set_xscale("log")
  assert plots.layout_problems(fig) == ["x tick labels overlap on panel ''"]
  plots.log_ticks(ax, [500, 2000, 8000])
  assert plots.layout_problems(fig) == []
  plt.close(fig)


def test_the_best_baseline_by_data_size_by_hand():
  recs = [{"run": f"r{i}", "model_size": s, "seed": 0, "params": p, "num_train": 1000, "dataset": "d",
           "helpful_fraction": None, "harmless_weight": 1.0, "accuracy": 0.7, "bayes_ceiling": 0.8,
           "by_source": {}, "bayes_by_source": {}, "by_turn": {}, "shorter_baseline": 0.55,
           "distinct_baseline": 0.5, "bow_baseline": bow} for i, (s, p, bow) in
          enumerate((("1k", 1000, 0.56), ("5k", 5000, 0.60)))]
  # bag of words: mean of 0.56 and 0.60 = 0.58 beats the shorter reply's 0.55.
  assert pm_figures.best_baseline_by_data(pm_lib.aggregate(recs)) == pytest.approx({1000: 0.58})
  json.dumps(pm_lib.aggregate(recs))
