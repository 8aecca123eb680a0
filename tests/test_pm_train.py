"""PM and LM runs through the lifecycle: learning a known rule, exact resume of every file,
NaN handling with a continuable checkpoint, sharding, config errors, init_from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jax

from hh_jax import models
from hh_jax.checkpoint import Checkpointer
from hh_jax.config import DataConfig, OptimConfig, RunConfig, override, parse_overrides
from hh_jax.data.pipeline import LMData, PMData
from hh_jax.metrics import NonFiniteLossError, read_jsonl
from hh_jax.special_tokens import EOS_ID
from hh_jax.train import lifecycle, pm, tasks
from hh_jax.train.supervised import init_from_run
from tests.conftest import ToyTokenizer, toy_pairs
from tests.run_files import assert_same_run_files

# log and checkpoint intervals that are not multiples of each other (resume must be exact)
CFG = RunConfig(kind="pm", model_size="6k", batch_size=16, log_every=5, checkpoint_every=7,
                data=DataConfig(max_len=16), optim=OptimConfig(learning_rate=3e-3, warmup_steps=5))


def train(cfg, run_dir, data, **kwargs):
  return tasks.run_config(cfg, run_dir, inputs=data, progress=False, **kwargs)


@pytest.fixture(scope="module")
def toy_data():
  return PMData(tokenizer=ToyTokenizer(), train=toy_pairs(640, seed=0, harmless_every=3),
                eval=toy_pairs(256, seed=1, harmless_every=3),
                eval_extras={"p_chosen": np.full(256, 0.9)})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, toy_data):
  run_dir = str(tmp_path_factory.mktemp("runs") / "full")
  return run_dir, train(CFG, run_dir, toy_data)


def test_pm_learns_a_known_rule_and_writes_the_run_directory(finished_run):
  run_dir, summary = finished_run
  # The rule "chosen contains token 7" is learnable: far above chance.
  assert summary["eval/accuracy"] > 0.85, summary
  assert summary["eval/bayes_ceiling"] == pytest.approx(0.9)
  # A bag of words finds the marker token too; reply length and distinct tokens carry no signal.
  assert summary["eval/bow_baseline_accuracy"] > 0.85
  assert abs(summary["eval/shorter_baseline_accuracy"] - 0.5) < 0.1
  assert abs(summary["eval/distinct_tokens_baseline_accuracy"] - 0.5) < 0.15
  for name in ("config.json", "model.json", "metrics.jsonl", "summary.json", "eval_scores.npz"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  records = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30, 35, 40]
  assert {"pm/loss", "pm/accuracy", "pm/learning_rate", "perf/tokens_per_s"} <= set(records[0])
  # The per-pair scores reproduce the reported accuracy (ties half).
  scores = np.load(os.path.join(run_dir, "eval_scores.npz"))
  margin = scores["chosen"] - scores["rejected"]
  assert summary["eval/accuracy"] == pytest.approx(np.mean((margin > 0) + 0.5 * (margin == 0)))


def test_finished_run_is_skipped(finished_run, toy_data):
  run_dir, summary = finished_run
  again = train(CFG, run_dir, toy_data)
  assert again == json.loads(json.dumps(summary))


@pytest.mark.parametrize("stop", [3, 13, 14])          # before the first log, mid-window, at a ckpt
def test_killed_pm_run_resumes_to_the_same_files(tmp_path, toy_data, finished_run, stop):
  full_dir, _ = finished_run
  run_dir = str(tmp_path / "killed")
  assert train(CFG, run_dir, toy_data, stop_after_steps=stop) == {"stopped_at": stop}
  train(CFG, run_dir, toy_data)
  assert_same_run_files(full_dir, run_dir)       # metrics.jsonl too: the log window is resumed


def _lm_data(seed: int, n: int) -> LMData:
  rng = np.random.default_rng(seed)
  tokens = np.zeros((n, 12), np.int32)
  for i in range(n):
    m = rng.integers(3, 10)
    tokens[i, :m] = rng.integers(3, 29, m)
    tokens[i, m] = EOS_ID
  return LMData(ToyTokenizer(), tokens[: n - 32], tokens[n - 32:])


def test_killed_lm_run_resumes_to_the_same_files(tmp_path):
  cfg = RunConfig(kind="lm", model_size="1k", batch_size=16, log_every=3, checkpoint_every=4,
                  data=DataConfig(max_len=12), optim=OptimConfig(learning_rate=3e-3))
  data = _lm_data(0, 32 + 16 * 11)
  train(cfg, str(tmp_path / "full"), data)
  assert train(cfg, str(tmp_path / "killed"), data, stop_after_steps=5) == {"stopped_at": 5}
  train(cfg, str(tmp_path / "killed"), data)
  assert_same_run_files(str(tmp_path / "full"), str(tmp_path / "killed"))


def test_rerun_with_another_config_is_refused(tmp_path, toy_data):
  run_dir = str(tmp_path / "r")
  train(CFG, run_dir, toy_data, stop_after_steps=2)
  with pytest.raises(lifecycle.RunError, match="seed"):
    train(override(CFG, {"seed": 1}), run_dir, toy_data)
  with pytest.raises(lifecycle.RunError, match="allow-resume-changes"):   # safe, but not allowed
    train(override(CFG, {"optim.learning_rate": 1e-3}), run_dir, toy_data)


def test_a_config_that_fails_to_build_writes_nothing(tmp_path, toy_data):
  """No config.json is left behind, so the corrected command can use the same directory."""
  run_dir = str(tmp_path / "bad")
  too_big = override(CFG, {"batch_size": 1000})               # 640 pairs make no batch of 1000
  with pytest.raises(ValueError, match="cannot fill one batch"):
    train(too_big, run_dir, toy_data)
  assert not os.path.exists(os.path.join(run_dir, "config.json"))
  train(CFG, run_dir, toy_data, stop_after_steps=1)


def _loss_of(params, data):
  graphdef, _ = models.init(models.ladder_config(CFG.model_size, vocab_size=29, max_len=16),
                            jax.random.key(0))
  batch = pm.device_batch(next(iter(pm.PairIterator(data.train, 16, seed=0))), ("helpful", "harmless"))
  loss, _ = pm.pm_loss(graphdef, params, batch, 1.0)
  return float(loss)


def test_nan_deletes_the_checkpoint_whose_params_diverged_and_the_run_can_continue(tmp_path, toy_data):
  # Warm-up from 0: step 1 takes no step (finite params); step 2's update makes them explode,
  # so the loss of step 3 (computed on the params saved at step 2) is not finite.
  cfg = override(CFG, {"optim.learning_rate": 1e30, "optim.warmup_steps": 4,
                       "optim.grad_clip_norm": 0.0, "checkpoint_every": 1})
  run_dir = str(tmp_path / "nan")
  with pytest.raises(NonFiniteLossError, match=r"pm/loss = (nan|inf) at step \d+"):
    train(cfg, run_dir, toy_data)
  assert not os.path.exists(os.path.join(run_dir, "summary.json"))
  ckpt = Checkpointer(run_dir)
  latest = ckpt.latest_step()
  assert latest is not None, "the last good checkpoint must survive"
  ckpt.close()
  # Every kept checkpoint holds parameters whose own loss is finite.
  state = pm.build_task(cfg, run_dir, inputs=toy_data).state
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  ckpt = Checkpointer(run_dir)
  restored, _ = ckpt.restore(abstract)
  ckpt.close()
  assert np.isfinite(_loss_of(jax.device_get(restored["params"]), toy_data))
  # Continuing with a lower learning rate is allowed, and recorded.
  fixed = override(cfg, {"optim.learning_rate": 3e-3})
  summary = train(fixed, run_dir, toy_data, allow_changes=True)
  assert np.isfinite(summary["train/final_pm_loss"])
  resumes = read_jsonl(os.path.join(run_dir, "resumes.jsonl"))
  assert resumes[0]["changed"] == ["optim.learning_rate"] and resumes[0]["step"] == latest
  with open(os.path.join(run_dir, "config.json")) as f:
    assert json.load(f)["optim"]["learning_rate"] == 3e-3


def test_config_overrides_coerce_and_name_typos():
  cfg = override(CFG, parse_overrides(["data.max_len=32", "optim.learning_rate=1e-4",
                                        "data.num_train_pairs=None"]))
  assert cfg.data.max_len == 32 and cfg.optim.learning_rate == 1e-4
  with pytest.raises(KeyError, match="optim.learnig_rate"):
    override(CFG, {"optim.learnig_rate": 1.0})
  with pytest.raises(ValueError, match="data.max_len"):
    override(CFG, {"data.max_len": "long"})


SHARDED_SCRIPT = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax, numpy as np
from hh_jax import models, sharding as shd
from hh_jax.config import MeshConfig, OptimConfig
from hh_jax.train import pm
from hh_jax.train.optim import init_train_state, make_optimizer
from tests.conftest import toy_pairs
from hh_jax.data.batching import PairIterator

assert len(jax.devices()) == 8
cfg = models.ModelConfig(vocab_size=29, d_model=32, n_layers=2, n_heads=4, max_len=16)
graphdef, params = models.init(cfg, jax.random.key(0))
opt = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=0), 10)
batches = [pm.device_batch(b, ("helpful", "harmless")) for b in PairIterator(toy_pairs(64, 0, harmless_every=2), 16, seed=0)]
key = jax.random.key(1)

def run(mesh_cfg, devices):
  mesh = shd.make_mesh(mesh_cfg, devices)
  state = init_train_state(jax.tree.map(np.array, params), opt, pm.PMHparams(harmless_weight=2.0))
  sh = shd.state_shardings(mesh, state, min_fsdp_size=64)
  state = jax.device_put(state, sh)
  step = pm.make_step(graphdef, opt, shardings=(sh, shd.batch_sharding(mesh)))
  out = []
  for b in batches:
    state, m = step(state, shd.shard_batch(mesh, b), key)
    out.append(float(m["pm/loss"]))
  return np.array(out), jax.device_get(state["params"])

one_loss, one_params = run(MeshConfig(1, 1), jax.devices()[:1])
for mesh_cfg in (MeshConfig(-1, 1), MeshConfig(2, 4)):
  loss, p = run(mesh_cfg, jax.devices())
  np.testing.assert_allclose(loss, one_loss, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p, one_params)
print("SHARDED_OK", one_loss[0], one_loss[-1])
"""


