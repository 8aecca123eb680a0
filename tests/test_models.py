"""The transformer family: parameter counts, causality, padding, KV cache, compile counts.

Prime-sized dims (vocab 67, T 11, B 3) so that transposed axes cannot pass by accident.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh_jax import models as M
from hh_jax.special_tokens import PAD_ID

V, T, B = 67, 11, 3


@pytest.fixture(scope="module")
def small():
  cfg = M.ModelConfig(vocab_size=V, d_model=24, n_layers=2, n_heads=3, max_len=23)
  graphdef, params = M.init(cfg, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (B, T), 3, V)
  return cfg, graphdef, params, tokens


def _leaf_count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", list(M.LAPTOP_LADDER))
def test_analytic_param_count_matches_pytree(name):
  cfg = M.ladder_config(name, vocab_size=V, max_len=29)
  # eval_shape: counts the real pytree without allocating it.
  _, params = jax.eval_shape(lambda: M.init(cfg, jax.random.key(0)))
  total = _leaf_count(params)
  embedding = _leaf_count(params["embed"]) + _leaf_count(params["pos_embed"])
  assert M.count_params(cfg, non_embedding=False) == total
  assert M.count_params(cfg, non_embedding=True) == total - embedding


def test_untied_head_counts_unembedding():
  cfg = M.ModelConfig(vocab_size=V, d_model=16, n_layers=1, n_heads=2, max_len=13,
                      tie_embeddings=False)
  _, params = jax.eval_shape(lambda: M.init(cfg, jax.random.key(0)))
  assert M.count_params(cfg, non_embedding=False) == _leaf_count(params)


def test_ladders_span_and_step():
  laptop = [M.count_params(M.ladder_config(n, vocab_size=V, max_len=64)) for n in M.LAPTOP_LADDER]
  assert laptop == sorted(laptop)
  assert laptop[0] < 2e3 and laptop[-1] > 1e6  # >= 3 orders of magnitude
  paper = {n: M.count_params(M.ladder_config(n, vocab_size=65536, max_len=8192))
           for n in M.PAPER_LADDER}
  nominal = {"13M": 13e6, "42M": 42e6, "197M": 197e6, "810M": 810e6, "2.7B": 2.7e9,
             "13B": 13e9, "52B": 52e9}
  for name, n in paper.items():
    # N ~ 12 L d^2 (hh_jax.models.config docstring); within 10% of the name (the 2.7B shape is 2.5B).
    assert abs(math.log(n / nominal[name])) < 0.1, (name, n)
  ratios = np.diff(np.log(list(paper.values())))
  assert np.all((ratios > math.log(2.5)) & (ratios < math.log(6)))


def _numpy_reference_logits(cfg, params, tokens):
  """An independent float64 NumPy forward pass of the documented architecture
  (no padding): learned positions, pre-LN blocks, causal softmax attention, tied head."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)

  def ln(x, q):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * q["scale"] + q["bias"]

  def lin(x, q):
    return x @ q["kernel"] + q["bias"]

  def gelu(x):  # tanh approximation, as jax.nn.gelu(approximate=True)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

  toks = np.asarray(tokens)
  b, t = toks.shape
  h = p["embed"]["embedding"][toks] + p["pos_embed"]["embedding"][np.arange(t)][None]
  n, hd = cfg.n_heads, cfg.head_dim
  causal = np.tril(np.ones((t, t), bool))
  for i in range(cfg.n_layers):
    q_ = p["blocks"][i]
    x = ln(h, q_["ln_attn"])
    qkv = lin(x, q_["attn"]["qkv"])
    qh, kh, vh = (z.reshape(b, t, n, hd) for z in np.split(qkv, 3, axis=-1))
    s = np.einsum("bqnh,bknh->bnqk", qh, kh) / np.sqrt(hd)
    s = np.where(causal, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    y = np.einsum("bnqk,bknh->bqnh", w, vh).reshape(b, t, n * hd)
    h = h + lin(y, q_["attn"]["out"])
    h = h + lin(gelu(lin(ln(h, q_["ln_mlp"]), q_["mlp"]["up"])), q_["mlp"]["down"])
  out = ln(h, p["ln_f"])
  return out @ p["embed"]["embedding"].T


def test_forward_matches_independent_numpy_implementation(small):
  cfg, graphdef, params, tokens = small
  logits = M.apply(graphdef, params, tokens).logits
  ref = _numpy_reference_logits(cfg, params, tokens)
  np.testing.assert_allclose(np.asarray(logits), ref, atol=2e-5, rtol=1e-4)


def test_changing_a_future_token_leaves_earlier_logits_unchanged(small):
  _, graphdef, params, tokens = small
  j = 6
  changed = tokens.at[:, j].set((tokens[:, j] + 5) % (V - 3) + 3)
  a = M.apply(graphdef, params, tokens).logits
  b = M.apply(graphdef, params, changed).logits
  np.testing.assert_array_equal(np.asarray(a[:, :j]), np.asarray(b[:, :j]))
  assert not np.allclose(np.asarray(a[:, j:]), np.asarray(b[:, j:]))


def test_score_at_end_of_context_ignores_extra_padding(small):
  _, graphdef, params, tokens = small
  lengths = jnp.array([T, 7, 4])
  rows = jnp.where(jnp.arange(T)[None] < lengths[:, None], tokens, PAD_ID)   # right padded
  eoc = lengths - 1
  base = M.apply(graphdef, params, rows, score_index=eoc).scores
  more_right = jnp.pad(rows, ((0, 0), (0, 5)), constant_values=PAD_ID)
  right = M.apply(graphdef, params, more_right, score_index=eoc).scores
  # Left padding shifts slots but not positions (positions count real tokens only).
  more_left = jnp.pad(rows, ((0, 0), (4, 0)), constant_values=PAD_ID)
  left = M.apply(graphdef, params, more_left, score_index=eoc + 4).scores
  np.testing.assert_allclose(np.asarray(right), np.asarray(base), atol=1e-6)
  np.testing.assert_allclose(np.asarray(left), np.asarray(base), atol=1e-5)
  # Scores differ between rows, so the check is not vacuous.
  assert len(set(np.round(np.asarray(base), 4))) == B


def _cached_logits(cfg, graphdef, params, prompt, continuation, cache_empty=False):
  """Prefill `prompt`, then feed `continuation` one token at a time inside lax.scan."""

  @jax.jit
  def run(params, prompt, continuation):
    cache = M.init_cache(cfg, prompt.shape[0], prompt.shape[1] + continuation.shape[1])
    out, cache = M.prefill(graphdef, params, prompt, cache, cache_empty=cache_empty)

    def step(cache, tok):
      logits, _, cache = M.decode_step(graphdef, params, tok, cache)
      return cache, logits

    _, step_logits = jax.lax.scan(step, cache, continuation.T)          # (C, B, V)
    return out.logits, jnp.swapaxes(step_logits, 0, 1)

  return run(params, prompt, continuation)


@pytest.mark.parametrize("cache_empty", [False, True])
def test_cached_decoding_reproduces_full_forward(small, cache_empty):
  cfg, graphdef, params, tokens = small
  p = 4
  prefill_logits, step_logits = _cached_logits(cfg, graphdef, params, tokens[:, :p], tokens[:, p:],
                                               cache_empty)
  full = M.apply(graphdef, params, tokens).logits
  cached = jnp.concatenate([prefill_logits, step_logits], axis=1)       # (B, T, V)
  np.testing.assert_allclose(np.asarray(cached), np.asarray(full), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cache_empty", [False, True])
def test_cached_decoding_with_left_padded_prompts(small, cache_empty):
  cfg, graphdef, params, tokens = small
  prompt_lens = np.array([5, 2, 3])
  p = 5
  prompt = np.full((B, p), PAD_ID, np.int32)
  for i, n in enumerate(prompt_lens):
    prompt[i, p - n:] = np.asarray(tokens[i, :n])
  cont = np.stack([np.asarray(tokens[i, n:n + 4]) for i, n in enumerate(prompt_lens)])
  _, step_logits = _cached_logits(cfg, graphdef, params, jnp.asarray(prompt), jnp.asarray(cont),
                                  cache_empty)
  for i, n in enumerate(prompt_lens):   # each row alone, unpadded, through the full pass
    row = jnp.asarray(np.asarray(tokens[i, :n + 4])[None])
    full = M.apply(graphdef, params, row).logits[0, n:n + 4]
    np.testing.assert_allclose(np.asarray(step_logits[i]), np.asarray(full), atol=1e-5, rtol=0)


def test_empty_cache_prefill_matches_general_prefill(small):
  """cache_empty=True (attention over the prompt only) writes the same cache and logits."""
  cfg, graphdef, params, tokens = small
  prompt = jnp.where(jnp.arange(6)[None] >= jnp.array([[0], [3], [1]]), tokens[:, :6], PAD_ID)
  cache = M.init_cache(cfg, B, 9)
  assert len(cache.k) == len(cache.v) == cfg.n_layers                  # one buffer per layer
  assert cache.k[0].shape == (B, cfg.n_heads, 9, cfg.head_dim)
  general, cache_a = jax.jit(lambda p, x: M.prefill(graphdef, p, x, cache))(params, prompt)
  fresh, cache_b = jax.jit(lambda p, x: M.prefill(graphdef, p, x, cache, cache_empty=True))(
      params, prompt)
  np.testing.assert_allclose(np.asarray(fresh.logits), np.asarray(general.logits), atol=1e-6)
  for a, b in zip(jax.tree.leaves(cache_a), jax.tree.leaves(cache_b)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_jitted_forward_compiles_once_per_shape(small):
  _, graphdef, params, _ = small
  traces = []

  @jax.jit
  def forward(params, tokens):
    traces.append(tokens.shape)   # runs only while tracing
    return M.apply(graphdef, params, tokens).logits

  for seed in range(4):
    forward(params, jax.random.randint(jax.random.key(seed), (B, T), 3, V)).block_until_ready()
  assert len(traces) == 1
  forward(params, jnp.zeros((B, T + 2), jnp.int32))
  assert len(traces) == 2


def test_bfloat16_compute_keeps_float32_params():
  cfg = M.ModelConfig(vocab_size=V, d_model=16, n_layers=1, n_heads=2, max_len=13,
                      dtype="bfloat16")
  graphdef, params = M.init(cfg, jax.random.key(0))
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  out = M.apply(graphdef, params, jnp.ones((2, 5), jnp.int32) * 7, score_index=jnp.array([4, 2]))
  assert out.logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(out.logits)))


def test_dropout_is_off_by_default_and_random_when_on(small):
  cfg, graphdef, params, tokens = small
  a = M.apply(graphdef, params, tokens, dropout_key=jax.random.key(3)).logits
  b = M.apply(graphdef, params, tokens).logits
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))   # rate 0.0: no-op
  cfg_d = cfg.replace(dropout=0.5)
  graphdef_d, _ = M.init(cfg_d, jax.random.key(0))
  c = M.apply(graphdef_d, params, tokens, dropout_key=jax.random.key(3)).logits
  assert not np.allclose(np.asarray(c), np.asarray(b))


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match="n_heads"):
    M.ModelConfig(d_model=10, n_heads=3)
  with pytest.raises(KeyError, match="unknown model size"):
    M.ladder_config("7Q", vocab_size=5, max_len=5)


