"""Claims side by side over world seeds: one row per claim, one column per results root (each a
`hh-jax reproduce --world-seed N` output with its numbers.json), each cell the headline value,
its interval over seeds and the verdict, and a last column counting the worlds where it held.

    hh-jax analyze worlds results/laptop results/laptop-ws1 results/laptop-ws2 [--out FILE]

A claim is a finding of the method only if it holds on worlds nobody tuned on; this table is
how a reader checks that. Roots whose criteria differ (another criteria version) are refused,
since their verdicts are not judged by the same rules.
"""

from __future__ import annotations

import os
from typing import Sequence

from analysis import report
from analysis.runs import read_json

_SHORT = {"held": "held", "not held": "**not held**", "not tested": "not tested"}


def load_numbers(roots: Sequence[str]) -> list[tuple[str, dict]]:
  """(label, numbers.json) per root; the label is the root's directory name. Raises
  FileNotFoundError for a root without numbers.json and ValueError if their criteria differ."""
  out = []
  for root in roots:
    path = os.path.join(root, "numbers.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no numbers.json (has `hh-jax reproduce` finished there?)")
    out.append((os.path.basename(os.path.normpath(root)), read_json(path)))
  shas = {label: (n.get("criteria") or {}).get("sha256") for label, n in out}
  if len(set(shas.values())) > 1:
    raise ValueError(f"the roots were judged by different criteria files: {shas}")
  return out


def cell(claim: dict | None) -> str:
  """'0.021 [0.006, 0.036] held' for one claim of one world ('-' when absent)."""
  if claim is None:
    return "-"
  verdict = claim.get("verdict", "held" if claim.get("held") else "not held")
  if verdict == "not tested":
    return "not tested"
  value, ci = report.estimate_cells(claim.get("ours"), claim.get("ci"))
  return f"{value} {ci if ci != 'n/a' else ''} {_SHORT[verdict]}".replace("  ", " ")


def worlds_table(numbers: Sequence[tuple[str, dict]]) -> str:
  """The markdown table of the module docstring."""
  ids = list(dict.fromkeys(c["id"] for _, n in numbers for c in n["claims"]))
  by_world = [(label, {c["id"]: c for c in n["claims"]}) for label, n in numbers]
  lines = ["| claim | " + " | ".join(label for label, _ in by_world) + " | held in |",
           "|---|" + "---|" * len(by_world) + "---|"]
  for cid in ids:
    cells = [cell(claims.get(cid)) for _, claims in by_world]
    tested = [claims[cid] for _, claims in by_world
              if cid in claims and claims[cid].get("verdict") != "not tested"]
    held = sum(c.get("verdict") == "held" for c in tested)
    lines.append(report._row([cid, *cells, f"{held} of {len(tested)}"]))
  return "\n".join(lines)
