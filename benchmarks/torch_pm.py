"""The PyTorch peer of hh-jax's PM train step, and Hugging Face `generate` on the same shape.

    python benchmarks/torch_pm.py --sizes 1k,3M --pairs 32 --seq 64 [--threads 2]
    python benchmarks/torch_pm.py --sizes 3M --hf-generate --batch 32 --prompt 64 --new 64
    python benchmarks/torch_pm.py --sizes 3M --trl-batches FILE.npz     # pairs/s, TRL-style

Prints one JSON object (the last stdout line) so `hh-jax bench` can run it in a
subprocess. Needs the `bench` extra (`pip install hh-jax[bench]`: torch, transformers).

The PM step mirrors `hh_jax.train.pm.make_step` exactly in architecture and work:

    h_0 = E[tokens] + P[positions],   positions = cumsum(mask) - 1       learned positions
    h   = h + Attn(LN(h));  h = h + W2 gelu_tanh(W1 LN(h))                pre-LN GPT-2 block
    r   = w_s . LN_f(h)[b, eoc_b] + b_s                                   score read at an index
    L   = mean_i -log sigmoid(r_chosen,i - r_rejected,i)                  Bradley-Terry
    clip_by_global_norm(1.0) then AdamW(b1 0.9, b2 0.95, eps 1e-5)        as `make_optimizer`

with attention masked by `causal & (key is real | key is the query)` as in hh-jax, so
both sides do the same FLOPs. It runs in eager mode (what a PyTorch user runs by default)
with `torch.set_num_threads(threads)`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import torch
from torch import nn
from torch.nn import functional as F

from hh_jax.bench.timing import best_seconds_per_call   # eager torch: fn blocks on its own
from hh_jax.models.config import LAPTOP_LADDER
from hh_jax.special_tokens import PAD_ID


class Block(nn.Module):
  """Pre-LayerNorm GPT-2 block with a fused q/k/v projection."""

  def __init__(self, d: int, n_heads: int):
    super().__init__()
    self.n_heads = n_heads
    self.ln_attn = nn.LayerNorm(d, eps=1e-6)
    self.qkv = nn.Linear(d, 3 * d)
    self.out = nn.Linear(d, d)
    self.ln_mlp = nn.LayerNorm(d, eps=1e-6)
    self.up = nn.Linear(d, 4 * d)
    self.down = nn.Linear(4 * d, d)

  def forward(self, h, mask_b1ts):
    b, t, d = h.shape
    q, k, v = self.qkv(self.ln_attn(h)).split(d, dim=-1)                 # 3 x (B, T, D)
    q, k, v = (z.view(b, t, self.n_heads, -1).transpose(1, 2) for z in (q, k, v))  # (B, N, T, H)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_b1ts)    # (B, N, T, H)
    h = h + self.out(y.transpose(1, 2).reshape(b, t, d))
    return h + self.down(F.gelu(self.up(self.ln_mlp(h)), approximate="tanh"))


class PreferenceModel(nn.Module):
  """Decoder-only transformer with tied embedding and a scalar score head."""

  def __init__(self, vocab: int, d: int, n_layers: int, n_heads: int, max_len: int):
    super().__init__()
    self.embed = nn.Embedding(vocab, d)
    self.pos_embed = nn.Embedding(max_len, d)
    nn.init.normal_(self.embed.weight, std=0.02)
    nn.init.normal_(self.pos_embed.weight, std=0.01)
    self.blocks = nn.ModuleList([Block(d, n_heads) for _ in range(n_layers)])
    self.ln_f = nn.LayerNorm(d, eps=1e-6)
    self.score_head = nn.Linear(d, 1)
    self.value_head = nn.Linear(d, 1)   # present as in hh-jax; a PM step does not use it

  def forward(self, tokens_bt, score_index_b):
    """tokens (B, T) right-padded -> scores (B,) read at `score_index`."""
    b, t = tokens_bt.shape
    real_bt = tokens_bt != PAD_ID
    positions = (real_bt.cumsum(1) - 1).clamp(min=0)                     # (B, T)
    slot = torch.arange(t)
    causal_ts = slot[None, :] <= slot[:, None]
    is_self_ts = slot[None, :] == slot[:, None]
    mask_bts = causal_ts[None] & (real_bt[:, None, :] | is_self_ts[None])
    h = self.embed(tokens_bt) + self.pos_embed(positions)               # (B, T, D)
    for block in self.blocks:
      h = block(h, mask_bts[:, None])
    out = self.ln_f(h)
    return self.score_head(out[torch.arange(b), score_index_b])[:, 0]   # (B,)


def pm_train_step(model, optimizer, batch) -> torch.Tensor:
  """One Bradley-Terry step on the stacked (2B, T) batch, as hh-jax's `pm.make_step`."""
  tokens = torch.cat([batch["chosen_tokens"], batch["rejected_tokens"]])
  index = torch.cat([batch["chosen_eoc_index"], batch["rejected_eoc_index"]])
  r_chosen, r_rejected = model(tokens, index).chunk(2)
  loss = -F.logsigmoid(r_chosen - r_rejected).mean()
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
  optimizer.step()
  return loss


def random_pm_batch(pairs: int, seq: int, vocab: int, seed: int = 0) -> dict:
  """Pairs of full-length sequences with the EOC at the last slot (no padding)."""
  g = torch.Generator().manual_seed(seed)
  tokens = lambda: torch.randint(3, vocab, (pairs, seq), generator=g)
  eoc = torch.full((pairs,), seq - 1)
  return {"chosen_tokens": tokens(), "rejected_tokens": tokens(),
          "chosen_eoc_index": eoc, "rejected_eoc_index": eoc}


