"""The bench's PM workloads: comparisons shaped like the data the project trains on, and the
pairs/s of one PM train step over them by the packed and the padded path.

    laptop    synthetic-world comparisons (`hh_synth/mix`, world tokenizer, max_len 64) as
              the laptop PM sweep sees them: B = 32 pairs per step, padded to T = 47 (the
              longest row of the sweep's training set);
    hh_rlhf   HH-RLHF-shaped comparisons at max_len 1024, T = 1024: lengths drawn from the
              real sample's distribution (`hh_rlhf_lengths`), random byte tokens.

Per size the step runs on the same K batches by both paths, and the figures are

    pairs/s       = K B / (seconds of K steps)       (best of several blocks)
    mfu_unique    = 3 * 2 N * unique tokens/s / peak_f32
                    (the dense part of the step, counted on the tokens a pair needs:
                    l_c + l_r - p per pair, context once; N = non-embedding params)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from hh_jax import models
from hh_jax.bench import peers
from hh_jax.bench.hh_rlhf_lengths import QUANTILES, RANK_CORRELATION
from hh_jax.bench.throughput import VOCAB, BenchConfig, pm_setup
from hh_jax.bench.timing import best_seconds_per_call, load_average_1min
from hh_jax.data import packing
from hh_jax.data.batching import PairArrays, take_pairs
from hh_jax.special_tokens import EOC_ID, NUM_SPECIAL, PAD_ID
from hh_jax.train import pm

LAPTOP_PAD_LEN = 47          # the longest row of hh_synth/mix train at max_len 64
HH_MAX_LEN = 1024


def laptop_pairs(n: int, seed: int = 0) -> PairArrays:
  """n synthetic-world comparisons encoded as the laptop sweep encodes them, padded to 47."""
  from hh_jax.data import batching, pipeline   # the world generator: only when asked
  from hh_jax.data.world import corpus
  tok = pipeline.get_tokenizer("hh_synth/mix")
  arrays = batching.encode_pairs(tok, corpus.comparisons("mix", seed, n).examples(), 64)
  return pad_to(arrays, max(LAPTOP_PAD_LEN, arrays.seq_len))


def pad_to(arrays: PairArrays, length: int) -> PairArrays:
  """The same pairs, right-padded with PAD to `length` tokens."""
  extra = ((0, 0), (0, length - arrays.seq_len))
  return dataclasses.replace(
      arrays, chosen_tokens=np.pad(arrays.chosen_tokens, extra, constant_values=PAD_ID),
      rejected_tokens=np.pad(arrays.rejected_tokens, extra, constant_values=PAD_ID))


def _normal_cdf(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def hh_rlhf_lengths(n: int, seed: int = 0) -> np.ndarray:
  """(n, 3) raw (context, chosen, rejected) lengths: u = Phi(z), z ~ N(0, C) with C the
  sample's rank correlation (a Gaussian copula), length = the quantile table at u."""
  rng = np.random.default_rng(seed)
  # Pearson correlation of the normals that gives Spearman rho: 2 sin(pi rho / 6).
  corr = 2 * np.sin(np.pi * np.asarray(RANK_CORRELATION) / 6)
  u = _normal_cdf(rng.multivariate_normal(np.zeros(3), corr, size=n))
  cols = [np.interp(u[:, i], np.linspace(0, 1, 101), QUANTILES[k])
          for i, k in enumerate(("context", "chosen", "rejected"))]
  return np.rint(np.stack(cols, axis=1)).astype(np.int64)


def hh_rlhf_pairs(n: int, seed: int = 0, max_len: int = HH_MAX_LEN) -> PairArrays:
  """n comparisons of random byte tokens with HH-RLHF lengths, cut as `encode_pairs` cuts:
  replies keep their last max_len - 1 tokens, the context its last max_len - 1 - longer reply."""
  rng = np.random.default_rng([seed, 1])
  chosen = np.full((n, max_len), PAD_ID, np.int32)
  rejected = np.full((n, max_len), PAD_ID, np.int32)
  eoc = np.zeros((2, n), np.int32)
  for i, (ctx, a, b) in enumerate(hh_rlhf_lengths(n, seed)):
    a, b = min(a, max_len - 1), min(b, max_len - 1)
    ctx = min(ctx, max_len - 1 - max(a, b))
    context = rng.integers(NUM_SPECIAL, VOCAB, ctx)
    reply_a, reply_b = rng.integers(NUM_SPECIAL, VOCAB, a), rng.integers(NUM_SPECIAL, VOCAB, b)
    for side, (matrix, reply) in enumerate(((chosen, reply_a), (rejected, reply_b))):
      row = np.concatenate([context, reply, [EOC_ID]])
      matrix[i, :len(row)] = row
      eoc[side, i] = len(row) - 1
  return PairArrays(chosen_tokens=chosen, rejected_tokens=rejected, chosen_eoc_index=eoc[0],
                    rejected_eoc_index=eoc[1], num_turns=np.ones(n, np.int32),
                    source=np.zeros(n, np.int32), weight=np.ones(n, np.float32),
                    source_names=("harmless-base",))


def workload_pairs(name: str, bc: BenchConfig) -> tuple[PairArrays, int]:
  """(the K B pairs of workload `name`, B)."""
  pairs = bc.laptop_pairs if name == "laptop" else bc.hh_pairs
  n = pairs * bc.workload_batches
  arrays = laptop_pairs(n, seed=0) if name == "laptop" else hh_rlhf_pairs(n, seed=0)
  return arrays, pairs