def test_sharded_step_on_8_fake_devices_equals_one_device():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], cwd=root, capture_output=True,
                        text=True, timeout=300, env={**os.environ, "PYTHONPATH": root})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "SHARDED_OK" in proc.stdout


def test_init_from_keeps_the_score_head_of_a_pm_and_drops_that_of_an_lm(tmp_path, finished_run):
  """LM -> PM starts a fresh score head; PMP (a PM run) -> finetuning keeps every parameter."""
  run_dir, _ = finished_run
  trained = lifecycle.load_model(run_dir).params
  model_cfg = models.ladder_config(CFG.model_size, vocab_size=ToyTokenizer().vocab_size,
                                   max_len=CFG.data.max_len)
  _, fresh = models.init(model_cfg, jax.random.key(123))
  equal = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))  # noqa: E731

  from_pm = init_from_run(run_dir, fresh)
  assert equal(from_pm, trained)

  lm_dir = str(tmp_path / "as_lm")              # the same weights, labelled as an LM run
  shutil.copytree(run_dir, lm_dir)
  with open(os.path.join(lm_dir, "config.json")) as f:
    cfg = json.load(f)
  with open(os.path.join(lm_dir, "config.json"), "w") as f:
    json.dump({**cfg, "kind": "lm"}, f)
  from_lm = init_from_run(lm_dir, fresh)
  assert equal(from_lm["score_head"], fresh["score_head"])
  assert not equal(from_lm["score_head"], trained["score_head"])
  assert equal({k: v for k, v in from_lm.items() if k != "score_head"},
               {k: v for k, v in trained.items() if k != "score_head"})
