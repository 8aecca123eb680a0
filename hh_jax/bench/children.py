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
from hh_jax.data import packing
from hh_jax.train import optim, ppo


def varied_pm_batch(pairs: int, seq: int, seed: int) -> dict:
  """`random_pm_batch` with random lengths: each row keeps its first 2..seq tokens, EOC last,
  and the rejected row shares the chosen row's first tokens up to a random context length."""
  batch = random_pm_batch(pairs, seq, seed=seed)
  rng = np.random.default_rng([seed, 7])
  for side in ("chosen", "rejected"):
    eoc = rng.integers(1, seq, pairs).astype(np.int32)
    tokens = batch[f"{side}_tokens"]
    tokens[np.arange(seq)[None, :] > eoc[:, None]] = 0          # PAD after the EOC
    tokens[np.arange(pairs), eoc] = 2                            # EOC_ID
    batch[f"{side}_eoc_index"] = eoc
  context = np.minimum(rng.integers(0, seq, pairs),
                       np.minimum(batch["chosen_eoc_index"], batch["rejected_eoc_index"]))
  shared = np.arange(seq)[None, :] < context[:, None]
  batch["rejected_tokens"] = np.where(shared, batch["chosen_tokens"], batch["rejected_tokens"])
  return batch


def pm_loop(size: str, steps: int, pairs: int, seq: int, packed: bool = True) -> dict:
  """A PM training loop as a user writes it: host batches, metrics fetched one step late.
  packed: pairs of varied lengths through packed rows of one layout planned over the run
  (`hh_jax.data.packing`), as a PM run does; else full-length padded pairs.

  Returns the compilations of the whole run (state init included) and the peak RSS.
  """
  with CompileCounter() as counter:
    _, step, state = pm_setup(size, seq, total_steps=steps)
    make_batch = varied_pm_batch if packed else random_pm_batch
    batches = [make_batch(pairs, seq, seed=i) for i in range(steps)]
    if packed:
      lengths = [packing.pair_lengths(b) for b in batches]
      layout = packing.plan_layout(lengths, packing.default_row_len(seq))
      batches = [packing.pack_pairs(b, layout) for b in batches]
    key = jax.random.key(0)
    pending, losses = None, []
    start = time.perf_counter()
    for i in range(steps):
      state, metrics = step(state, batches[i], key)
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
  """The real PPO iteration (`hh_jax.train.ppo.make_iteration`) at `size`: policy, frozen
  reference, PM and value model (4 copies), KV-cached sampling, log-probs of policy /
  reference / value, PM score, GAE and clipped updates in 2 minibatches, one jitted call per
  iteration. Returns compilations and peak RSS."""
  cfg = models.ladder_config(size, vocab_size=VOCAB, max_len=prompt_len + new_tokens + 1)
  graphdef, policy = models.init(cfg, jax.random.key(0))
  _, pm_params = models.init(cfg, jax.random.key(1))
  ppo_cfg = ppo.PPOConfig(batch_size=batch, minibatch_size=batch // 2, ppo_epochs=1,
                          max_new_tokens=new_tokens, prompt_len=prompt_len)
  optimizer = optim.make_optimizer(OptimConfig(), iterations * ppo_cfg.updates_per_iteration)
  iterate = ppo.make_iteration(graphdef, graphdef, graphdef, (), optimizer, ppo_cfg)
  frozen = {"ref": jax.tree.map(jnp.copy, policy), "pm": pm_params, "tests": ()}
  with CompileCounter() as counter:
    params = {"policy": policy, "value": ppo.value_params("pm", policy, pm_params)}
    state = optim.init_train_state(params, optimizer, ppo.hparams_from_config(ppo_cfg))
    rng = np.random.default_rng(0)
    for _ in range(iterations):
      prompts = rng.integers(3, VOCAB, (batch, prompt_len), dtype=np.int32)
      state, out = iterate(state, frozen, prompts, jax.random.key(0))
    loss = float(out["metrics"]["ppo/loss"])
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
