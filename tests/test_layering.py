"""The layers a reader can see: what each package may import.

    hh_jax/models, hh_jax/data   nothing from hh_jax.train, hh_jax.reproduce, hh_jax.bench,
                                 experiments or analysis (the library below the trainers)
    hh_jax/eval                  no trainer or run lifecycle (models are duck-typed on
                                 .graphdef/.params; sampling comes from hh_jax.train.rollout)
    analysis/                    nothing from hh_jax (fits and figures read run files only)

Imports are read from the source (ast), top level and inside functions alike.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY_FORBIDDEN = ("hh_jax.train", "hh_jax.reproduce", "hh_jax.bench", "experiments", "analysis")
EVAL_FORBIDDEN = ("hh_jax.train.ppo", "hh_jax.train.lifecycle", "hh_jax.reproduce", "hh_jax.bench",
                  "experiments", "analysis")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
  """(line, dotted module name) of every `import m` and absolute `from m import x` in tree.

  `from pkg import sub` also yields "pkg.sub", so importing a forbidden submodule by
  name is caught.
  """
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.append((node.lineno, node.module))
      found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
  return found


def is_under(module: str, package: str) -> bool:
  """module == package or module is inside it ("hh_jax.train.pm" is under "hh_jax.train")."""
  return module == package or module.startswith(package + ".")


def forbidden_imports(path: pathlib.Path, forbidden: tuple[str, ...]) -> list[str]:
  """"file:line imports module" for every import line of the file that reaches a forbidden package."""
  tree = ast.parse(path.read_text(), filename=str(path))
  shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
  first_per_line = {}   # line -> the first forbidden name on it (`from m import x`: m before m.x)
  for line, module in imported_modules(tree):
    if any(is_under(module, package) for package in forbidden):
      first_per_line.setdefault(line, module)
  return [f"{shown}:{line} imports {module}" for line, module in sorted(first_per_line.items())]


def violations(folders: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
  """forbidden_imports over every .py file below the folders (relative to the repository)."""
  paths = sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))
  assert paths, f"no modules found under {folders}"
  return [v for path in paths for v in forbidden_imports(path, forbidden)]


def test_models_and_data_import_no_trainer_or_driver():
  found = violations(("hh_jax/models", "hh_jax/data"), LIBRARY_FORBIDDEN)
  assert not found, "the library imports a layer above it:\n" + "\n".join(found)


def test_eval_imports_no_trainer_or_lifecycle():
  found = violations(("hh_jax/eval",), EVAL_FORBIDDEN)
  assert not found, "hh_jax/eval imports a trainer or driver:\n" + "\n".join(found)


def test_analysis_imports_nothing_from_hh_jax():
  found = violations(("analysis",), ("hh_jax",))
  assert not found, "analysis/ imports hh_jax:\n" + "\n".join(found)


def test_detector_catches_planted_imports(tmp_path):
  """Top-level, in-function and `from pkg import sub` forms are all found, with their lines."""
  module = tmp_path / "planted.py"
  module.write_text("import numpy as np\n"
                    "from hh_jax.models import api\n"
                    "from hh_jax import train\n"
                    "\n"
                    "def f():\n"
                    "  from hh_jax.train.pm import make_step\n"
                    "  import experiments.ppo\n"
                    "  return make_step\n")
  found = forbidden_imports(module, LIBRARY_FORBIDDEN)
  assert [v.split(" imports ")[0].rsplit(":", 1)[1] for v in found] == ["3", "6", "7"]
  assert f"{module}:6 imports hh_jax.train.pm" in found
  assert not forbidden_imports(module, ("hh_jax.trainer", "numpy.linalg"))
