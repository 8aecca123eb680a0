"""The claims' criteria (analysis/criteria.toml), frozen before the runs, and the verdicts they give.

    freeze_criteria(root)     copy criteria.toml into a results root with its sha256, the first
                              time; refuse (CriteriaChangedError) if a later run finds another one
    load_criteria(root)       the frozen criteria of a root (the packaged file if none is frozen)
    judge(spec, stat)         "held" / "not held" / "not tested" for one claim

A claim's `test` is a boolean expression over the named values its statistic returns, read
with `ast` and evaluated by a whitelist (numbers, names, + - *, comparisons, and/or/not): the
file holds data, never code.
"""

from __future__ import annotations

import ast
import hashlib
import operator
import os
import tomllib
from typing import Any

CRITERIA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "criteria.toml")
FROZEN_NAME = "criteria.toml"
SHA_NAME = "criteria.toml.sha256"
VERDICTS = ("held", "not held", "not tested")
_FIELDS = ("id", "claim", "paper", "statistic", "criterion", "test", "requires", "budget")

# How a `requires` count reads in a "not tested" reason.
REQUIREMENT_WORDS = {
    "seeds": "independent seeds", "sizes": "model sizes", "data_sizes": "data sizes",
    "baselines": "shortcut baselines", "fractions": "helpful fractions", "rl_samples": "RL samples per run",
    "same_size_test_pm": "test PMs of the train PM's size", "test_pm_sizes": "test-PM sizes",
    "n_max": "samples per prompt (n max)", "gold": "gold rewards", "snapshots": "policy snapshots",
    "red_team_prompts": "red-team (harmful_request) eval prompts",
}


class CriteriaError(ValueError):
  """criteria.toml is malformed (the message names the claim and field)."""


class CriteriaChangedError(RuntimeError):
  """A results root's frozen criteria differ from the ones about to judge it."""


def sha256_of(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def parse_criteria(text: str, where: str = "criteria.toml") -> dict:
  """The criteria file as {"version", "claims": [spec, ...]}, each spec checked for every field
  and its `test` parsed (CriteriaError names what is wrong)."""
  try:
    raw = tomllib.loads(text)
  except tomllib.TOMLDecodeError as e:
    raise CriteriaError(f"{where}: {e}") from None
  claims = raw.get("claim") or []
  seen = set()
  for spec in claims:
    missing = [f for f in _FIELDS if f not in spec]
    if missing:
      raise CriteriaError(f"{where}: claim {spec.get('id', '?')!r} lacks {missing}")
    if spec["id"] in seen:
      raise CriteriaError(f"{where}: claim {spec['id']!r} appears twice")
    seen.add(spec["id"])
    names_in(spec["test"], f"{where}: claim {spec['id']!r}")
    spec.setdefault("params", {})
  return {"version": raw.get("version"), "claims": claims}


def load_criteria(root: str | None = None) -> dict:
  """The criteria that judge `root`: its frozen copy if there is one (checked against the sha256
  frozen beside it), else the packaged analysis/criteria.toml. Adds "path", "sha256", "frozen"."""
  frozen = os.path.join(root, FROZEN_NAME) if root else None
  path = frozen if frozen and os.path.exists(frozen) else CRITERIA_PATH
  if path == frozen:
    _check_frozen_copy(root)
  with open(path) as f:
    out = parse_criteria(f.read(), path)
  return {**out, "path": path, "sha256": sha256_of(path), "frozen": path == frozen}


def _check_frozen_copy(root: str) -> str:
  """The sha256 frozen in root; CriteriaChangedError if the frozen copy was edited since."""
  frozen, sha_path = os.path.join(root, FROZEN_NAME), os.path.join(root, SHA_NAME)
  if not os.path.exists(sha_path):
    raise CriteriaChangedError(f"{frozen} has no {SHA_NAME} beside it: it was not frozen by "
                               f"freeze_criteria; delete it or restore the sha256")
  with open(sha_path) as f:
    recorded = f.read().split()[0]
  if sha256_of(frozen) != recorded:
    raise CriteriaChangedError(f"{frozen} was edited after it was frozen (sha256 {sha256_of(frozen)}, "
                               f"frozen {recorded})")
  return recorded


def freeze_criteria(root: str, source: str = CRITERIA_PATH) -> str:
  """Freeze the criteria of a results root before its runs; return the frozen path.

  The first time: copy `source` to <root>/criteria.toml and its sha256 to
  <root>/criteria.toml.sha256. Later: check that `source` is byte-for-byte the frozen file and
  raise CriteriaChangedError otherwise, so criteria can never be changed after runs were judged by
  them (start a new results root to use new criteria)."""
  with open(source, "rb") as f:
    data = f.read()
  parse_criteria(data.decode(), source)
  sha = hashlib.sha256(data).hexdigest()
  frozen = os.path.join(root, FROZEN_NAME)
  if os.path.exists(frozen):
    recorded = _check_frozen_copy(root)
    if recorded != sha:
      raise CriteriaChangedError(
          f"the criteria in {source} (sha256 {sha[:12]}) differ from those frozen in {root} before "
          f"its runs (sha256 {recorded[:12]}): criteria are fixed before the runs they judge; use a "
          f"new results root (or restore {source})")
    return frozen
  os.makedirs(root, exist_ok=True)
  with open(frozen, "wb") as f:
    f.write(data)
  with open(os.path.join(root, SHA_NAME), "w") as f:
    f.write(f"{sha}  {FROZEN_NAME}\n")
  return frozen


# ----------------------------------------------------------------------------- the test expressions

_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def names_in(test: str, where: str = "test") -> list[str]:
  """The value names a test expression reads; CriteriaError if it uses anything off the whitelist."""
  try:
    tree = ast.parse(test, mode="eval")
  except SyntaxError as e:
    raise CriteriaError(f"{where}: test {test!r} is not an expression: {e.msg}") from None
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Name):
      names.append(node.id)
    elif not isinstance(node, (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not,
                               ast.USub, ast.Compare, ast.BinOp, ast.Load, ast.Constant,
                               *_COMPARE, *_BINARY)):
      raise CriteriaError(f"{where}: test {test!r} uses {type(node).__name__}, which tests may not")
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
      raise CriteriaError(f"{where}: test {test!r} has a non-number constant {node.value!r}")
  return names


