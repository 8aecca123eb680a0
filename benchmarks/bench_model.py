"""Forward+backward tokens/s of the transformer for each laptop size.

    python benchmarks/bench_model.py [--batch 32] [--seq 64] [--steps 10]

Times a jitted value_and_grad of the next-token loss (compile excluded) and prints
tokens/s and achieved GFLOP/s (3x the forward matmul FLOPs of
`hh_jax.models.forward_flops_per_token`, LM head included).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from hh_jax import models as M


def bench_size(name: str, batch: int, seq: int, steps: int, vocab: int) -> dict:
  cfg = M.ladder_config(name, vocab_size=vocab, max_len=seq)
  graphdef, params = M.init(cfg, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (batch, seq), 3, vocab)

  def loss_fn(params, tokens):
    logits = M.apply(graphdef, params, tokens).logits[:, :-1]
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], -1).mean()

  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  jax.block_until_ready(grad_fn(params, tokens))              # compile
  start = time.perf_counter()
  for _ in range(steps):
    out = grad_fn(params, tokens)
  jax.block_until_ready(out)
  seconds = (time.perf_counter() - start) / steps
  flops = 3 * M.forward_flops_per_token(cfg, seq, lm_head=True) * batch * seq
  return dict(size=name, non_embedding_params=M.count_params(cfg),
              tokens_per_s=batch * seq / seconds, gflops_per_s=flops / seconds / 1e9)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--vocab", type=int, default=128)
  args = parser.parse_args()
  print(f"device: {jax.devices()[0].device_kind}, batch {args.batch} x seq {args.seq}")
  print(f"{'size':>6} {'params':>10} {'tokens/s':>10} {'GFLOP/s':>8}")
  for name in M.LAPTOP_LADDER:
    r = bench_size(name, args.batch, args.seq, args.steps, args.vocab)
    print(f"{r['size']:>6} {r['non_embedding_params']:>10,} {r['tokens_per_s']:>10,.0f} "
          f"{r['gflops_per_s']:>8.1f}")


if __name__ == "__main__":
  main()
