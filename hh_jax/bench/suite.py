"""Throughput benchmarks on the current machine: `hh-jax bench [--quick] [--json FILE]`.

`run` takes every measurement listed in the hh_jax.bench docstring in one run,
`format_table` summarises them in Markdown, `main` is the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax.numpy as jnp

from hh_jax import models
from hh_jax.bench import peers, workloads
from hh_jax.bench.children import run_child
from hh_jax.bench.throughput import QUICK, BenchConfig, decode_throughput, pm_step_throughput
from hh_jax.bench.timing import bf16_supported, load_average_1min, machine_info, matmul_peak_flops


def ceilings(bc: BenchConfig, log) -> dict:
  """matmul_peak_flops (float32) and, where bfloat16 runs, matmul_peak_flops_bf16."""
  result = {"matmul_peak_flops": matmul_peak_flops(jnp.float32, bc.matmul_n)}
  log(f"matmul ceiling float32: {result['matmul_peak_flops'] / 1e9:.1f} GFLOP/s")
  if bf16_supported():
    result["matmul_peak_flops_bf16"] = matmul_peak_flops(jnp.bfloat16, bc.matmul_n)
    log(f"matmul ceiling bfloat16: {result['matmul_peak_flops_bf16'] / 1e9:.1f} GFLOP/s")
  return result


def pm_steps(bc: BenchConfig, peak_flops: float, log) -> dict:
  """size -> `pm_step_throughput` for every size of the run."""
  sizes = {}
  for size in bc.sizes:
    r = sizes[size] = pm_step_throughput(size, bc, peak_flops)
    log(f"PM step {size}: {r['pm_step_tokens_per_s']:,.0f} tokens/s, MFU {r['pm_step_mfu']:.1%}")
  return sizes


def with_torch_peer(bc: BenchConfig, sizes: dict, log) -> dict:
  """The torch versions, and `sizes` with torch tokens/s and speedup = hh-jax / torch added."""
  peer = peers.torch_pm_step(bc)
  log(f"torch peer done ({peer['torch_num_threads']} threads)")
  with_peer = {}
  for size, r in sizes.items():
    torch_tps = peer[size]["torch_pm_step_tokens_per_s"]
    with_peer[size] = {**r, "torch_pm_step_tokens_per_s": torch_tps,
                       "speedup_vs_torch": r["pm_step_tokens_per_s"] / torch_tps}
  return {"torch_num_threads": peer["torch_num_threads"], "torch_version": peer["torch_version"],
          "sizes": with_peer}


def hf_decoding(bc: BenchConfig, log) -> dict:
  """hf_generate_tokens_per_s on the decode shape, and the transformers version."""
  hf = peers.hf_generate(bc)
  result = {"hf_generate_tokens_per_s": hf[bc.decode_size]["hf_generate_tokens_per_s"],
            "transformers_version": hf.get("transformers_version")}
  log(f"HF generate {bc.decode_size}: {result['hf_generate_tokens_per_s']:,.0f} tokens/s")
  return result


def compiles_and_memory(bc: BenchConfig, log) -> dict:
  """Compilations of a short and a loop_ratio x longer PM loop; peak RSS of a PM run and PPO-like."""
  short = run_child("pm_loop", size=bc.loop_size, steps=bc.loop_steps, pairs=bc.pairs, seq=bc.seq)
  long = run_child("pm_loop", size=bc.loop_size, steps=bc.loop_steps * bc.loop_ratio,
                   pairs=bc.pairs, seq=bc.seq)
  log(f"compilations: {short['compiles']} ({short['steps']} steps) vs "
      f"{long['compiles']} ({long['steps']} steps)")
  # The long compile-count loop is already a PM run at loop_size: reuse it when sizes agree.
  pm_mem = long if bc.memory_size == bc.loop_size else run_child(
      "pm_loop", size=bc.memory_size, steps=bc.memory_steps, pairs=bc.pairs, seq=bc.seq)
  ppo_mem = run_child("ppo_like", size=bc.memory_size, iterations=bc.memory_steps,
                      batch=bc.decode_batch, prompt_len=bc.prompt_len, new_tokens=bc.new_tokens)
  log(f"peak RSS at {bc.memory_size}: PM run {pm_mem['peak_rss_mb']:.0f} MB, "
      f"PPO-like {ppo_mem['peak_rss_mb']:.0f} MB")
  return {"compiles": {"short_steps": short["steps"], "short": short["compiles"],
                       "long_steps": long["steps"], "long": long["compiles"],
                       "compiled": long["compiled"]},
          "peak_rss_mb": {"pm_run": pm_mem["peak_rss_mb"], "ppo_like": ppo_mem["peak_rss_mb"],
                          "size": bc.memory_size}}


def run(bc: BenchConfig, log=print) -> dict:
  """All measurements (hh_jax.bench docstring) -> one flat-ish JSON-able dict."""
  results: dict = {"machine": machine_info(), "config": dataclasses.asdict(bc), "notes": []}

  def note(text: str) -> None:
    results["notes"].append(text)
    log(f"note: {text}")

  log(f"machine: {results['machine']}")
  results.update(ceilings(bc, log))
  results["sizes"] = pm_steps(bc, results["matmul_peak_flops"], log)
  torch_note = peers.torch_missing_note() if bc.torch else "torch peer disabled (--no-torch)"
  if torch_note:
    note(torch_note)
  else:
    results.update(with_torch_peer(bc, results["sizes"], log))

  results["workloads"] = {name: workloads.run_workload(name, bc, results["matmul_peak_flops"], log,
                                                     with_torch=not torch_note)
                          for name in bc.workloads}
  results.update(decode_throughput(bc))
  log(f"decode {bc.decode_size}: cached {results['decode_cached_tokens_per_s']:,.0f} tokens/s, "
      f"uncached {results['decode_uncached_tokens_per_s']:,.0f} tokens/s")
  hf_note = torch_note or peers.hf_missing_note()
  if hf_note:
    note(hf_note.replace("PyTorch peer", "HF generate"))
  else:
    results.update(hf_decoding(bc, log))
  results.update(compiles_and_memory(bc, log))
  return results


def format_table(results: dict) -> str:
  """A Markdown summary of `run`'s results."""
  peak = results["matmul_peak_flops"]
  m = results["machine"]
  lines = [f"machine: {m['nproc']} x {m['cpu']} ({m['jax_backend']}, jax {m['jax_version']})",
           f"matmul ceiling: float32 {peak / 1e9:.1f} GFLOP/s"
           + (f", bfloat16 {results['matmul_peak_flops_bf16'] / 1e9:.1f} GFLOP/s"
              if "matmul_peak_flops_bf16" in results else ""),
           "",
           "| size | non-emb params | hh-jax tokens/s | GFLOP/s | MFU | torch tokens/s | hh-jax / torch "
           "| hh-jax, XLA defaults |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for size, r in results["sizes"].items():
    torch_tps = r.get("torch_pm_step_tokens_per_s")
    lines.append(
        f"| {size} | {r['non_embedding_params']:,} | {r['pm_step_tokens_per_s']:,.0f} | "
        f"{r['pm_step_flops_per_s'] / 1e9:.1f} | {r['pm_step_mfu']:.1%} | "
        + (f"{torch_tps:,.0f} | {r['speedup_vs_torch']:.2f}x |" if torch_tps else "skipped | - |")
        + (f" {r['pm_step_tokens_per_s_xla_default']:,.0f} |"
           if "pm_step_tokens_per_s_xla_default" in r else " - |"))
  bc = results["config"]
  cached, uncached = results["decode_cached_tokens_per_s"], results["decode_uncached_tokens_per_s"]
  hf = results.get("hf_generate_tokens_per_s")
  lines += ["",
            f"decode {bc['decode_size']}, {bc['decode_batch']} prompts x {bc['prompt_len']} tokens, "
            f"{bc['new_tokens']} new tokens (greedy):",
            f"  cached {cached:,.0f} tokens/s | uncached {uncached:,.0f} tokens/s "
            f"({cached / uncached:.1f}x) | HF generate "
            + (f"{hf:,.0f} tokens/s ({cached / hf:.1f}x)" if hf else "skipped")]
  c = results["compiles"]
  lines.append(f"compilations per run ({bc['loop_size']}): {c['short']} for {c['short_steps']} "
               f"steps, {c['long']} for {c['long_steps']} steps")
  mem = results["peak_rss_mb"]
  lines.append(f"peak RSS ({mem['size']}): PM run {mem['pm_run']:.0f} MB, "
               f"PPO-like rollout+update {mem['ppo_like']:.0f} MB")
  lines += workloads.format_workloads(results.get("workloads", {}))
  for text in results["notes"]:
    lines.append(f"note: {text}")
  return "\n".join(lines)


def flat_summary(results: dict) -> dict:
  """The headline keys at the top level of the JSON (per size as `pm_step_tokens_per_s/3M`)."""
  out = {}
  for size, r in results["sizes"].items():
    for k in ("pm_step_tokens_per_s", "pm_step_mfu", "torch_pm_step_tokens_per_s"):
      if k in r:
        out[f"{k}/{size}"] = r[k]
  for name, w in results.get("workloads", {}).items():
    for size, r in w["sizes"].items():
      for k in ("packed_pairs_per_s", "padded_pairs_per_s", "torch_pairs_per_s", "mfu_unique"):
        if k in r:
          out[f"workloads/{name}/{k}/{size}"] = r[k]
  return out


def main(argv=None) -> int:
  """`hh-jax bench [--quick] [--json FILE] [--sizes 1k,3M] [--no-torch]`."""
  parser = argparse.ArgumentParser(prog="hh-jax bench", description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats (< 5 min on 2 cores)")
  parser.add_argument("--json", metavar="FILE", help="write all results to FILE")
  parser.add_argument("--sizes", help="comma-separated laptop sizes (default: all)")
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch/HF peers")
  parser.add_argument("--multirun", action="store_true",
                      help="instead: 3 seeds of laptop PMs sequential vs grouped (hh_jax.bench.multirun)")
  parser.add_argument("--num-pairs", type=int, default=4_000, help="with --multirun: the data size")
  args = parser.parse_args(argv)
  if args.multirun:
    return multirun_main(args)
  bc = QUICK if args.quick else BenchConfig()
  if args.sizes:
    sizes = tuple(args.sizes.split(","))
    unknown = [s for s in sizes if s not in models.LAPTOP_LADDER]
    if unknown:
      parser.error(f"--sizes: unknown {unknown}; known: {', '.join(models.LAPTOP_LADDER)}")
    bc = dataclasses.replace(bc, sizes=sizes)
  if args.no_torch:
    bc = dataclasses.replace(bc, torch=False)
  start = time.perf_counter()
  results = run(bc)
  results["wall_seconds"] = time.perf_counter() - start
  results["load_average_1min_end"] = load_average_1min()
  results.update(flat_summary(results))
  print(format_table(results))
  print(f"bench wall time: {results['wall_seconds']:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)
  return 0


def multirun_main(args) -> int:
  """`hh-jax bench --multirun`: `hh_jax.bench.multirun.run`, its table, and --json."""
  from hh_jax.bench import multirun
  sizes = tuple(args.sizes.split(",")) if args.sizes else multirun.SIZES
  results = multirun.run(sizes, args.num_pairs)
  print(multirun.format_rows(results["multirun"]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
