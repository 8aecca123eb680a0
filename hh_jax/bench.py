"""Throughput benchmarks on the current machine: `hh-jax bench [--quick] [--json FILE]`.

Measured in one run, so that every ratio is taken side by side:

  ceiling   peak FLOP/s of a large `jnp.dot` (float32, and bfloat16 where supported);
  PM step   tokens/s of `hh_jax.train.pm.make_step` per laptop size and its model FLOP
            utilisation  MFU = 3 * forward_flops_per_token * tokens/s / peak_f32
            (forward + backward = 3x the forward matmul FLOPs, attention included);
            on CPU also the same step compiled with XLA's defaults instead of
            `optim.CPU_TRAIN_STEP_COMPILER_OPTIONS` (the A/B of that option);
  peer      the same PM step in PyTorch (`benchmarks/torch_pm.py`, eager, same threads);
  decode    reply tokens/s of `generate` (KV cache) vs `generate_uncached`, and vs
            Hugging Face `GPT2LMHeadModel.generate` on the same shape (greedy, use_cache);
  compiles  XLA compilations of an N-step and a 10N-step PM training loop (must be equal);
  memory    peak host RSS of a PM run and of a PPO-like rollout+update (largest size).

Every time is the best of several timed blocks (min is robust to other load on a shared
machine); compilation is excluded by warm-up calls. The loops and the memory runs execute
in fresh subprocesses so that compile caches and RSS high-water marks start from zero.
The torch/HF parts are skipped with a note when the `bench` extra is not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax import models
from hh_jax.config import OptimConfig
from hh_jax.train import optim, pm, rl_core, rollout

VOCAB = 259                       # byte tokenizer: 256 bytes + PAD/EOS/EOC
TORCH_PEER = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "torch_pm.py"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# On CPU the train steps compile with YNNPACK for dots only (optim.CPU_TRAIN_STEP_COMPILER_OPTIONS);
# `pm_step_tokens_per_s_xla_default` times the same step with XLA's defaults beside it.


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """What one bench run measures.

  PM batches are `pairs` comparisons = 2 * pairs sequences of `seq` tokens (no padding,
  EOC in the last slot); decoding is `decode_batch` prompts of `prompt_len` tokens plus
  `new_tokens` greedy reply tokens (EOS never stops a row, as in HF with min_new_tokens).
  """

  sizes: tuple[str, ...] = tuple(models.LAPTOP_LADDER)
  pairs: int = 32
  seq: int = 64
  steps: int = 10                 # PM steps per timed block
  repeats: int = 3                # timed blocks (the best is kept)
  matmul_n: int = 2048
  decode_size: str = "3M"
  decode_batch: int = 32
  prompt_len: int = 64
  new_tokens: int = 64
  decode_repeats: int = 3
  loop_size: str = "1k"           # model of the compile-count loops
  loop_steps: int = 10            # the short loop; the long one runs 100x this
  loop_ratio: int = 100
  memory_size: str = "3M"
  memory_steps: int = 3
  torch: bool = True
  xla_default_ab: bool = True       # on CPU also time the PM step with XLA's defaults (A/B)


QUICK = BenchConfig(steps=3, repeats=2, decode_repeats=2, loop_ratio=20)


# ----------------------------------------------------------------------------- timing helpers


def best_seconds_per_call(fn, calls: int, repeats: int, warmup: int = 1) -> float:
  """min over `repeats` blocks of (wall time of `calls` calls of fn) / calls.

  fn must block on its own result (or return something `jax.block_until_ready` can wait on).
  """
  for _ in range(warmup):
    jax.block_until_ready(fn())
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / calls)
  return best


class CompileCounter:
  """Counts XLA backend compilations (jax.monitoring events) while active.

      with CompileCounter() as counter: ...;  counter.count, counter.names
  """

  def __init__(self):
    self.names: list[str] = []

  def _listener(self, event: str, duration_secs: float, **kwargs) -> None:
    del duration_secs
    if event == BACKEND_COMPILE_EVENT:
      self.names.append(str(kwargs.get("fun_name", "?")))

  @property
  def count(self) -> int:
    return len(self.names)

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)


def peak_rss_mb() -> float:
  """This process's resident-set high-water mark (ru_maxrss is KiB on Linux, bytes on macOS)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


