"""Sampling replies under `jit` with the KV cache: no host round trip per token.

    prompt (B, P) left-padded  --prefill-->  cache
    for t in 0..N-1 (lax.scan):  y_t ~ softmax(logits_t / temperature);  decode_step(y_t)

After a row emits EOS it is done: later tokens are PAD and its mask is 0. The response
mask is 1 on real tokens up to and including the EOS. Rows that never emit EOS are
flagged (`eos == False`) so the scorer can penalise them.

`generate_uncached` is the same sampler recomputing the full forward pass for every
token (the reference for tests and the baseline for the KV-cache benchmark).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hh_jax import models
from hh_jax.special_tokens import EOC_ID, EOS_ID, PAD_ID


class Rollout(NamedTuple):
  """response (B, N) int32, PAD after EOS; mask (B, N) float32; logprobs (B, N) of the sampled
  tokens under the sampling distribution (0 on padding); eos (B,) bool."""

  response: jax.Array
  mask: jax.Array
  logprobs: jax.Array
  eos: jax.Array


BANNED_LOGIT = -1e9   # finite, so that p log p = 0 for a banned token (no NaN in entropies)


def ban_tokens(logits, banned_ids: tuple[int, ...] = ()):
  """logits with the `banned_ids` entries (last axis) set to BANNED_LOGIT: the policy
  pi'(y) = pi(y) [y not banned] / sum_y' pi(y') [y' not banned] can never emit them. Sampling and
  every log-prob of a policy (old, new, reference) use the same pi', so the KL is between the
  banned distributions. () leaves the logits as they are."""
  if not banned_ids:
    return logits
  banned = jnp.zeros(logits.shape[-1], bool).at[jnp.asarray(banned_ids, jnp.int32)].set(True)
  return jnp.where(banned, BANNED_LOGIT, logits)


def _sample(logits_bv, key, temperature, banned_ids: tuple[int, ...] = ()):
  """y ~ Categorical(softmax(logits / T)) and its log-prob; T = 0 is greedy decoding;
  `banned_ids` are never drawn (`ban_tokens`)."""
  logits_bv = ban_tokens(logits_bv, banned_ids)
  greedy = temperature <= 0
  safe_t = jnp.where(greedy, 1.0, temperature)
  logp_bv = jax.nn.log_softmax(logits_bv / safe_t, axis=-1)
  sampled = jax.random.categorical(key, logp_bv, axis=-1)
  token = jnp.where(greedy, jnp.argmax(logits_bv, -1), sampled)
  return token.astype(jnp.int32), jnp.take_along_axis(logp_bv, token[:, None], -1)[:, 0]


def _finish(tokens_bn, logp_bn, eos_id):
  """Mask everything after the first EOS (which itself stays real)."""
  is_eos = tokens_bn == eos_id
  seen_before = jnp.cumsum(is_eos, axis=1) - is_eos                       # EOS strictly before t
  mask = (seen_before == 0).astype(jnp.float32)
  response = jnp.where(mask > 0, tokens_bn, PAD_ID)
  return Rollout(response, mask, logp_bn * mask, is_eos.any(axis=1))


def generate(graphdef, params, prompt_bp, key, *, max_new_tokens: int, temperature=1.0,
             eos_id: int = EOS_ID, banned_ids: tuple[int, ...] = ()) -> Rollout:
  """Sample up to `max_new_tokens` reply tokens for each left-padded prompt (jit-able), never a
  token of `banned_ids` (e.g. the dialogue's turn markers: a reply is one Assistant turn)."""
  b, p = prompt_bp.shape
  cfg = models.config_of(graphdef, params)
  cache = models.init_cache(cfg, b, p + max_new_tokens)
  out, cache = models.prefill(graphdef, params, prompt_bp, cache, cache_empty=True)
  logits = out.logits[:, -1]                                               # (B, V)

  def step(carry, key_t):
    logits, cache, done = carry
    token, logp = _sample(logits, key_t, temperature, banned_ids)
    token = jnp.where(done, PAD_ID, token)
    next_logits, _, cache = models.decode_step(graphdef, params, token, cache, pad_mask_b=~done)
    done = done | (token == eos_id)
    return (next_logits, cache, done), (token, logp)

  keys = jax.random.split(key, max_new_tokens)
  _, (tokens, logps) = jax.lax.scan(step, (logits, cache, jnp.zeros((b,), bool)), keys)
  return _finish(tokens.T, logps.T, eos_id)


def generate_uncached(graphdef, params, prompt_bp, key, *, max_new_tokens: int, temperature=1.0,
                      eos_id: int = EOS_ID, banned_ids: tuple[int, ...] = ()) -> Rollout:
  """The same sampler without a cache: a full forward pass over the growing sequence per token."""
  b, p = prompt_bp.shape
  seq = jnp.concatenate([prompt_bp, jnp.full((b, max_new_tokens), PAD_ID, jnp.int32)], axis=1)
  real = jnp.concatenate([prompt_bp != PAD_ID, jnp.zeros((b, max_new_tokens), bool)], axis=1)

  def step(carry, xs):
    seq, real, done = carry
    t, key_t = xs
    logits = models.apply(graphdef, params, seq, pad_mask=real).logits      # (B, P+N, V)
    token, logp = _sample(jax.lax.dynamic_index_in_dim(logits, p - 1 + t, 1, False), key_t,
                          temperature, banned_ids)
    token = jnp.where(done, PAD_ID, token)
    seq = jax.lax.dynamic_update_slice(seq, token[:, None], (0, p + t))
    real = jax.lax.dynamic_update_slice(real, (~done)[:, None], (0, p + t))
    done = done | (token == eos_id)
    return (seq, real, done), (token, logp)

  keys = jax.random.split(key, max_new_tokens)
  _, (tokens, logps) = jax.lax.scan(step, (seq, real, jnp.zeros((b,), bool)),
                                    (jnp.arange(max_new_tokens), keys))
  return _finish(tokens.T, logps.T, eos_id)


def policy_input(prompt_bp, response_bn, mask_bn):
  """The policy (and value) pass sees [prompt | response]: tokens (B, P+N) and their real mask
  (the prompt's non-PAD tokens, the response up to and including its EOS)."""
  seq = jnp.concatenate([prompt_bp, response_bn], axis=1)
  real = jnp.concatenate([prompt_bp != PAD_ID, mask_bn > 0], axis=1)
  return seq, real


def response_logprobs(graphdef, params, prompt_bp, response_bn, mask_bn, temperature=1.0,
                      banned_ids: tuple[int, ...] = (), packed: dict | None = None):
  """log pi(y_t | x, y_<t) (temperature-matched, `banned_ids` banned as when sampling), per-token
  values and entropy, from one full forward pass over [prompt | response]. Returns (logprobs
  (B,N), values (B,N), logits).

  packed: None (the padded (B, P+N) rows), or the same rows packed (`packing.pack_masked` of
  [prompt | response] with its real-token mask; keys tokens, positions, segment_ids (R, L) and
  index (B, P+N)): the outputs are read back at `index`, so they equal the padded pass's."""
  p = prompt_bp.shape[1]
  if packed is None:
    seq, real = policy_input(prompt_bp, response_bn, mask_bn)             # (B, P+N) x 2
    out = models.apply(graphdef, params, seq, pad_mask=real)
    logits, values = out.logits[:, p - 1:-1], out.values[:, p - 1:-1]    # (B, N, V), (B, N)
  else:
    out = models.apply(graphdef, params, packed["tokens"], positions=packed["positions"],
                       segment_ids=packed["segment_ids"])
    at = packed["index"][:, p - 1:-1]                                     # (B, N) flat r * L + c
    logits = out.logits.reshape(-1, out.logits.shape[-1])[at]
    values = out.values.reshape(-1)[at]
  logits = ban_tokens(logits, banned_ids) / jnp.where(temperature > 0, temperature, 1.0)
  logp = jax.nn.log_softmax(logits, axis=-1)
  logprobs = jnp.take_along_axis(logp, response_bn[..., None], -1)[..., 0] * mask_bn
  return logprobs, values * mask_bn, logits                               # V(state before y_t)


def pm_input(prompt_bp, response_bn, mask_bn, eos_id: int = EOS_ID):
  """The PM sees context + reply + EOC: [prompt | reply tokens before EOS | EOC | PAD...].

  Returns tokens (B, P+N+1) and the EOC index (B,). The EOS token itself is not part of
  the reply text (it is the policy's stop action), so it is replaced by EOC; a reply
  without EOS gets EOC after its last token.
  """
  b, p = prompt_bp.shape
  reply_real = (mask_bn > 0) & (response_bn != eos_id)                     # (B, N)
  reply_len = reply_real.sum(axis=1).astype(jnp.int32)                     # (B,)
  reply = jnp.where(reply_real, response_bn, PAD_ID)
  seq = jnp.concatenate([prompt_bp, reply, jnp.full((b, 1), PAD_ID, jnp.int32)], axis=1)
  eoc_index = p + reply_len
  seq = seq.at[jnp.arange(b), eoc_index].set(EOC_ID)
  return seq, eoc_index


def pm_score(pm_graphdef, pm_params, prompt_bp, response_bn, mask_bn, packed: dict | None = None):
  """r_PM(x, y): the PM's score of context + reply, read at the EOC token (`pm_input`) -> (B,).

  packed: None (padded rows), or the `pm_input` rows packed (keys tokens, positions,
  segment_ids (R, L), score_index (R, K): the EOC columns of each row, score_slot (B,): the
  flat r * K + k slot of sequence b's score; `hh_jax.train.ppo_packed`)."""
  if packed is None:
    tokens, eoc = pm_input(prompt_bp, response_bn, mask_bn)
    return models.apply(pm_graphdef, pm_params, tokens, score_index=eoc).scores
  scores = models.apply(pm_graphdef, pm_params, packed["tokens"], positions=packed["positions"],
                        segment_ids=packed["segment_ids"], score_index=packed["score_index"]).scores
  return scores.reshape(-1)[packed["score_slot"]]                         # (R, K) -> (B,)


def make_pm_score_fn(pm_graphdef):
  """A jitted score(pm_params, prompts (B,P), response (B,N), mask (B,N)) -> r_PM (B,)."""
  return jax.jit(functools.partial(pm_score, pm_graphdef))


def make_sampler(graphdef, *, max_new_tokens: int, temperature=1.0,
                 banned_ids: tuple[int, ...] = ()):
  """A jitted sample(params, prompts (B, P), key) -> Rollout (`generate` with these settings)."""
  return jax.jit(functools.partial(generate, graphdef, max_new_tokens=max_new_tokens,
                                   temperature=temperature, banned_ids=tuple(banned_ids)))


@functools.lru_cache(maxsize=16)
def cached_sampler(graphdef, max_new_tokens: int, temperature: float,
                   banned_ids: tuple[int, ...] = ()):
  """`make_sampler`, one per (architecture, length, temperature, banned ids) in a process: every
  policy of one architecture (same graphdef, other params) shares one compilation."""
  return make_sampler(graphdef, max_new_tokens=max_new_tokens, temperature=temperature,
                      banned_ids=banned_ids)


def sample_replies(model, prompt_tokens, key, *, max_new_tokens: int, temperature: float,
                   chunk: int = 256, banned_ids: tuple[int, ...] = ()) -> np.ndarray:
  """(N, max_new_tokens) reply ids of `model` (anything with .graphdef and .params) to
  left-padded prompts (N, P), in chunks of one shape: min(chunk, N) rows, the last chunk padded
  by repeating its last prompt; chunk i is sampled with fold_in(key, i)."""
  n = len(prompt_tokens)
  if n == 0:
    return np.zeros((0, max_new_tokens), np.int32)
  sample = cached_sampler(model.graphdef, max_new_tokens, float(temperature), tuple(banned_ids))
  chunk = min(chunk, n)
  out = []
  for i, start in enumerate(range(0, n, chunk)):
    x = np.asarray(prompt_tokens[start:start + chunk])
    keep = len(x)
    x = np.concatenate([x, np.repeat(x[-1:], chunk - keep, 0)]) if keep < chunk else x
    out.append(np.asarray(sample(model.params, jnp.asarray(x), jax.random.fold_in(key, i)).response)[:keep])
  return np.concatenate(out)
