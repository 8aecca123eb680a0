"""What one bench run measures (BenchConfig), and the in-process throughputs: the PM train
step per laptop size (tokens/s, MFU, the CPU compiler-option A/B) and cached vs uncached
greedy decoding (reply tokens/s)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from hh_jax import models
from hh_jax.bench.timing import best_seconds_per_call
from hh_jax.config import OptimConfig
from hh_jax.special_tokens import NUM_SPECIAL
from hh_jax.train import optim, pm, rollout

VOCAB = 256 + NUM_SPECIAL         # byte tokenizer: 256 bytes + PAD/EOS/EOC
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
  workloads: tuple[str, ...] = ("laptop", "hh_rlhf")   # hh_jax.bench.workloads
  laptop_pairs: int = 32          # pairs per step of the laptop workload (the sweep's B)
  hh_pairs: int = 8               # pairs per step of the hh_rlhf workload (T = 1024)
  workload_batches: int = 4       # K batches per workload, each timed block steps over all


QUICK = BenchConfig(steps=3, repeats=2, decode_repeats=2, loop_ratio=20, workload_batches=1)


def random_pm_batch(pairs: int, seq: int, vocab: int = VOCAB, seed: int = 0) -> dict:
  """A PM batch (see `hh_jax.train.pm`) of full-length random pairs, EOC in the last slot."""
  rng = np.random.default_rng(seed)
  tokens = lambda: rng.integers(NUM_SPECIAL, vocab, (pairs, seq), dtype=np.int32)
  eoc = np.full((pairs,), seq - 1, np.int32)
  return {"chosen_tokens": tokens(), "rejected_tokens": tokens(), "chosen_eoc_index": eoc,
          "rejected_eoc_index": eoc, "weight": np.ones((pairs,), np.float32),
          "is_harmless": np.zeros((pairs,), np.float32)}


def pm_setup(size: str, seq: int, total_steps: int):
  """(model config, jitted PM train step, fresh train state) at `size`, byte vocabulary."""
  cfg = models.ladder_config(size, vocab_size=VOCAB, max_len=seq)
  graphdef, params = models.init(cfg, jax.random.key(0))
  optimizer = optim.make_optimizer(OptimConfig(), total_steps)
  state = optim.init_train_state(params, optimizer, pm.PM_HPARAMS)
  return cfg, pm.make_step(graphdef, optimizer), state


def pm_step(size: str, seq: int, xla_defaults: bool = False):
  """(jitted PM step, fresh state) at `size`; xla_defaults: without the CPU compiler options."""
  _, step, state = pm_setup(size, seq, total_steps=1000)
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


def decode_throughput(bc: BenchConfig) -> dict:
  """Reply tokens/s (decode_batch * new_tokens per call) of cached and uncached greedy sampling."""
  cfg = models.ladder_config(bc.decode_size, vocab_size=VOCAB,
                             max_len=bc.prompt_len + bc.new_tokens)
  graphdef, params = models.init(cfg, jax.random.key(0))
  prompt = jax.random.randint(jax.random.key(1), (bc.decode_batch, bc.prompt_len), NUM_SPECIAL,
                              VOCAB)
  key = jax.random.key(2)
  result = {}
  for name, sampler, repeats in (("cached", rollout.generate, bc.decode_repeats),
                                 ("uncached", rollout.generate_uncached, max(1, bc.decode_repeats - 1))):
    fn = jax.jit(lambda p, x, k, s=sampler: s(graphdef, p, x, k, max_new_tokens=bc.new_tokens,
                                               temperature=0.0, eos_id=-1).response)
    seconds = best_seconds_per_call(lambda: fn(params, prompt, key), 1, repeats)
    result[f"decode_{name}_tokens_per_s"] = bc.decode_batch * bc.new_tokens / seconds
  return result