def pm_step_tokens_per_s(shape: tuple[int, int, int], *, pairs: int, seq: int, vocab: int,
                         steps: int, repeats: int) -> float:
  """Tokens (2 * pairs * seq per step) per second of the eager PM train step."""
  n_layers, d, n_heads = shape
  torch.manual_seed(0)
  model = PreferenceModel(vocab, d, n_layers, n_heads, max_len=seq)
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-5,
                                weight_decay=0.0)
  batch = random_pm_batch(pairs, seq, vocab)
  seconds = best_seconds_per_call(lambda: pm_train_step(model, optimizer, batch), steps, repeats,
                                  warmup=2)
  return 2 * pairs * seq / seconds


def trl_pairs_per_s(shape: tuple[int, int, int], *, batches_file: str, vocab: int,
                    repeats: int) -> float:
  """Pairs per second of the eager PM step over the batches in `batches_file`, each run as
  TRL's RewardTrainer runs a batch: chosen and rejected rows in ONE batch of 2B rows, padded
  to that batch's longest row (its collator pads to the batch maximum).

  The file (`hh_jax.bench.peers.write_trl_batches`) holds tokens (K, 2B, T) int, eoc
  (K, 2B) int (chosen rows first) and longest (K,) int; one timed block steps over all K.
  """
  data = np.load(batches_file)
  tokens, eoc, longest = (torch.from_numpy(data[k]).long() for k in ("tokens", "eoc", "longest"))
  n_layers, d, n_heads = shape
  torch.manual_seed(0)
  model = PreferenceModel(vocab, d, n_layers, n_heads, max_len=tokens.shape[2])
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-5,
                                weight_decay=0.0)
  pairs = tokens.shape[1] // 2
  batches = [{"chosen_tokens": tokens[k, :pairs, :longest[k]],
              "rejected_tokens": tokens[k, pairs:, :longest[k]],
              "chosen_eoc_index": eoc[k, :pairs], "rejected_eoc_index": eoc[k, pairs:]}
             for k in range(len(longest))]

  def block():
    for batch in batches:
      pm_train_step(model, optimizer, batch)

  seconds = best_seconds_per_call(block, 1, repeats, warmup=1)
  return pairs * len(batches) / seconds


def hf_generate_tokens_per_s(shape: tuple[int, int, int], *, batch: int, prompt: int, new: int,
                             vocab: int, repeats: int) -> float:
  """Generated tokens per second of `GPT2LMHeadModel.generate` (greedy, KV cache, random init)."""
  from transformers import GPT2Config, GPT2LMHeadModel  # optional: only --hf-generate needs it
  n_layers, d, n_heads = shape
  config = GPT2Config(vocab_size=vocab, n_positions=prompt + new, n_embd=d, n_layer=n_layers,
                      n_head=n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=None, eos_token_id=None, pad_token_id=PAD_ID)
  torch.manual_seed(0)
  model = GPT2LMHeadModel(config).eval()
  prompt_bp = torch.randint(3, vocab, (batch, prompt))
  attention_mask = torch.ones_like(prompt_bp)

  def run():
    with torch.inference_mode():
      out = model.generate(prompt_bp, attention_mask=attention_mask, do_sample=False,
                           max_new_tokens=new, min_new_tokens=new, use_cache=True)
    assert out.shape == (batch, prompt + new), out.shape

  seconds = best_seconds_per_call(run, 1, repeats, warmup=1)
  return batch * new / seconds


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="3M", help="comma-separated laptop ladder names")
  parser.add_argument("--pairs", type=int, default=32)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--vocab", type=int, default=259)
  parser.add_argument("--steps", type=int, default=10, help="train steps per timed block")
  parser.add_argument("--repeats", type=int, default=3, help="timed blocks (the best is kept)")
  parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
  parser.add_argument("--hf-generate", action="store_true",
                      help="time Hugging Face generate instead of the PM step")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=64)
  parser.add_argument("--trl-batches", metavar="FILE",
                      help="time TRL-style batches from FILE (.npz) instead of --pairs/--seq")
  args = parser.parse_args(argv)
  if args.threads:
    torch.set_num_threads(args.threads)
  result = {"torch_version": torch.__version__, "torch_num_threads": torch.get_num_threads()}
  for name in args.sizes.split(","):
    if name not in LAPTOP_LADDER:
      raise SystemExit(f"--sizes: unknown size {name!r}; known: {', '.join(LAPTOP_LADDER)}")
    shape = LAPTOP_LADDER[name]
    if args.hf_generate:
      import transformers  # optional: only --hf-generate needs it
      result["transformers_version"] = transformers.__version__
      result[name] = {"hf_generate_tokens_per_s": hf_generate_tokens_per_s(
          shape, batch=args.batch, prompt=args.prompt, new=args.new, vocab=args.vocab,
          repeats=args.repeats)}
    elif args.trl_batches:
      result[name] = {"torch_pairs_per_s": trl_pairs_per_s(
          shape, batches_file=args.trl_batches, vocab=args.vocab, repeats=args.repeats)}
    else:
      result[name] = {"torch_pm_step_tokens_per_s": pm_step_tokens_per_s(
          shape, pairs=args.pairs, seq=args.seq, vocab=args.vocab, steps=args.steps,
          repeats=args.repeats)}
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