def _eval(node, values: dict):
  if isinstance(node, ast.Expression):
    return _eval(node.body, values)
  if isinstance(node, ast.Constant):
    return node.value
  if isinstance(node, ast.Name):
    return values[node.id]
  if isinstance(node, ast.UnaryOp):
    x = _eval(node.operand, values)
    return (not x) if isinstance(node.op, ast.Not) else -x
  if isinstance(node, ast.BinOp):
    return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
  if isinstance(node, ast.BoolOp):
    parts = [_eval(v, values) for v in node.values]
    return all(parts) if isinstance(node.op, ast.And) else any(parts)
  left = _eval(node.left, values)
  for op, comparator in zip(node.ops, node.comparators):
    right = _eval(comparator, values)
    if not _COMPARE[type(op)](left, right):
      return False
    left = right
  return True


def evaluate_test(test: str, values: dict) -> bool:
  """The truth of `test` on the named values (each must be a finite number; see missing_values)."""
  names_in(test)
  return bool(_eval(ast.parse(test, mode="eval"), values))


def missing_values(test: str, values: dict) -> list[str]:
  """The names `test` reads that `values` lacks or holds as None / non-finite."""
  def ok(x):
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")
  return sorted({n for n in names_in(test) if not ok(values.get(n))})


def unmet_requirements(requires: dict, counts: dict) -> list[str]:
  """Reasons, one per requirement the counts fall short of: 'independent seeds: 2 (the criterion
  needs >= 3)'."""
  out = []
  for key, need in requires.items():
    have = counts.get(key, 0) or 0
    if have < need:
      out.append(f"{REQUIREMENT_WORDS.get(key, key)}: {have:g} (the criterion needs >= {need:g})")
  return out


def judge(spec: dict, stat: dict | None) -> tuple[str, str]:
  """(verdict, reason) of one claim from its statistic's output.

  stat None or with "not_tested" (the stage did not run, no runs of the kind): "not tested".
  A requirement unmet: "not tested". Requirements met but a value of the test missing: "not
  held" (the measurement the claim rests on failed). Else the test decides.
  """
  if stat is None or stat.get("not_tested"):
    return "not tested", (stat or {}).get("not_tested") or "no data for this claim"
  unmet = unmet_requirements(spec["requires"], stat.get("counts", {}))
  if unmet:
    return "not tested", "; ".join(unmet)
  missing = missing_values(spec["test"], stat["values"])
  if missing:
    return "not held", f"could not compute {', '.join(missing)}"
  held = evaluate_test(spec["test"], stat["values"])
  return ("held", "") if held else ("not held", f"{spec['test']} is false")
