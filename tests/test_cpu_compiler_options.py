"""The CPU compiler options of the train steps (optim.CPU_TRAIN_STEP_COMPILER_OPTIONS).

They change only how XLA:CPU emits the step (YNNPACK for dots only), not what it computes:
a PM step with and without them gives the same loss and parameters to float tolerance,
sharded or not. On other backends they are not used at all.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from hh_jax import models, sharding as shd
from hh_jax.bench.throughput import VOCAB, random_pm_batch
from hh_jax.config import MeshConfig, OptimConfig
from hh_jax.train import optim, pm

ON_CPU = jax.default_backend() == "cpu"
STEPS = 3


def _setup():
  cfg = models.ladder_config("1k", vocab_size=VOCAB, max_len=16)
  graphdef, params = models.init(cfg, jax.random.key(0))
  optimizer = optim.make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0), STEPS)
  return graphdef, params, optimizer


def _state(params, optimizer):
  return optim.init_train_state(jax.tree.map(np.array, params), optimizer, pm.PM_HPARAMS)


def _run(step, state, put=lambda b: b):
  key = jax.random.key(1)
  losses = []
  for i in range(STEPS):
    state, metrics = step(state, put(random_pm_batch(8, 16, seed=i)), key)
    losses.append(float(metrics["pm/loss"]))
  return np.array(losses), jax.device_get(state["params"])


def _assert_same(a, b):
  (loss_a, params_a), (loss_b, params_b) = a, b
  assert np.all(np.isfinite(loss_a))
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5),
               params_a, params_b)


def test_options_are_used_exactly_on_cpu():
  if ON_CPU and optim.cpu_compiler_options_supported():
    assert optim.train_step_compiler_options() == optim.CPU_TRAIN_STEP_COMPILER_OPTIONS
  else:
    assert optim.train_step_compiler_options() is None


@pytest.mark.skipif(not ON_CPU, reason="XLA:CPU option")
def test_pm_step_with_and_without_the_options_agree_sharded_or_not():
  graphdef, params, optimizer = _setup()
  step = pm.make_step(graphdef, optimizer)
  state = _state(params, optimizer)
  compiled = step.lower(state, random_pm_batch(8, 16), jax.random.key(1)).compile()
  with_options = _run(compiled, state)
  plain = optim.jit_train_step(step.__wrapped__, xla_defaults=True)
  _assert_same(with_options, _run(plain, _state(params, optimizer)))

  # A step with shardings (a 1-device mesh here; tests/test_pm_train.py runs 8) takes them too.
  mesh = shd.make_mesh(MeshConfig(1, 1), jax.devices()[:1])
  state = _state(params, optimizer)
  sh = shd.state_shardings(mesh, state, min_fsdp_size=64)
  sharded = pm.make_step(graphdef, optimizer, shardings=(sh, shd.batch_sharding(mesh)))
  _assert_same(with_options, _run(sharded, jax.device_put(state, sh),
                                  lambda b: shd.shard_batch(mesh, b)))

  if optim.cpu_compiler_options_supported():
    # The options reach the compiler: the step's YNNPACK fusions wrap dots, never reductions.
    hlo = compiled.as_text()
    called = re.findall(r"kind=kCustom, calls=%?([\w.\-]+)", hlo)
    bodies = [re.search(r"\n%?" + re.escape(c) + r" .*?\n}", hlo, re.S) for c in called]
    assert bodies and all(bodies)
    assert not any(" reduce(" in m.group(0) for m in bodies)


@pytest.mark.skipif(not ON_CPU, reason="XLA:CPU option")
def test_a_rejected_option_falls_back_to_xla_defaults(monkeypatch):
  """An XLA that does not know the option (older/newer jaxlib) gets plain steps and a warning."""
  monkeypatch.setattr(optim, "CPU_TRAIN_STEP_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "X"})
  optim.cpu_compiler_options_supported.cache_clear()
  try:
    with pytest.warns(RuntimeWarning, match="rejected"):
      assert optim.train_step_compiler_options() is None
    step = optim.jit_train_step(lambda s, b, k: (s + b, {"loss": s.sum()}), donate=False)
    state, metrics = step(np.ones(2, np.float32), np.ones(2, np.float32), jax.random.key(0))
    np.testing.assert_array_equal(state, [2.0, 2.0])
  finally:
    optim.cpu_compiler_options_supported.cache_clear()   # the real options, probed again
