"""The README's results block is the claims table of the measured laptop run, and the
`hh-jax analyze readme-table` command that keeps it so."""

from __future__ import annotations

import json
import os

from analysis import cli, report
from analysis.runs import read_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
NUMBERS = os.path.join(ROOT, "docs", "worlds", "v4", "laptop", "laptop-ws0", "numbers.json")


def test_readme_block_is_the_laptop_claims_table():
  with open(README) as f:
    block = report.results_block(f.read())
  assert block == report.results_table(read_json(NUMBERS)), \
      "README results block is stale: run `hh-jax analyze readme-table`"


NUMBERS_SMALL = {"preset": "t", "claims": [
    {"id": "a", "claim": "x rises", "paper": "Fig 1", "ours": 0.5, "ci": None, "held": True, "detail": ""}]}
TABLE = "\n".join(["| claim | paper | ours | 95% CI | held |", "|---|---|---|---|---|",
                   "| **a**: x rises | Fig 1 | 0.5 | n/a | yes |"])


def _files(tmp_path, block_lines):
  numbers, readme = tmp_path / "numbers.json", tmp_path / "README.md"
  numbers.write_text(json.dumps(NUMBERS_SMALL))
  readme.write_text("\n".join(["# title", "", "before", report.README_START, *block_lines,
                               report.README_END, "after", ""]))
  return str(numbers), str(readme)


def test_readme_table_check_then_write(tmp_path, capsys):
  numbers, readme = _files(tmp_path, ["| stale | table |"])
  stale = open(readme).read()
  assert cli.main(["readme-table", "--numbers", numbers, "--readme", readme, "--check"]) == 1
  out = capsys.readouterr().out
  assert "-| stale | table |" in out and "+| **a**: x rises | Fig 1 | 0.5 | n/a | yes |" in out
  assert open(readme).read() == stale                            # --check writes nothing
  assert cli.main(["readme-table", "--numbers", numbers, "--readme", readme]) == 0
  assert open(readme).read() == "\n".join(["# title", "", "before", report.README_START, "", TABLE, "",
                                           report.README_END, "after", ""])
  assert cli.main(["readme-table", "--numbers", numbers, "--readme", readme, "--check"]) == 0
  assert report.sync_readme(numbers, readme) == ""                # nothing left to change


def test_readme_table_without_markers_fails(tmp_path, capsys):
  numbers, readme = _files(tmp_path, [])
  with open(readme, "w") as f:
    f.write(f"# title\n{report.README_END}\n{report.README_START}\n")   # end before start
  assert cli.main(["readme-table", "--numbers", numbers, "--readme", readme, "--check"]) == 1
  assert f"{readme}: need one" in capsys.readouterr().err


def test_ci_runs_exactly_the_readme_test_command():
  """The README's test command is the last line of .ci/run, character for character."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, ".ci", "run")) as f:
    ci_command = f.read().strip().splitlines()[-1]
  with open(os.path.join(root, "README.md")) as f:
    assert ci_command in [line.strip() for line in f], ci_command