def test_causal_blocked_attention_equals_the_numpy_reference_and_the_dense_gradients(monkeypatch):
  """T = 32 in causal blocks of 8 (query block i reads keys [0, 8 (i + 1))): the logits equal
  the independent NumPy forward pass, and the gradients the dense path's."""
  from hh_jax.models import config as model_config
  cfg = M.ModelConfig(vocab_size=V, d_model=24, n_layers=2, n_heads=3, max_len=32)
  graphdef, params = M.init(cfg, jax.random.key(3))
  tokens = jax.random.randint(jax.random.key(4), (2, 32), 3, V)
  pad = jnp.ones((2, 32), bool).at[1, 27:].set(False)             # a padded tail too

  def run(block):
    monkeypatch.setattr(model_config, "CAUSAL_BLOCK", block)
    jax.clear_caches()
    loss = lambda p: jnp.sum(jnp.sin(M.apply(graphdef, p, tokens, pad_mask=pad).logits) * pad[..., None])  # noqa: E731
    return M.apply(graphdef, params, tokens).logits, jax.grad(loss)(params)

  assert model_config.computed_keys(32) == 32.0
  logits_blocked, grads_blocked = run(8)
  assert model_config.computed_keys(32) == 8 * 5 / 2          # m = 4 blocks: (8 + 16 + 24 + 32) / 4
  np.testing.assert_allclose(np.asarray(logits_blocked), _numpy_reference_logits(cfg, params, tokens),
                             atol=2e-5, rtol=1e-4)
  _, grads_dense = run(None)
  jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=1e-4, atol=1e-6 + 1e-4 * np.abs(d).max()),
               grads_blocked, grads_dense)
