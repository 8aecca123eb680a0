"""Sizes a reader can hold: no module over MAX_MODULE_LINES, no function over MAX_FUNCTION_LINES.

A function's length runs from its `def` line to its last line (decorators excluded);
methods and nested functions are measured on their own, and a nested function also
counts towards the function around it.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ("hh_jax", "analysis", "experiments", "benchmarks")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def function_lengths(source: str) -> list[tuple[int, str, int]]:
  """(def line, name, lines from the def line to the last line) of every def in source."""
  return [(node.lineno, node.name, node.end_lineno - node.lineno + 1)
          for node in ast.walk(ast.parse(source))
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def oversized(path: pathlib.Path) -> list[str]:
  """"file:line ..." for the module and every function in it over its limit."""
  source = path.read_text()
  shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
  found = []
  num_lines = len(source.splitlines())
  if num_lines > MAX_MODULE_LINES:
    found.append(f"{shown}:1 module is {num_lines} lines (limit {MAX_MODULE_LINES})")
  for line, name, length in sorted(function_lengths(source)):
    if length > MAX_FUNCTION_LINES:
      found.append(f"{shown}:{line} {name} is {length} lines (limit {MAX_FUNCTION_LINES})")
  return found


def all_modules() -> list[pathlib.Path]:
  return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_no_module_or_function_is_oversized():
  modules = all_modules()
  assert modules
  found = [v for path in modules for v in oversized(path)]
  assert not found, "too long to read in one go:\n" + "\n".join(found)


def test_lengths_count_from_def_to_last_line(tmp_path):
  """A planted 3-line method and 82-line function: only the function is reported."""
  body = "".join(f"  x{i} = {i}\n" for i in range(80))
  module = tmp_path / "planted.py"
  module.write_text("class A:\n  @staticmethod\n  def small():\n    y = 1\n    return y\n\n"
                    f"def big():\n{body}  return x0\n")
  assert sorted(function_lengths(module.read_text())) == [(3, "small", 3), (7, "big", 82)]
  assert oversized(module) == [f"{module}:7 big is 82 lines (limit 80)"]
