"""PPO's scoring and update passes on packed rows: each rollout's real tokens computed once.

A rollout row is a left-padded prompt followed by a right-padded reply, [PAD.. x | y PAD..] of
P + N tokens; on the laptop world the prompt averages 14 of P = 47 tokens and the reply 5-8 of
N = 16, so about a third of a padded row is real. The padded iteration
(`hh_jax.train.ppo.iteration`, one jitted call) computes every position; this one computes
only the real tokens:

  1. rollout      `ppo.sample_rollout` (jitted, the KV-cache sampler; decoding is unchanged);
  2. plan (host)  each rollout's real tokens become one segment at positions 0 .. n - 1
                  (`packing.pack_masked`), first-fit decreasing into rows of L = P + N:
                    "policy"       the batch's [x | y] rows, for pi_old, pi0 and V;
                    "pm"           the batch's `rollout.pm_input` rows, scores read at each EOC;
                    "minibatches"  each update minibatch's [x | y] rows, in the minibatch order
                                   `ppo.minibatch_orders(k_update)` that the update itself uses;
  3. learn        `ppo.learn` (jitted, state donated) on those rows.

Every per-token output is read back at the padded position it belongs to (`index`), and a
packed segment sees exactly the tokens and positions its padded row sees (causal mask within
its segment), so logprobs, values, scores and gradients equal the padded iteration's within
float tolerance (tests/test_ppo_packed.py), and so does the state after an iteration.

Static shapes. A layout's rows R (and score slots K per row) are sized from the first batch
with 1/8 headroom, and grown the same way when a later batch needs more (the step then
compiles once more; longer replies need more rows). `Layouts.grown` counts the growths; the
layouts are saved in every checkpoint (`lifecycle.Task.host_state`), so a resumed run packs
into the shapes the uninterrupted run had at that step and writes the same files bit for bit.
The key derivation, the minibatch orders and the sampling are the padded iteration's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax.data import packing
from hh_jax.special_tokens import PAD_ID
from hh_jax.train import ppo
from hh_jax.train.optim import jit_train_step
from hh_jax.train.rollout import pm_input, policy_input


def with_headroom(n: int) -> int:
  """n + ceil(n / 8): a layout size with room for somewhat longer batches."""
  return n + -(-n // 8)


class Layouts:
  """The packed layouts of a run, by pass name: grown (never shrunk) when a batch needs more."""

  def __init__(self):
    self.layouts: dict[str, packing.PackedLayout] = {}
    self.grown = 0

  def fit(self, name: str, rows: int, slots: int, row_len: int,
          most: int | None = None) -> packing.PackedLayout:
    """The layout of `name`, grown with headroom if it has fewer than `rows` rows or `slots`
    slots per row; never more rows or slots than `most` (the batch's sequences, one per row)."""
    have = self.layouts.get(name)
    if have is not None and have.rows >= rows and have.slots >= slots:
      return have
    rows, slots = with_headroom(rows), with_headroom(slots)
    if most is not None:
      rows, slots = min(rows, most), min(slots, most)
    if have is not None:
      self.grown += 1
      rows, slots = max(rows, have.rows), max(slots, have.slots)
    self.layouts[name] = packing.PackedLayout(rows=rows, row_len=row_len, slots=slots)
    return self.layouts[name]

  def state(self) -> dict:
    """The layouts as JSON (saved in each checkpoint: a resumed run packs into the same shapes)."""
    return {"layouts": {k: list(v) for k, v in self.layouts.items()}, "grown": self.grown}

  def restore(self, state: dict) -> None:
    self.layouts = {k: packing.PackedLayout(*v) for k, v in state["layouts"].items()}
    self.grown = int(state["grown"])


def rollout_rows(prompts_bp, response_bn, mask_bn) -> tuple[np.ndarray, np.ndarray]:
  """The padded [x | y] rows of the policy and value passes (`rollout.policy_input`) on the
  host: tokens (B, P+N) and real mask."""
  return tuple(np.asarray(a) for a in policy_input(prompts_bp, response_bn, mask_bn))


def pack_rows(tokens, real, layouts: Layouts, name: str) -> dict:
  """One pass's rows packed into layout `name` (`packing.pack_masked`)."""
  placement = packing.masked_placement(real, tokens.shape[1])
  layout = layouts.fit(name, *packing.rows_needed(placement), tokens.shape[1], most=len(tokens))
  return packing.pack_masked(tokens, real, layout, placement)


def pack_pm_rows(prompts_bp, response_bn, mask_bn, layouts: Layouts) -> dict:
  """The `pm_input` rows packed, with score_index (R, K) and score_slot (B,) at each EOC."""
  tokens, eoc = (np.asarray(a) for a in pm_input(prompts_bp, response_bn, mask_bn))
  packed = pack_rows(tokens, tokens != PAD_ID, layouts, "pm")
  score_index, slot = packing.score_slots(packed.pop("index")[np.arange(len(eoc)), eoc],
                                          layouts.layouts["pm"])
  return {**packed, "score_index": score_index, "score_slot": slot}


def plan_iteration(prompts_bp, response_bn, mask_bn, orders_emb, layouts: Layouts) -> dict:
  """The packed rows of one iteration (module docstring, step 2): numpy arrays, "minibatches"
  stacked (K epochs, M minibatches, ...) in the order of orders_emb (K, M, minibatch)."""
  prompts_bp, response_bn, mask_bn = (np.asarray(a) for a in (prompts_bp, response_bn, mask_bn))
  tokens, real = rollout_rows(prompts_bp, response_bn, mask_bn)
  orders = np.asarray(orders_emb)
  flat = orders.reshape(-1, orders.shape[-1])
  placements = [packing.masked_placement(real[idx], tokens.shape[1]) for idx in flat]
  need = [packing.rows_needed(p) for p in placements]
  layout = layouts.fit("minibatch", max(n[0] for n in need), max(n[1] for n in need),
                       tokens.shape[1], most=flat.shape[1])
  minibatches = [packing.pack_masked(tokens[idx], real[idx], layout, p)
                 for idx, p in zip(flat, placements)]
  stacked = {k: np.stack([m[k] for m in minibatches]).reshape(*orders.shape[:2], *minibatches[0][k].shape)
             for k in minibatches[0]}
  return {"policy": pack_rows(tokens, real, layouts, "policy"),
          "pm": pack_pm_rows(prompts_bp, response_bn, mask_bn, layouts),
          "minibatches": stacked}


def packed_fraction(plan: dict, batch_size: int, padded_len: int) -> float:
  """Token positions the packed policy pass computes over the padded pass's (B x (P+N))."""
  rows, row_len = plan["policy"]["tokens"].shape
  return rows * row_len / (batch_size * padded_len)


def make_packed_iteration(policy_gd, value_gd, pm_gd, test_gds: tuple, optimizer,
                          cfg: ppo.PPOConfig, member_gds: tuple = ()):
  """`ppo.make_iteration`'s `iteration(state, frozen, prompts, key) -> (state, out)` on packed
  rows (module docstring); out["metrics"] also holds "perf/packed_fraction". Host-driven: the
  rollout is fetched to plan the rows, so it runs on one process (`jax.process_count() == 1`)."""
  sample = jax.jit(functools.partial(ppo.sample_rollout, policy_gd, cfg))

  def bound(state, batch, k_update):
    frozen, prompts, roll, plan = batch
    return ppo.learn(policy_gd, value_gd, pm_gd, tuple(test_gds), optimizer, cfg, state, frozen,
                     prompts, roll, k_update, tuple(member_gds), plan)

  learn = jit_train_step(bound)
  layouts = Layouts()

  def iteration(state, frozen, prompts, key):
    k_roll, k_update = ppo.iteration_keys(key, state["step"])
    roll = sample(state["params"]["policy"], prompts, k_roll)
    orders = ppo.minibatch_orders(k_update, cfg)
    host = jax.device_get((prompts, roll.response, roll.mask, orders))
    plan = plan_iteration(*host, layouts)
    state, out = learn(state, (frozen, prompts, roll, jax.tree.map(jnp.asarray, plan)), k_update)
    out["metrics"]["perf/packed_fraction"] = packed_fraction(plan, cfg.batch_size,
                                                            host[1].shape[1] + host[0].shape[1])
    return state, out

  iteration.layouts = layouts
  return iteration
