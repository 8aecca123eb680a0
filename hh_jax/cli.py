"""The `hh-jax` command. Thin: each subcommand lives in the library module that does the work."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line help). Imported lazily so `hh-jax --help` is fast.
SUBCOMMANDS = {
    "world": ("hh_jax.data.world.cli", "main", "inspect the synthetic HH world (`hh-jax world stats`)"),
    "data": ("hh_jax.data.cli", "main", "prepare HH-RLHF / hh_synth TFDS datasets"),
    "train": ("hh_jax.train.sweep", "train_main", "run one experiment config (`hh-jax train FILE [--set k=v]`)"),
    "sweep": ("hh_jax.train.sweep", "main", "run or print a sweep (`hh-jax sweep FILE [--print]`)"),
    "analyze": ("analysis.cli", "main", "fits and paper-style figures from run directories"),
    "reproduce": ("hh_jax.reproduce", "main", "the main job: every stage, a report beside the paper"),
    "bench": ("hh_jax.bench.suite", "main", "throughput benchmarks (`hh-jax bench [--quick] [--json F]`)"),
    "export": ("hh_jax.export", "main", "a finished run as a Hugging Face checkpoint (`hh-jax export RUN OUT`)"),
}


def _usage() -> str:
  lines = ["usage: hh-jax <command> [args]", "", "commands:"]
  lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in SUBCOMMANDS:
    print(f"hh-jax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
    return 2
  module_name, fn_name, _ = SUBCOMMANDS[name]
  fn = getattr(importlib.import_module(module_name), fn_name)
  return int(fn(rest) or 0)


if __name__ == "__main__":
  sys.exit(main())
