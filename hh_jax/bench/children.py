"""The bench runs that need a fresh process, so that compile caches and RSS high-water marks
start from zero: a PM training loop (compile count, peak RSS) and a PPO-like rollout + update
(peak RSS).

    python -m hh_jax.bench.children '{"kind": "pm_loop", "kwargs": {...}}'

prints the child's JSON result as its last stdout line; `run_child` runs one and reads it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax import models
from hh_jax.bench.throughput import VOCAB, pm_setup, random_pm_batch
from hh_jax.bench.timing import CompileCounter, peak_rss_mb
from hh_jax.config import OptimConfig
from hh_jax.train import optim, rl_core, rollout


def pm_loop(size: str, steps: int, pairs: int, seq: int) -> dict:
  """A PM training loop as a user writes it: host batches, metrics fetched one step late.

  Returns the compilations of the whole run (state init included) and the peak RSS.
  """
  with CompileCounter() as counter:
    _, step, state = pm_setup(size, seq, total_steps=steps)
    key = jax.random.key(0)
    pending, losses = None, []
    start = time.perf_counter()
    for i in range(steps):
      state, metrics = step(state, random_pm_batch(pairs, seq, seed=i), key)
      if pending is not None:
        losses.append(float(pending["pm/loss"]))     # the previous step's: no stall on this one
      pending = metrics
    losses.append(float(pending["pm/loss"]))
    seconds = time.perf_counter() - start
  if not all(map(math.isfinite, losses)):
    raise FloatingPointError(f"non-finite PM loss in the bench loop: {losses[-5:]}")
  return {"compiles": counter.count, "compiled": sorted(set(counter.names)), "steps": steps,
          "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def ppo_like(size: str, iterations: int, batch: int, prompt_len: int, new_tokens: int) -> dict:
  """Rollout + update at `size`: policy, frozen reference, PM and value model (4 copies), KV-cached
  sampling, log-probs of policy/reference/value, PM score, GAE, and clipped PPO updates
  (2 minibatches). Returns compilations and peak RSS."""
  cfg = models.ladder_config(size, vocab_size=VOCAB, max_len=prompt_len + new_tokens + 1)
  graphdef, policy = models.init(cfg, jax.random.key(0))
  _, pm_params = models.init(cfg, jax.random.key(1))
  ref_params = jax.tree.map(jnp.copy, policy)
  optimizer = optim.make_optimizer(OptimConfig(), iterations)
  hparams = {"kl_coef": 0.001, "clip_eps": 0.2, "gamma": 1.0, "lam": 0.95, "vf_coef": 0.1}

  @jax.jit
  def experience(params, prompts, key):
    roll = rollout.generate(graphdef, params["policy"], prompts, key, max_new_tokens=new_tokens)
    logp, _, _ = rollout.response_logprobs(graphdef, params["policy"], prompts, roll.response,
                                           roll.mask)
    logp_ref, _, _ = rollout.response_logprobs(graphdef, ref_params, prompts, roll.response,
                                               roll.mask)
    _, values, _ = rollout.response_logprobs(graphdef, params["value"], prompts, roll.response,
                                             roll.mask)
    tokens, eoc = rollout.pm_input(prompts, roll.response, roll.mask)
    score = models.apply(graphdef, pm_params, tokens, score_index=eoc).scores
    rewards, _ = rl_core.kl_penalized_rewards(logp, logp_ref, score, roll.mask, hparams["kl_coef"])
    advantages, returns = rl_core.gae(rewards, values, roll.mask, hparams["gamma"], hparams["lam"])
    return {"prompts": prompts, "response": roll.response, "mask": roll.mask, "old_logprobs": logp,
            "old_values": values, "advantages": rl_core.whiten(advantages, roll.mask),
            "returns": returns}

  def loss_fn(params, mb):
    logp, _, _ = rollout.response_logprobs(graphdef, params["policy"], mb["prompts"],
                                           mb["response"], mb["mask"])
    _, values, _ = rollout.response_logprobs(graphdef, params["value"], mb["prompts"],
                                             mb["response"], mb["mask"])
    pg, _ = rl_core.ppo_policy_loss(logp, mb["old_logprobs"], mb["advantages"], mb["mask"],
                                    hparams["clip_eps"])
    vf, _ = rl_core.ppo_value_loss(values, mb["old_values"], mb["returns"], mb["mask"],
                                   hparams["clip_eps"])
    return pg + hparams["vf_coef"] * vf

  @jax.jit
  def update(state, mb):
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], mb)
    return optim.apply_gradients(state, grads, optimizer), loss

  with CompileCounter() as counter:
    state = optim.init_train_state({"policy": policy, "value": jax.tree.map(jnp.copy, policy)},
                                   optimizer)
    key = jax.random.key(0)
    rng = np.random.default_rng(0)
    for it in range(iterations):
      prompts = rng.integers(3, VOCAB, (batch, prompt_len), dtype=np.int32)
      exp = experience(state["params"], prompts, jax.random.fold_in(key, it))
      for half in np.split(np.arange(batch), 2):
        state, loss = update(state, jax.tree.map(lambda x, h=half: x[h], exp))
    loss = float(loss)
  return {"compiles": counter.count, "iterations": iterations, "loss": loss,
          "peak_rss_mb": peak_rss_mb()}


CHILDREN = {"pm_loop": pm_loop, "ppo_like": ppo_like}


def run_child(kind: str, **kwargs) -> dict:
  """Run CHILDREN[kind](**kwargs) in a fresh Python process and return its JSON result."""
  spec = json.dumps({"kind": kind, "kwargs": kwargs})
  proc = subprocess.run([sys.executable, "-m", "hh_jax.bench.children", spec],
                        capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"bench child {kind}{kwargs} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
  """The child process: argv[0] is the JSON spec {"kind": ..., "kwargs": {...}}."""
  spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
  print(json.dumps(CHILDREN[spec["kind"]](**spec["kwargs"])))
  return 0


if __name__ == "__main__":
  sys.exit(main())
