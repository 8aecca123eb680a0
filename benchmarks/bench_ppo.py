"""PPO iteration time, packed rows against padded ones (`hh_jax.train.ppo_packed`), and rollout
tokens/s with and without the KV cache. Uses the models of a finished reproduction (default:
the quick preset).

    hh-jax reproduce --preset quick
    python benchmarks/bench_ppo.py [--root results/quick] [--policy 25k] [--pm 25k] [--iterations 20]
    # the laptop preset's shape: 256 rollouts, minibatches of 32, three test PMs
    python benchmarks/bench_ppo.py --root results/laptop-ws0 --policy 100k --pm 100k --batch 256 \
        --minibatch 32 --test_pms 6k,25k,100k --prompt_dataset hh_synth/prompts-20000-s0-h90

The two iterations run alternately in one process (same models, prompts and seed), so the
ratio of each pair is measured under the same load; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax.config import OptimConfig
from hh_jax.data import pipeline
from hh_jax.train import lifecycle, ppo_run
from hh_jax.train.ppo import PPOConfig
from hh_jax.train.rollout import generate, generate_uncached


def rollout_tokens_per_s(model, prompts, new_tokens: int, cached: bool, repeats: int = 3) -> float:
  fn = generate if cached else generate_uncached
  run = jax.jit(lambda p, x, k: fn(model.graphdef, p, x, k, max_new_tokens=new_tokens))
  jax.block_until_ready(run(model.params, prompts, jax.random.key(0)))       # compile
  best = float("inf")
  for r in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run(model.params, prompts, jax.random.key(r + 1)))
    best = min(best, time.perf_counter() - start)
  return prompts.shape[0] * new_tokens / best


def alternate_iterations(cfg: PPOConfig, inputs: ppo_run.PPOInputs, iterations: int) -> dict:
  """Seconds of each PPO iteration after the first (compilation) of the packed and the padded
  task, run alternately: {True: [...], False: [...]} (key: cfg.packing)."""
  tasks = {}
  for packing in (True, False):
    with tempfile.TemporaryDirectory() as run_dir:
      task = ppo_run.build_task(dataclasses.replace(cfg, packing=packing), run_dir, inputs)
    tasks[packing] = [task, task.state]
  times = {True: [], False: []}
  for i in range(iterations + 1):
    for packing, (task, state) in tasks.items():
      prompts = task.to_device(next(task.batches))
      start = time.perf_counter()
      state, out = task.step(state, prompts, task.key)
      jax.block_until_ready(out)
      tasks[packing][1] = state
      if i:
        times[packing].append(time.perf_counter() - start)
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="results/quick")
  parser.add_argument("--policy", default="25k")
  parser.add_argument("--pm", default="25k")
  parser.add_argument("--test_pms", default="", help="comma-separated test-PM sizes (pm_halves test-<size>)")
  parser.add_argument("--prompt_dataset", default="hh_synth/prompts")
  parser.add_argument("--iterations", type=int, default=20)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--minibatch", type=int, default=16)
  parser.add_argument("--new_tokens", type=int, default=16)
  args = parser.parse_args()
  policy_dir = os.path.join(args.root, "base_lm", args.policy)
  pm_dir = os.path.join(args.root, "pm_halves", f"train-{args.pm}")
  test_dirs = [os.path.join(args.root, "pm_halves", f"test-{s}") for s in args.test_pms.split(",") if s]
  for d in (policy_dir, pm_dir, *test_dirs):
    if not lifecycle.is_finished(d):
      raise SystemExit(f"{d} is not a finished run: run `hh-jax reproduce --preset quick` first")
  prompt_len = 64 - args.new_tokens - 1
  prompts = pipeline.load_prompts(args.prompt_dataset, "train", prompt_len,
                                  data_dir=os.path.join(args.root, "tfds"))
  print(f"load average at start: {os.getloadavg()}")
  policy = lifecycle.load_model(policy_dir)
  batch = jnp.asarray(prompts[:args.batch])
  cached = rollout_tokens_per_s(policy, batch, args.new_tokens, cached=True)
  uncached = rollout_tokens_per_s(policy, batch, args.new_tokens, cached=False)
  print(f"device: {jax.devices()[0].device_kind}; policy {args.policy}, batch {args.batch}, "
        f"{args.new_tokens} new tokens after {prompt_len}-token prompts")
  print(f"rollout tokens/s: KV cache {cached:,.0f}, no cache {uncached:,.0f} "
        f"({cached / uncached:.1f}x)")
  cfg = PPOConfig(policy_init=policy_dir, reward_pm=pm_dir, test_pms=tuple(test_dirs),
                  num_iterations=args.iterations + 1, batch_size=args.batch,
                  minibatch_size=args.minibatch, ppo_epochs=2, max_new_tokens=args.new_tokens,
                  prompt_len=prompt_len, checkpoint_every=0, reward_norm=True, kl_coef=0.03,
                  prompt_dataset=args.prompt_dataset,
                  optim=OptimConfig(learning_rate=5e-5, warmup_steps=0, b2=0.999))
  inputs = ppo_run.PPOInputs(prompts, pipeline.gold_fn(args.prompt_dataset))
  times = alternate_iterations(cfg, inputs, args.iterations)
  ratio = np.asarray(times[False]) / np.asarray(times[True])
  print(f"PPO iteration, medians of {args.iterations}: packed {np.median(times[True]) * 1e3:.0f} ms, "
        f"padded {np.median(times[False]) * 1e3:.0f} ms; padded / packed per pair: median "
        f"{np.median(ratio):.2f}x (range {ratio.min():.2f}-{ratio.max():.2f})")
  print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
  main()
