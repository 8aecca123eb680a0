"""PPO iteration time (one jitted `ppo.make_iteration` call) and rollout tokens/s with and
without the KV cache. Uses the models of a finished reproduction (default: the quick preset).

    hh-jax reproduce --preset quick
    python benchmarks/bench_ppo.py [--root results/quick] [--policy 25k] [--pm 25k] [--iterations 20]

Prints the machine's load average beside every figure (shared machines are noisy).
"""

from __future__ import annotations

import argparse
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


def iteration_seconds(cfg: PPOConfig, inputs: ppo_run.PPOInputs, iterations: int) -> list[float]:
  """Wall time of each jitted PPO iteration after the first (compilation), host work excluded."""
  with tempfile.TemporaryDirectory() as run_dir:
    task = ppo_run.build_task(cfg, run_dir, inputs)
  state, times = task.state, []
  for i in range(iterations + 1):
    prompts = task.to_device(next(task.batches))
    start = time.perf_counter()
    state, out = task.step(state, prompts, task.key)
    jax.block_until_ready(out)
    if i:
      times.append(time.perf_counter() - start)
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="results/quick")
  parser.add_argument("--policy", default="25k")
  parser.add_argument("--pm", default="25k")
  parser.add_argument("--iterations", type=int, default=20)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=16)
  args = parser.parse_args()
  policy_dir = os.path.join(args.root, "base_lm", args.policy)
  pm_dir = os.path.join(args.root, "pm_halves", f"train-{args.pm}")
  for d in (policy_dir, pm_dir):
    if not lifecycle.is_finished(d):
      raise SystemExit(f"{d} is not a finished run: run `hh-jax reproduce --preset quick` first")
  prompt_len = 64 - args.new_tokens - 1
  prompts = pipeline.load_prompts("hh_synth/prompts", "train", prompt_len,
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
  cfg = PPOConfig(policy_init=policy_dir, reward_pm=pm_dir, num_iterations=args.iterations,
                  batch_size=args.batch, minibatch_size=16, ppo_epochs=2,
                  max_new_tokens=args.new_tokens, prompt_len=prompt_len, checkpoint_every=0,
                  optim=OptimConfig(learning_rate=5e-5, warmup_steps=0, b2=0.999))
  times = iteration_seconds(cfg, ppo_run.PPOInputs(prompts, pipeline.world_gold_fn), args.iterations)
  print(f"PPO iteration, one jitted call (median of {len(times)}): "
        f"{np.median(times) * 1e3:.0f} ms (min {np.min(times) * 1e3:.0f} ms)")
  print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
  main()
