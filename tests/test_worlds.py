"""The claims-by-world table: one column per results root, verdicts counted over tested worlds,
and roots judged by different criteria refused."""

from __future__ import annotations

import json

import pytest

from analysis import cli, worlds


def _numbers(root, sha, claims):
  root.mkdir(parents=True)
  (root / "numbers.json").write_text(json.dumps({"criteria": {"sha256": sha}, "claims": claims}))
  return str(root)


def _claim(cid, verdict, ours=0.0123, ci=(0.004, 0.021)):
  return {"id": cid, "verdict": verdict, "held": verdict == "held", "ours": ours, "ci": list(ci)}


def test_a_row_per_claim_a_column_per_world_and_held_counts(tmp_path, capsys):
  a = _numbers(tmp_path / "laptop", "x", [_claim("b", "held"), _claim("r2", "not tested", None, (None, None))])
  b = _numbers(tmp_path / "laptop-ws1", "x", [_claim("b", "not held", -0.002, (-0.01, 0.006)),
                                              _claim("r2", "held", 0.95, (0.93, 0.97))])
  table = worlds.worlds_table(worlds.load_numbers([a, b])).splitlines()
  assert table[0] == "| claim | laptop | laptop-ws1 | held in |"
  # Width 0.017 -> 3 decimals; width 0.016 -> 3 decimals.
  assert table[2] == "| b | 0.012 [0.004, 0.021] held | -0.002 [-0.010, 0.006] **not held** | 1 of 2 |"
  assert table[3] == "| r2 | not tested | 0.950 [0.930, 0.970] held | 1 of 1 |"
  out = tmp_path / "t.md"
  assert cli.main(["worlds", a, b, "--out", str(out)]) == 0
  assert out.read_text().splitlines() == table and "held in" in capsys.readouterr().out


def test_roots_of_different_criteria_or_without_numbers_are_refused(tmp_path, capsys):
  a = _numbers(tmp_path / "a", "x", [_claim("b", "held")])
  b = _numbers(tmp_path / "b", "y", [_claim("b", "held")])
  with pytest.raises(ValueError, match="different criteria"):
    worlds.load_numbers([a, b])
  assert cli.main(["worlds", a, str(tmp_path / "missing")]) == 1
  assert "no numbers.json" in capsys.readouterr().err


def test_the_published_claims_by_world_table_is_generated_from_its_numbers():
  """docs/worlds/claims_by_world.md is `hh-jax analyze worlds` of the published roots beside it."""
  import pathlib
  top = pathlib.Path(__file__).resolve().parent.parent / "docs" / "worlds"
  for docs, fewest in ((top, 3), (top / "online", 3), (top / "v4", 2), (top / "v4" / "laptop", 2)):
    roots = sorted(str(p) for p in docs.iterdir() if (p / "numbers.json").exists())
    assert len(roots) >= fewest, docs
    table = worlds.worlds_table(worlds.load_numbers(roots))
    assert (docs / "claims_by_world.md").read_text().split("\n<!-- table -->\n")[1].strip() == table