# ----------------------------------------------------------------------------- the ceiling


def matmul_peak_flops(dtype=jnp.float32, n: int = 2048, calls: int = 4, repeats: int = 3) -> float:
  """FLOP/s of an (n, n) @ (n, n) `jnp.dot`: 2 n^3 FLOPs per call."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  return 2 * n**3 / best_seconds_per_call(lambda: dot(a, b), calls, repeats)


def bf16_supported() -> bool:
  """bfloat16 matmuls are native on accelerators; on CPU XLA emulates them, so time them too."""
  try:
    jax.block_until_ready(jnp.ones((2, 2), jnp.bfloat16) @ jnp.ones((2, 2), jnp.bfloat16))
    return True
  except Exception:  # noqa: BLE001 (any backend failure means "not supported")
    return False


# ----------------------------------------------------------------------------- PM train step


def random_pm_batch(pairs: int, seq: int, vocab: int = VOCAB, seed: int = 0) -> dict:
  """A PM batch (see `hh_jax.train.pm`) of full-length random pairs, EOC in the last slot."""
  rng = np.random.default_rng(seed)
  tokens = lambda: rng.integers(3, vocab, (pairs, seq), dtype=np.int32)
  eoc = np.full((pairs,), seq - 1, np.int32)
  return {"chosen_tokens": tokens(), "rejected_tokens": tokens(), "chosen_eoc_index": eoc,
          "rejected_eoc_index": eoc, "weight": np.ones((pairs,), np.float32),
          "is_harmless": np.zeros((pairs,), np.float32)}


def _pm_setup(size: str, seq: int, total_steps: int):
  cfg = models.ladder_config(size, vocab_size=VOCAB, max_len=seq)
  graphdef, params = models.init(cfg, jax.random.key(0))
  optimizer = optim.make_optimizer(OptimConfig(), total_steps)
  state = optim.init_train_state(params, optimizer, pm.PM_HPARAMS)
  return cfg, pm.make_step(graphdef, optimizer), state


def pm_step(size: str, seq: int, xla_defaults: bool = False):
  """(jitted PM step, fresh state) at `size`; xla_defaults: without the CPU compiler options."""
  _, step, state = _pm_setup(size, seq, total_steps=1000)
  if xla_defaults:   # the same traced function, re-jitted (`make_step` is jax.jit(step))
    step = optim.jit_train_step(step.__wrapped__, xla_defaults=True)
  return step, state


def pm_step_seconds(size: str, bc: BenchConfig, xla_defaults: bool = False) -> float:
  """Best seconds per call of the jitted PM train step (with XLA's default options if asked)."""
  step, state = pm_step(size, bc.seq, xla_defaults)
  batch = jax.device_put(random_pm_batch(bc.pairs, bc.seq))
  key = jax.random.key(0)
  holder = {"state": state}

  def one_step():
    holder["state"], metrics = step(holder["state"], batch, key)
    return metrics["pm/loss"]

  return best_seconds_per_call(one_step, bc.steps, bc.repeats)


def pm_step_throughput(size: str, bc: BenchConfig, peak_flops: float) -> dict:
  """tokens/s = 2 * pairs * seq / (seconds per step); MFU = 3 * fwd FLOPs/token * tokens/s / peak."""
  cfg = models.ladder_config(size, vocab_size=VOCAB, max_len=bc.seq)
  tokens = 2 * bc.pairs * bc.seq
  flops_per_token = 3 * models.forward_flops_per_token(cfg, bc.seq)
  seconds = pm_step_seconds(size, bc)
  result = {"non_embedding_params": models.count_params(cfg), "pm_step_tokens_per_s": tokens / seconds,
            "pm_step_flops_per_s": flops_per_token * tokens / seconds,
            "pm_step_mfu": flops_per_token * tokens / seconds / peak_flops}
  if bc.xla_default_ab and optim.train_step_compiler_options():
    result["pm_step_tokens_per_s_xla_default"] = tokens / pm_step_seconds(size, bc, True)
  return result


# ----------------------------------------------------------------------------- decoding


def decode_throughput(bc: BenchConfig) -> dict:
  """Reply tokens/s (decode_batch * new_tokens per call) of cached and uncached greedy sampling."""
  cfg = models.ladder_config(bc.decode_size, vocab_size=VOCAB,
                             max_len=bc.prompt_len + bc.new_tokens)
  graphdef, params = models.init(cfg, jax.random.key(0))
  prompt = jax.random.randint(jax.random.key(1), (bc.decode_batch, bc.prompt_len), 3, VOCAB)
  key = jax.random.key(2)
  result = {}
  for name, sampler, repeats in (("cached", rollout.generate, bc.decode_repeats),
                                 ("uncached", rollout.generate_uncached, max(1, bc.decode_repeats - 1))):
    fn = jax.jit(lambda p, x, k, s=sampler: s(graphdef, p, x, k, max_new_tokens=bc.new_tokens,
                                               temperature=0.0, eos_id=-1).response)
    seconds = best_seconds_per_call(lambda: fn(params, prompt, key), 1, repeats)
    result[f"decode_{name}_tokens_per_s"] = bc.decode_batch * bc.new_tokens / seconds
  return result


# ----------------------------------------------------------------------------- child runs


def pm_loop(size: str, steps: int, pairs: int, seq: int) -> dict:
  """A PM training loop as a user writes it: host batches, metrics fetched one step late.

  Returns the compilations of the whole run (state init included) and the peak RSS.
  """
  with CompileCounter() as counter:
    _, step, state = _pm_setup(size, seq, total_steps=steps)
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
  proc = subprocess.run([sys.executable, "-m", "hh_jax.bench", "--child", spec],
                        capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"bench child {kind}{kwargs} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _child_main(spec: str) -> int:
  spec = json.loads(spec)
  print(json.dumps(CHILDREN[spec["kind"]](**spec["kwargs"])))
  return 0


# ----------------------------------------------------------------------------- the PyTorch peer


def torch_missing_note() -> str | None:
  """None if the torch peer can run, else why not (printed, and the parts are skipped)."""
  if importlib.util.find_spec("torch") is None:
    return "torch not installed (pip install 'hh-jax[bench]'): PyTorch peer skipped"
  if not TORCH_PEER.exists():
    return f"{TORCH_PEER} not found (run from a source checkout): PyTorch peer skipped"
  return None


def hf_missing_note() -> str | None:
  if importlib.util.find_spec("transformers") is None:
    return "transformers not installed (pip install 'hh-jax[bench]'): HF generate skipped"
  return None


def run_torch_peer(args: list[str]) -> dict:
  """benchmarks/torch_pm.py in a subprocess (its own thread pool, nothing shared with XLA)."""
  proc = subprocess.run([sys.executable, str(TORCH_PEER), *args], capture_output=True, text=True,
                        check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"{TORCH_PEER} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the run


def machine_info() -> dict:
  cpu = platform.processor() or "?"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"nproc": os.cpu_count(), "cpu": cpu, "jax_backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind, "jax_version": jax.__version__,
          # Other processes on a shared machine skew every number: record how busy it was.
          "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run(bc: BenchConfig, log=print) -> dict:
  """All measurements (module docstring) -> one flat-ish JSON-able dict."""
  results: dict = {"machine": machine_info(), "config": dataclasses.asdict(bc), "notes": []}

  def note(text: str) -> None:
    results["notes"].append(text)
    log(f"note: {text}")

  log(f"machine: {results['machine']}")
  results["matmul_peak_flops"] = matmul_peak_flops(jnp.float32, bc.matmul_n)
  log(f"matmul ceiling float32: {results['matmul_peak_flops'] / 1e9:.1f} GFLOP/s")
  if bf16_supported():
    results["matmul_peak_flops_bf16"] = matmul_peak_flops(jnp.bfloat16, bc.matmul_n)
    log(f"matmul ceiling bfloat16: {results['matmul_peak_flops_bf16'] / 1e9:.1f} GFLOP/s")

  results["sizes"] = {}
  for size in bc.sizes:
    r = pm_step_throughput(size, bc, results["matmul_peak_flops"])
    results["sizes"][size] = r
    log(f"PM step {size}: {r['pm_step_tokens_per_s']:,.0f} tokens/s, MFU {r['pm_step_mfu']:.1%}")

  torch_note = torch_missing_note() if bc.torch else "torch peer disabled (--no-torch)"
  if torch_note:
    note(torch_note)
  else:
    # XLA's CPU client runs one thread per core; give torch the same.
    peer = run_torch_peer(["--sizes", ",".join(bc.sizes), "--pairs", str(bc.pairs), "--seq",
                           str(bc.seq), "--vocab", str(VOCAB), "--steps", str(bc.steps),
                           "--repeats", str(bc.repeats), "--threads", str(os.cpu_count())])
    results["torch_num_threads"] = peer["torch_num_threads"]
    results["torch_version"] = peer["torch_version"]
    for size in bc.sizes:
      r = results["sizes"][size]
      r["torch_pm_step_tokens_per_s"] = peer[size]["torch_pm_step_tokens_per_s"]
      r["speedup_vs_torch"] = r["pm_step_tokens_per_s"] / r["torch_pm_step_tokens_per_s"]
    log(f"torch peer done ({peer['torch_num_threads']} threads)")

  results.update(decode_throughput(bc))
  log(f"decode {bc.decode_size}: cached {results['decode_cached_tokens_per_s']:,.0f} tokens/s, "
      f"uncached {results['decode_uncached_tokens_per_s']:,.0f} tokens/s")
  hf_note = torch_note or hf_missing_note()
  if hf_note:
    note(hf_note.replace("PyTorch peer", "HF generate"))
  else:
    hf = run_torch_peer(["--sizes", bc.decode_size, "--hf-generate", "--batch",
                         str(bc.decode_batch), "--prompt", str(bc.prompt_len), "--new",
                         str(bc.new_tokens), "--vocab", str(VOCAB), "--repeats",
                         str(bc.decode_repeats), "--threads", str(os.cpu_count())])
    results["hf_generate_tokens_per_s"] = hf[bc.decode_size]["hf_generate_tokens_per_s"]
    results["transformers_version"] = hf.get("transformers_version")
    log(f"HF generate {bc.decode_size}: {results['hf_generate_tokens_per_s']:,.0f} tokens/s")

  short = run_child("pm_loop", size=bc.loop_size, steps=bc.loop_steps, pairs=bc.pairs, seq=bc.seq)
  long = run_child("pm_loop", size=bc.loop_size, steps=bc.loop_steps * bc.loop_ratio,
                   pairs=bc.pairs, seq=bc.seq)
  results["compiles"] = {"short_steps": short["steps"], "short": short["compiles"],
                         "long_steps": long["steps"], "long": long["compiles"],
                         "compiled": long["compiled"]}
  log(f"compilations: {short['compiles']} ({short['steps']} steps) vs "
      f"{long['compiles']} ({long['steps']} steps)")

  # The long compile-count loop is already a PM run at loop_size: reuse it when sizes agree.
  pm_mem = long if bc.memory_size == bc.loop_size else run_child(
      "pm_loop", size=bc.memory_size, steps=bc.memory_steps, pairs=bc.pairs, seq=bc.seq)
  ppo_mem = run_child("ppo_like", size=bc.memory_size, iterations=bc.memory_steps,
                      batch=bc.decode_batch, prompt_len=bc.prompt_len, new_tokens=bc.new_tokens)
  results["peak_rss_mb"] = {"pm_run": pm_mem["peak_rss_mb"], "ppo_like": ppo_mem["peak_rss_mb"],
                            "size": bc.memory_size}
  log(f"peak RSS at {bc.memory_size}: PM run {pm_mem['peak_rss_mb']:.0f} MB, "
      f"PPO-like {ppo_mem['peak_rss_mb']:.0f} MB")
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
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="hh-jax bench", description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats (< 5 min on 2 cores)")
  parser.add_argument("--json", metavar="FILE", help="write all results to FILE")
  parser.add_argument("--sizes", help="comma-separated laptop sizes (default: all)")
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch/HF peers")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return _child_main(args.child)
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
  results["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  results.update(flat_summary(results))
  print(format_table(results))
  print(f"bench wall time: {results['wall_seconds']:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
