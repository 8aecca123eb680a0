"""Tests for analysis.report: the train/test gain gap from a PPO run through `hh-jax analyze rl`,
the standardised (shared-scale) gaps and gains, the claims tables (new and legacy), the HTML page,
the paper-faithful column and the CLI. The verdicts themselves: tests/test_criteria.py."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest

from analysis import cli, report
from analysis import rl as rl_lib

MAIN = "policy-25k-pm-100k"


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _ppo_run(root, gaps_end, iterations=20, first_samples=None):
  """Train gains 0.1 per iteration; the test PM follows it for 5 iterations, then gains
  0.1 (1 - gaps_end) per iteration: gap_i = 0.1 gaps_end max(0, i - 5). first_samples: the
  per-sample scores of the first iteration (samples.jsonl's first line)."""
  run = os.path.join(str(root), "ppo", MAIN)
  _write(os.path.join(run, "config.json"), {"kind": "ppo", "batch_size": 4})
  _write(os.path.join(run, "summary.json"), {"ppo/iterations": iterations})
  with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    for i in range(iterations):
      test = 0.1 * min(i, 5) + 0.1 * max(0, i - 5) * (1 - gaps_end)
      f.write(json.dumps({"step": i + 1, "ppo/kl": (0.1 * i) ** 2, "ppo/score_train": 0.1 * i,
                          "ppo/score_test/t": test}) + "\n")
  if first_samples is not None:
    with open(os.path.join(run, "samples.jsonl"), "w") as f:
      f.write(json.dumps({"step": 1, **first_samples}) + "\n")


@pytest.mark.parametrize("gaps_end, early, end, held", [(1.0, 0.06, 1.2, True), (0.0, 0.0, 0.0, False)])
def test_gain_gaps_by_hand(tmp_path, gaps_end, early, end, held):
  # gap_i = 0.1 max(0, i - 5) (gaps_end = 1). "Early" is index max(5, 20 // 5) = 5, averaged over
  # indices 3..7: (0 + 0 + 0 + 0.1 + 0.2) / 5 = 0.06; "end" is index 20 - 1 - 2 = 17, averaged
  # over indices 15..19: (1.0 + 1.1 + 1.2 + 1.3 + 1.4) / 5 = 1.2.
  _ppo_run(tmp_path, gaps_end)
  assert cli.main(["rl", str(tmp_path), "--out", str(tmp_path / "figures" / "rl")]) == 0
  with open(tmp_path / "figures" / "rl" / "rl_analysis.json") as f:
    (entry,) = json.load(f)["runs"]
  assert entry["gain_gaps"]["t"] == pytest.approx({"early": early, "end": end})
  assert (entry["gain_gaps"]["t"]["end"] > 0 and entry["gain_gaps"]["t"]["early"] < 0.5 * end) is held


def test_gain_gap_window_clips_at_the_start():
  # window_mean(x, 1, 5) averages x[0..3]; gain_gap_series subtracts both first scores.
  assert rl_lib.window_mean([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1) == pytest.approx(2.5)
  curve = {"score_train": np.array([1.0, 2.0, 4.0]), "score_test": {"t": np.array([5.0, 5.5, 6.0])}}
  assert rl_lib.gain_gap_series(curve, "t") == pytest.approx([0.0, 0.5, 2.0])


def test_estimates_are_rounded_to_the_precision_of_their_interval():
  # width 0.001852 -> second significant digit at 1e-4 -> 4 decimals
  assert report.format_estimate(0.003709, [0.002815, 0.004667]) == ("0.0037", "[0.0028, 0.0047]")
  # width 5.3 -> 1 decimal... its second significant digit is the first decimal
  assert report.format_estimate(87.89, [61.55, 66.85]) == ("87.9", "[61.5, 66.8]")
  assert report.format_estimate(0.5, None) == ("0.5", "n/a")           # no interval: as before
  # a value below the interval's resolution has no known sign: "0.000", never "-0.000"
  assert report.format_estimate(-0.0002, [-0.006, 0.005]) == ("0.000", "[-0.006, 0.005]")
  assert report.format_estimate(-0.0042, [-0.0054, -0.0029]) == ("-0.0042", "[-0.0054, -0.0029]")


def test_gains_on_the_shared_scale_by_hand(tmp_path):
  # Initial-policy samples: train PM scores [0, 0.2] (sd 0.1414), test PM [0, 2] (sd 1.414): the
  # test PM's logits are 10x larger. At the end the train gain is 1.9 and the test gain 0.5
  # (gaps_end = 1: test = 0.1 * 5 at every i >= 5), so on the shared scale the end gap is
  # 1.9 / 0.1414 - 0.5 / 1.414 and the test gain 0.5 / 1.414.
  _ppo_run(tmp_path, 1.0, first_samples={"score_train": [0.0, 0.2], "score_test/t": [0.0, 2.0],
                                         "kl": [0.0, 0.0]})
  _write(str(tmp_path / "ppo" / MAIN / "pms.json"),
         {"test": [{"name": "t", "model_size": "t", "params": 10}]})
  assert cli.main(["rl", str(tmp_path), "--out", str(tmp_path / "figures" / "rl")]) == 0
  with open(tmp_path / "figures" / "rl" / "rl_analysis.json") as f:
    (entry,) = json.load(f)["runs"]
  sd_train, sd_test = math.sqrt(0.02), math.sqrt(2.0)
  assert entry["initial"]["score_train"]["std"] == pytest.approx(sd_train)
  assert entry["robustness"]["tests"]["t"]["gain_std"] == pytest.approx(0.5 / sd_test)
  # gap_std_i = 0.1 i / sd_train - 0.1 min(i, 5) / sd_test; "end" averages i = 15..19.
  end = np.mean([0.1 * i / sd_train - 0.5 / sd_test for i in range(15, 20)])
  assert entry["gain_gaps_std"]["t"]["end"] == pytest.approx(end)


def test_without_initial_samples_there_is_no_shared_scale(tmp_path):
  _ppo_run(tmp_path, 1.0)
  assert cli.main(["rl", str(tmp_path), "--out", str(tmp_path / "figures" / "rl")]) == 0
  with open(tmp_path / "figures" / "rl" / "rl_analysis.json") as f:
    (entry,) = json.load(f)["runs"]
  assert entry["gain_gaps_std"] == {} and entry["robustness"]["tests"]["t"]["gain_std"] is None


CLAIM = {"id": "a", "claim": "x rises", "paper": "Fig 1", "criterion": "b above 0", "ours": 0.123456,
         "ci": [0.1, 0.2], "verdict": "held", "reason": "", "held": True}


def test_results_table_by_hand():
  numbers = {"claims": [
      {**CLAIM, "paper_faithful": {"verdict": "not held"}},
      {**CLAIM, "id": "b", "claim": "y | z", "ours": 2.0, "ci": None, "verdict": "not tested",
       "reason": "independent seeds: 1 (the criterion needs >= 3)", "held": False}]}
  assert report.results_table(numbers) == "\n".join([
      "| claim | paper | ours | 95% CI | criterion | verdict | paper-faithful |",
      "|---|---|---|---|---|---|---|",
      "| **a**: x rises | Fig 1 | 0.12 | [0.10, 0.20] | b above 0 | held | **not held** |",   # width 0.1: 2 decimals
      "| **b**: y \\| z | Fig 1 | 2 | n/a | b above 0 | not tested: independent seeds: 1 (the criterion "
      "needs >= 3) | not run |"])
  assert report.held_sentence(numbers) == \
      "1 of 1 tested claims of Bai et al. 2022 held at this scale; 1 not tested."


def test_legacy_results_table_by_hand():
  # A numbers.json from before the criteria file (docs/laptop/numbers.json) keeps its table.
  numbers = {"claims": [
      {"id": "a", "claim": "x rises", "paper": "Fig 1", "ours": 0.123456, "ci": [0.1, 0.2], "held": True},
      {"id": "b", "claim": "y | z", "paper": "Fig 2", "ours": {"t": {"early": 0.5, "end": 2.0}, "n": 3},
       "ci": None, "held": False}]}
  assert report.results_table(numbers) == "\n".join([
      "| claim | paper | ours | 95% CI | held |",
      "|---|---|---|---|---|",
      "| **a**: x rises | Fig 1 | 0.12 | [0.10, 0.20] | yes |",
      "| **b**: y \\| z | Fig 2 | t (early=0.5, end=2), n=3 | n/a | **no** |"])
  assert report.held_sentence(numbers) == "1 of 2 claims of Bai et al. 2022 held at this scale."


def _analysed_root(root, inputs):
  for key, rel in report.ANALYSIS_FILES.items():
    if key in inputs:                    # a stage that did not run has no analysis file
      _write(os.path.join(str(root), "figures", rel), inputs[key])
  return str(root)


def test_html_report_one_rounded_value_per_cell_and_the_criterion_beside_the_verdict(tmp_path):
  from tests.test_criteria import MAIN as CRIT_MAIN, good_inputs
  root = _analysed_root(tmp_path, good_inputs())
  report.write_report(root, "t", CRIT_MAIN)
  page = (tmp_path / "report.html").read_text()
  cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
  assert cells and not [c for c in cells if re.search(r"\w=\S", c)]        # no packed key=value
  for c in cells:     # no number longer than its interval supports, nor than 4 significant digits
    number = re.fullmatch(r"-?(\d+)\.(\d+)", c)     # (a near-zero-width interval: -0.007000)
    assert not number or len((number[1] + number[2]).lstrip("0")) <= 4, c
  row = next(r for r in re.findall(r"<tr>.*?</tr>", page) if "pm_accuracy_vs_params</b>:" in r)
  # b per seed 0.009..0.011: half-width 4.303 * 0.001 / sqrt(3) = 0.0025, width 0.005: 4 decimals.
  assert "<td class='num'>0.0100</td><td class='num'>[0.0075, 0.0125]</td>" in row
  assert "its 95% interval over seeds is above 0</td><td>held</td><td>not run</td>" in row
  assert "<th>claim</th>" in page


def test_paper_faithful_column(tmp_path):
  from tests.test_criteria import MAIN as CRIT_MAIN, bad_inputs, good_inputs
  main = _analysed_root(tmp_path / "main", good_inputs())
  paper = _analysed_root(tmp_path / "paper", bad_inputs())
  assert cli.main(["report", main, "--main-run", CRIT_MAIN, "--paper-root", paper]) == 0
  numbers = json.loads((tmp_path / "main" / "numbers.json").read_text())
  assert {c["paper_faithful"]["verdict"] for c in numbers["claims"]} == {"not held"}
  assert {c["verdict"] for c in numbers["claims"]} == {"held"}
  text = (tmp_path / "main" / "report.md").read_text()
  n = len(report.load_criteria()["claims"])
  assert f"Paper-faithful variant: 0 of {n} tested claims of Bai et al. 2022 held" in text
  numbers = report.write_report(main, None, CRIT_MAIN, paper_root=str(tmp_path / "absent"))
  assert {c["paper_faithful"]["verdict"] for c in numbers["claims"]} == {"not run"}


def test_report_cli_prints_the_held_sentence(tmp_path, capsys):
  from tests.test_criteria import MAIN as CRIT_MAIN, good_inputs
  root = _analysed_root(tmp_path, good_inputs(seeds=(0,)))
  assert cli.main(["report", root, "--preset", "quick", "--main-run", CRIT_MAIN]) == 0
  n = len(report.load_criteria()["claims"])
  assert f"0 of 0 tested claims of Bai et al. 2022 held at this scale; {n} not tested." in capsys.readouterr().out
  with open(tmp_path / "numbers.json") as f:
    saved = json.load(f, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
  assert saved["preset"] == "quick" and not saved["criteria"]["frozen"]
  assert (tmp_path / "report.md").read_text().startswith("# hh-jax reproduction report (quick)")


def test_a_zero_width_interval_shows_four_significant_digits():
  assert report.format_estimate(0.02000000000000001, [0.02, 0.02000000000000002]) == ("0.02000", "[0.02000, 0.02000]")