def step_batches(arrays: PairArrays, pairs: int) -> list[dict]:
  """The padded step inputs (`pm.device_batch`) of consecutive batches of `pairs` pairs."""
  return [pm.device_batch(take_pairs(arrays, np.arange(s, s + pairs)), arrays.source_names)
          for s in range(0, len(arrays) - pairs + 1, pairs)]


def unique_tokens(arrays: PairArrays) -> int:
  """sum over pairs of l_c + l_r - p: what the pairs need, each shared prefix once."""
  lc, lr, p = packing.pair_lengths(arrays)
  return int((lc + lr - p).sum())


def _seconds_per_step(step, state, batches: list[dict], bc: BenchConfig) -> float:
  """Best seconds per step over blocks of one step per batch (cycled)."""
  batches = [jax.device_put(b) for b in batches]
  holder = {"state": state, "i": 0}
  key = jax.random.key(0)

  def one_step():
    holder["state"], metrics = step(holder["state"], batches[holder["i"] % len(batches)], key)
    holder["i"] += 1
    return metrics["pm/loss"]

  return best_seconds_per_call(one_step, len(batches), bc.repeats)


def workload_throughput(size: str, arrays: PairArrays, pairs: int, bc: BenchConfig,
                        peak_flops: float) -> dict:
  """packed_pairs_per_s, padded_pairs_per_s and mfu_unique of the PM step at `size`."""
  padded = step_batches(arrays, pairs)
  cfg, step, state = pm_setup(size, arrays.seq_len, total_steps=1000)
  rows = [np.arange(s, s + pairs) for s in range(0, len(padded) * pairs, pairs)]
  layout = pm.packed_layout(cfg, arrays, rows)
  packed = [packing.pack_pairs(b, layout) for b in padded]
  load_start = load_average_1min()
  packed_s = _seconds_per_step(step, state, packed, bc)
  _, step, state = pm_setup(size, arrays.seq_len, total_steps=1000)
  padded_s = _seconds_per_step(step, state, padded, bc)
  unique_per_step = unique_tokens(arrays) / len(padded)
  dense_flops = 3 * 2 * models.count_params(cfg) * unique_per_step
  return {"packed_pairs_per_s": pairs / packed_s, "padded_pairs_per_s": pairs / padded_s,
          "mfu_unique": dense_flops / packed_s / peak_flops,
          "packed_vs_padded": padded_s / packed_s,
          "layout": {"rows": layout.rows, "row_len": layout.row_len, "slots": layout.slots},
          "unique_tokens_per_step": unique_per_step, "padded_tokens_per_step": 2 * pairs * arrays.seq_len,
          "load_average_1min": [load_start, load_average_1min()]}


def run_workload(name: str, bc: BenchConfig, peak_flops: float, log, with_torch: bool) -> dict:
  """Every size of workload `name`: hh-jax packed and padded, and (with_torch) the TRL-style
  torch peer on the same batches; ratios packed / padded and packed / torch."""
  arrays, pairs = workload_pairs(name, bc)
  sizes = {}
  for size in bc.sizes:
    r = sizes[size] = workload_throughput(size, arrays, pairs, bc, peak_flops)
    log(f"{name} {size}: packed {r['packed_pairs_per_s']:,.1f} pairs/s, padded "
        f"{r['padded_pairs_per_s']:,.1f} ({r['packed_vs_padded']:.2f}x), MFU on unique tokens "
        f"{r['mfu_unique']:.1%}, load {r['load_average_1min']}")
  if with_torch:
    load_start = load_average_1min()
    torch_pps = peers.torch_trl_pairs_per_s(bc, step_batches(arrays, pairs))
    load = [load_start, load_average_1min()]
    for size, r in sizes.items():
      r.update(torch_pairs_per_s=torch_pps[size], torch_load_average_1min=load,
               packed_vs_torch=r["packed_pairs_per_s"] / torch_pps[size])
      log(f"{name} {size}: torch (TRL-style) {torch_pps[size]:,.1f} pairs/s, packed / torch "
          f"{r['packed_vs_torch']:.2f}x")
  lc, lr, p = packing.pair_lengths(arrays)
  return {"pairs_per_step": pairs, "steps_timed": len(arrays) // pairs, "seq_len": arrays.seq_len,
          "unique_fraction": float((lc + lr - p).sum() / (2 * len(lc) * arrays.seq_len)),
          "real_fraction": float((lc + lr).sum() / (2 * len(lc) * arrays.seq_len)),
          "sizes": sizes}


def format_workloads(workloads: dict) -> list[str]:
  """Markdown lines: one table per workload."""
  lines = []
  for name, w in workloads.items():
    lines += ["", f"workload {name}: {w['pairs_per_step']} pairs per step, T = {w['seq_len']}, "
              f"{w['real_fraction']:.0%} of padded tokens real, {w['unique_fraction']:.0%} unique",
              "| size | packed pairs/s | padded pairs/s | packed / padded | torch (TRL) pairs/s "
              "| packed / torch | MFU unique | rows x L | load |",
              "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for size, r in w["sizes"].items():
      torch_pps = r.get("torch_pairs_per_s")
      lay = r["layout"]
      lines.append(
          f"| {size} | {r['packed_pairs_per_s']:,.1f} | {r['padded_pairs_per_s']:,.1f} | "
          f"{r['packed_vs_padded']:.2f}x | "
          + (f"{torch_pps:,.1f} | {r['packed_vs_torch']:.2f}x |" if torch_pps else "skipped | - |")
          + f" {r['mfu_unique']:.1%} | {lay['rows']} x {lay['row_len']} | "
          f"{r['load_average_1min'][0]:.1f}-{r['load_average_1min'][1]:.1f} |")
  return lines
