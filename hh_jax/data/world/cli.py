"""`hh-jax world ...`: inspect the synthetic HH world.

    hh-jax world stats [--json] [--seed N] [--world-seed N] [--size N]

prints example dialogues with gold scores, dataset statistics, the Bayes ceilings, the
best single-feature shortcut, the helpful/harmless tension and generation speed.
"""

from __future__ import annotations

import argparse
import json

from hh_jax.data.world import stats


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax world", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p_stats = sub.add_parser("stats", help="examples, dataset statistics, Done-when figures")
  p_stats.add_argument("--json", action="store_true", help="print one JSON object")
  p_stats.add_argument("--seed", type=int, default=0, help="data seed")
  p_stats.add_argument("--world-seed", dest="world_seed", type=int, default=0)
  p_stats.add_argument("--size", type=int, default=stats.DEFAULT_SIZE,
                       help="comparisons per subset (default %(default)s)")
  args = parser.parse_args(argv)
  result = stats.compute_stats(seed=args.seed, size=args.size, world_seed=args.world_seed)
  print(json.dumps(result, indent=1) if args.json else stats.format_stats(result))
  return 0
