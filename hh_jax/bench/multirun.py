"""Grouped vs sequential PM runs: `hh-jax bench --multirun [--sizes 1k,6k] [--num-pairs N]`.

For each PM size of the laptop `pm_scaling` sweep (default 1k, 6k, 25k, 100k) at one data
size, the runs of 3 seeds are trained twice into fresh directories:

    sequential  one after another in one process (`tasks.run_config`), as `hh-jax reproduce`
                with one worker runs them
    grouped     as one group (`hh_jax.train.multirun.run_group`)

Each arm runs in a fresh spawned process with its own empty persistent compilation cache
(the reproduction's setting: a sequential seed after the first loads the compiled step), and
is timed from its first run's start to its last run's summary (interpreter start and the
JAX import excluded). Printed per size: seconds and runs/minute of both arms, their ratio,
and the 1-minute load average before and after the size (`os.getloadavg()`): on a shared
2-core machine the numbers are only comparable at similar load.

The configs are the sweep's own (`experiment.plan` under the laptop preset, its data
`hh_synth/mix` in the default TFDS data_dir, prepared first if missing, untimed), except that each PM starts from a fresh init
rather than its base LM (the same shapes and step time, no base LMs needed).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import tempfile
import time

SIZES = ("1k", "6k", "25k", "100k")
SEEDS = (0, 1, 2)


def bench_configs(size: str, num_pairs: int, seeds=SEEDS) -> list:
  """The laptop pm_scaling configs of one size and data size, one per seed, each starting
  from a fresh init instead of its base LM (the same shapes and step time; no base LMs
  needed)."""
  from experiments.presets import PRESETS
  from hh_jax.train import experiment as ex
  axes = {"pm_sizes": (size,), "num_pairs": (num_pairs,), "seeds": tuple(seeds)}
  runs = ex.plan("pm_scaling", tempfile.gettempdir(), PRESETS["laptop"], axes)
  return [dataclasses.replace(r.config, init_from=None) for r in runs]


def run_arm(arm: str, cfgs: list, out_dir: str) -> float:
  """Seconds to train `cfgs` into out_dir/<seed> as one arm ("sequential" or "grouped")."""
  from hh_jax.train import multirun, tasks
  dirs = [os.path.join(out_dir, f"s{c.seed}") for c in cfgs]
  t = time.perf_counter()
  if arm == "grouped":
    multirun.run_group(cfgs, dirs)
  else:
    for c, d in zip(cfgs, dirs):
      tasks.run_config(c, d, progress=False)
  return time.perf_counter() - t


def timed_arm(arm: str, cfgs: list, scratch: str) -> float:
  """`run_arm` in a fresh spawned process with an empty compilation cache of its own."""
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"cache-{arm}-", dir=scratch)
  with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
    return pool.submit(run_arm, arm, cfgs, tempfile.mkdtemp(prefix=f"{arm}-", dir=scratch)).result()


def bench_size(size: str, num_pairs: int, scratch: str) -> dict:
  """Both arms for one size: seconds, runs per minute, grouped / sequential speed-up, load."""
  from hh_jax.data import pipeline
  cfgs = bench_configs(size, num_pairs)
  pipeline.prepare(cfgs[0].data.dataset, cfgs[0].data.data_dir)   # untimed, once
  load_start = os.getloadavg()[0]
  seq = timed_arm("sequential", cfgs, scratch)
  grp = timed_arm("grouped", cfgs, scratch)
  n = len(cfgs)
  return {"size": size, "num_pairs": num_pairs, "runs": n, "steps": num_pairs // cfgs[0].batch_size,
          "sequential_seconds": seq, "grouped_seconds": grp,
          "sequential_runs_per_min": 60 * n / seq, "grouped_runs_per_min": 60 * n / grp,
          "speedup": seq / grp, "load_average_1min_start": load_start,
          "load_average_1min_end": os.getloadavg()[0]}


def format_rows(rows: list[dict]) -> str:
  """The results as a Markdown table."""
  lines = ["| size | pairs | steps | seq s | grouped s | seq runs/min | grouped runs/min | "
           "speed-up | load start / end |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    lines.append(f"| {r['size']} | {r['num_pairs']} | {r['steps']} | {r['sequential_seconds']:.1f} | "
                 f"{r['grouped_seconds']:.1f} | {r['sequential_runs_per_min']:.1f} | "
                 f"{r['grouped_runs_per_min']:.1f} | {r['speedup']:.2f}x | "
                 f"{r['load_average_1min_start']:.2f} / {r['load_average_1min_end']:.2f} |")
  return "\n".join(lines)


def run(sizes=SIZES, num_pairs: int = 4_000, log=print) -> dict:
  """Every size's `bench_size`, logged as it goes; {"multirun": rows}."""
  rows = []
  with tempfile.TemporaryDirectory(prefix="hh-jax-multirun-") as scratch:
    for size in sizes:
      rows.append(bench_size(size, num_pairs, scratch))
      r = rows[-1]
      log(f"multirun {size} n={num_pairs}: sequential {r['sequential_seconds']:.1f}s, grouped "
          f"{r['grouped_seconds']:.1f}s ({r['speedup']:.2f}x), load {r['load_average_1min_start']:.2f}"
          f" -> {r['load_average_1min_end']:.2f}")
  return {"multirun": rows}
