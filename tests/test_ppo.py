"""PPO end to end on a toy world: rollouts, the first-minibatch ratio, learning, exact resume,
model compatibility checks; the sampler and the PM input by hand."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hh_jax import models
from hh_jax.config import DataConfig, OptimConfig, RunConfig
from hh_jax.config import override
from hh_jax.data.pipeline import LMData, PMData
from hh_jax.metrics import read_jsonl
from hh_jax.special_tokens import EOC_ID, EOS_ID, PAD_ID
from hh_jax.train import lifecycle, ppo, tasks
from hh_jax.train.ppo_run import PPOInputs
from hh_jax.train.rollout import generate, generate_uncached, pm_input, response_logprobs
from tests.conftest import ToyTokenizer, toy_pairs
from tests.run_files import assert_same_run_files


def train(cfg, run_dir, inputs, **kwargs):
  return tasks.run_config(cfg, run_dir, inputs=inputs, progress=False, **kwargs)


def _lm_tokens(rng, n, width=24):
  out = np.zeros((n, width), np.int32)
  for i in range(n):
    m = rng.integers(4, 12)
    out[i, :m] = rng.integers(3, 29, m)
    out[i, m] = EOS_ID
  return out


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
  """A base LM on random strings and a PM that prefers replies containing token 7."""
  root = tmp_path_factory.mktemp("ppo")
  rng = np.random.default_rng(0)
  tok = ToyTokenizer()
  lm_cfg = RunConfig(kind="lm", model_size="25k", batch_size=32, data=DataConfig(max_len=24),
                     optim=OptimConfig(learning_rate=3e-3))
  train(lm_cfg, str(root / "lm"), LMData(tok, _lm_tokens(rng, 1024), _lm_tokens(rng, 64)))
  pm_cfg = RunConfig(kind="pm", model_size="25k", batch_size=32, data=DataConfig(max_len=24),
                     optim=OptimConfig(learning_rate=3e-3))
  summary = train(pm_cfg, str(root / "pm"),
                  PMData(tok, toy_pairs(1024, 0, length=20), toy_pairs(128, 1, length=20), {}))
  assert summary["eval/accuracy"] > 0.9
  prompts = np.zeros((256, 6), np.int32)
  for i in range(256):
    m = rng.integers(2, 6)
    prompts[i, 6 - m:] = rng.integers(8, 29, m)
  cfg = ppo.PPOConfig(policy_init=str(root / "lm"), reward_pm=str(root / "pm"),
                      test_pms=(str(root / "pm"),), num_iterations=12, batch_size=32,
                      minibatch_size=16, max_new_tokens=10, prompt_len=6, checkpoint_every=5,
                      log_every=2, snapshot_every=4, num_eval_prompts=16,
                      optim=OptimConfig(learning_rate=3e-4, warmup_steps=0, b2=0.999))
  return root, cfg, PPOInputs(prompts, eval_prompt_tokens=prompts[:16])


@pytest.fixture(scope="module")
def finished_ppo(toy_world):
  root, cfg, data = toy_world
  run_dir = str(root / "ppo_full")
  return run_dir, train(cfg, run_dir, data)


def test_ppo_raises_the_pm_score_with_ratio_one_on_the_first_minibatch(finished_ppo):
  run_dir, summary = finished_ppo
  records = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]     # log_every=2: window means
  # The first minibatch of every iteration sees the policy that sampled the batch.
  for r in records:
    assert r["ppo/ratio_mean_first_minibatch"] == pytest.approx(1.0, abs=1e-5)
  samples = read_jsonl(os.path.join(run_dir, "samples.jsonl"))
  assert [r["step"] for r in samples] == list(range(1, 13)) and len(samples[0]["kl"]) == 32
  assert np.mean(samples[0]["kl"]) == pytest.approx(0.0, abs=1e-5)    # pi = pi0 at the start
  assert records[-1]["ppo/kl"] > 0.1
  assert summary["ppo/score_train"] > summary["ppo/score_train/initial"] + 1.0
  # The test PM is the train PM here, so their scores coincide.
  assert records[-1]["ppo/score_test/pm"] == pytest.approx(records[-1]["ppo/score_train"], abs=1e-4)
  for key in ("ppo/entropy", "ppo/clipfrac", "ppo/approxkl", "ppo/ratio_var", "ppo/eos_rate",
              "ppo/samples", "perf/tokens_per_s", "perf/steps_per_s"):
    assert key in records[-1], key
  # The logged KL is the mean over the window's 2 iterations of the per-sample KLs.
  assert np.mean(samples[-2]["kl"] + samples[-1]["kl"]) == pytest.approx(records[-1]["ppo/kl"], rel=1e-5)
  assert records[-1]["ppo/samples"] == pytest.approx(11.5 * 32)      # mean of 11 * 32 and 12 * 32
  # Snapshots at iterations 0, 4, 8 and at the end, of the 16 eval prompts.
  snaps = sorted(os.listdir(os.path.join(run_dir, "evals")))
  assert snaps == ["step_000000.npz", "step_000004.npz", "step_000008.npz", "step_000012.npz"]
  assert np.load(os.path.join(run_dir, "evals", snaps[0]))["response"].shape == (16, 10)


def test_killed_ppo_run_resumes_to_the_same_files(toy_world, finished_ppo):
  root, cfg, data = toy_world
  full_dir, _ = finished_ppo
  run_dir = str(root / "ppo_killed")
  assert train(cfg, run_dir, data, stop_after_steps=7) == {"stopped_at": 7}   # mid log window
  train(cfg, run_dir, data)
  assert_same_run_files(full_dir, run_dir)


def test_snapshots_store_each_eval_prompts_task_when_the_world_names_it(toy_world, finished_ppo, tmp_path):
  """With a task_fn every snapshot holds `task`, the eval prompts' task family names (what
  analysis/rl_gold.py splits helpful from red-team prompts by); without one it has none."""
  root, cfg, data = toy_world
  task_fn = lambda p: np.where(np.asarray(p)[:, -1] % 2 == 0, "harmful_request", "arithmetic")  # noqa: E731
  inputs = PPOInputs(data.prompt_tokens, eval_prompt_tokens=data.eval_prompt_tokens, task_fn=task_fn)
  run_dir = str(tmp_path / "tasks")
  train(override(cfg, {"num_iterations": 2, "snapshot_every": 2, "checkpoint_every": 0}), run_dir, inputs)
  snaps = sorted(os.listdir(os.path.join(run_dir, "evals")))
  assert snaps == ["step_000000.npz", "step_000002.npz"]
  for name in snaps:
    with np.load(os.path.join(run_dir, "evals", name), allow_pickle=False) as z:
      np.testing.assert_array_equal(z["task"], task_fn(data.eval_prompt_tokens))
  with np.load(os.path.join(finished_ppo[0], "evals", "step_000000.npz"), allow_pickle=False) as z:
    assert "task" not in z.files


def test_ppo_refuses_models_that_cannot_read_prompt_plus_reply(toy_world, tmp_path):
  """The PM must read prompt + reply + EOC (6 + 10 + 1 = 17 tokens); checked before any file."""
  root, cfg, data = toy_world
  long_prompts = PPOInputs(np.zeros((64, 20), np.int32))
  with pytest.raises(lifecycle.RunError, match="max_len 24 < prompt_len 20"):
    train(override(cfg, {"prompt_len": 20}), str(tmp_path / "long"), long_prompts)
  assert not os.path.exists(tmp_path / "long" / "config.json")


@pytest.fixture(scope="module")
def tiny_policy():
  cfg = models.ModelConfig(vocab_size=29, d_model=24, n_layers=2, n_heads=3, max_len=31)
  graphdef, params = models.init(cfg, jax.random.key(0))
  prompt = jnp.array([[PAD_ID, PAD_ID, 5, 6, 7], [3, 4, 5, 6, 7], [PAD_ID, 9, 9, 9, 9]], jnp.int32)
  return graphdef, params, prompt


def test_cached_and_uncached_sampling_agree_and_logprobs_match_a_full_pass(tiny_policy):
  graphdef, params, prompt = tiny_policy
  key = jax.random.key(3)
  cached = jax.jit(lambda p: generate(graphdef, p, prompt, key, max_new_tokens=9))(params)
  uncached = jax.jit(lambda p: generate_uncached(graphdef, p, prompt, key, max_new_tokens=9))(params)
  np.testing.assert_array_equal(np.asarray(cached.response), np.asarray(uncached.response))
  np.testing.assert_allclose(np.asarray(cached.logprobs), np.asarray(uncached.logprobs), atol=1e-5)
  logp, _, _ = response_logprobs(graphdef, params, prompt, cached.response, cached.mask)
  np.testing.assert_allclose(np.asarray(logp), np.asarray(cached.logprobs), atol=1e-5)


def test_eos_handling_and_pm_input_by_hand():
  # Row 0 stops at its 3rd token (EOS); row 1 never emits EOS.
  prompt = jnp.array([[PAD_ID, 5], [4, 5]], jnp.int32)
  response = jnp.array([[9, 8, EOS_ID, PAD_ID], [9, 8, 7, 6]], jnp.int32)
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]], jnp.float32)
  tokens, eoc = pm_input(prompt, response, mask)
  np.testing.assert_array_equal(np.asarray(tokens), [[PAD_ID, 5, 9, 8, EOC_ID, PAD_ID, PAD_ID],
                                                     [4, 5, 9, 8, 7, 6, EOC_ID]])
  np.testing.assert_array_equal(np.asarray(eoc), [4, 6])


def test_generation_stops_and_pads_after_eos():
  """A policy whose logits always favour EOS stops at the first token and pads the rest."""
  cfg = models.ModelConfig(vocab_size=11, d_model=8, n_layers=1, n_heads=2, max_len=16)
  graphdef, params = models.init(cfg, jax.random.key(0))
  emb = params["embed"]["embedding"]
  params = {**params, "embed": {"embedding": emb.at[EOS_ID].set(100.0 * jnp.ones(8))},
            "ln_f": {"scale": jnp.ones(8), "bias": jnp.ones(8)}}
  out = generate(graphdef, params, jnp.array([[3, 4]], jnp.int32), jax.random.key(0),
                 max_new_tokens=5, temperature=1.0)
  np.testing.assert_array_equal(np.asarray(out.response), [[EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
  np.testing.assert_array_equal(np.asarray(out.mask), [[1, 0, 0, 0, 0]])
  assert bool(out.eos[0])


def test_reward_normalization_by_hand():
  g, c = ppo.reward_normalization(jnp.array([1.0, 2.0, 3.0, 6.0]))
  # mean 3, population std sqrt((4 + 1 + 0 + 9) / 4) = sqrt(3.5)
  assert g == pytest.approx(1 / np.sqrt(3.5)) and c == pytest.approx(-3 / np.sqrt(3.5))


def test_reward_normalization_makes_the_initial_policys_rewards_standard(toy_world, tmp_path):
  """With reward_norm the train-PM reward of the initial policy's samples is ~N(0, 1); the
  logged score stays the raw PM score (what the sqrt(KL) law is fitted on)."""
  root, cfg, data = toy_world
  run_dir = str(tmp_path / "norm")
  train(override(cfg, {"reward_norm": True, "reward_norm_samples": 256, "num_iterations": 1,
                       "snapshot_every": 0}), run_dir, data)
  record = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))[0]
  raw = np.array(read_jsonl(os.path.join(run_dir, "samples.jsonl"))[0]["score_train"])  # 32 fresh samples
  normalized = record["ppo/reward_gain"] * raw + record["ppo/reward_bias"]
  assert abs(normalized.mean()) < 0.5 and 0.6 < normalized.std() < 1.6
  assert record["ppo/reward_gain"] != 1.0
  assert record["ppo/score_train"] == pytest.approx(raw.mean(), rel=1e-5)


def test_banned_tokens_are_never_sampled_and_logprobs_are_the_renormalised_policy(tiny_policy):
  """With tokens banned, every sampled token is allowed, and log pi'(y) of the sampled reply is
  log pi(y) - log sum_{allowed} pi, computed here by hand from the unbanned full-pass logits."""
  graphdef, params, prompt = tiny_policy
  banned = (4, 5, 6, 7, 8, 9, 10, 11)   # a large share of the mass, so an unbanned draw hits them
  free = generate(graphdef, params, prompt, jax.random.key(5), max_new_tokens=12)
  assert np.isin(np.asarray(free.response), banned).any()          # the test can fail
  out = generate(graphdef, params, prompt, jax.random.key(5), max_new_tokens=12, banned_ids=banned)
  assert not np.isin(np.asarray(out.response), banned).any()
  logp_banned, _, _ = response_logprobs(graphdef, params, prompt, out.response, out.mask,
                                        banned_ids=banned)
  np.testing.assert_allclose(np.asarray(logp_banned), np.asarray(out.logprobs), atol=1e-5)
  _, _, logits = response_logprobs(graphdef, params, prompt, out.response, out.mask)
  logits = np.asarray(logits, np.float64)                                           # (B, N, V)
  allowed = np.ones(logits.shape[-1], bool)
  allowed[list(banned)] = False
  full = logits - np.log(np.exp(logits).sum(-1, keepdims=True))                     # log pi
  renorm = full - np.log(np.exp(full[..., allowed]).sum(-1, keepdims=True))          # log pi'
  by_hand = np.take_along_axis(renorm, np.asarray(out.response)[..., None], -1)[..., 0]
  np.testing.assert_allclose(np.asarray(logp_banned), by_hand * np.asarray(out.mask), atol=1e-4)
  greedy = generate(graphdef, params, prompt, jax.random.key(0), max_new_tokens=1,
                    temperature=0.0, banned_ids=banned)
  first_logits = np.asarray(response_logprobs(graphdef, params, prompt, greedy.response,
                                               greedy.mask)[2])[:, 0]               # unbanned (B, V)
  first = np.where(allowed, first_logits, -np.inf)
  np.testing.assert_array_equal(np.asarray(greedy.response)[:, 0], first.argmax(-1))


def test_a_world_policy_bans_the_turn_markers():
  from hh_jax.data import pipeline
  from hh_jax.data.world import vocab
  assert pipeline.turn_marker_ids("hh_synth/prompts") == (vocab.HUMAN_ID, vocab.ASSISTANT_ID)
  assert pipeline.turn_marker_ids("hh_rlhf/all") == ()   # bytes: markers are several tokens
  cfg = ppo.PPOConfig(prompt_dataset="hh_synth/prompts")
  from hh_jax.train.ppo_run import resolve_banned_tokens
  assert resolve_banned_tokens(cfg).banned_token_ids == (vocab.HUMAN_ID, vocab.ASSISTANT_ID)
  assert resolve_banned_tokens(ppo.PPOConfig(banned_token_ids=())).banned_token_ids == ()


def test_held_out_prompts_come_from_eval_prompt_dataset_of_the_same_world(tmp_path):
  """Training prompts from a 90/10 mix, snapshot prompts from the 50/50 dataset's test split
  (equal to loading that split directly); an eval dataset of another world is refused, because
  the training world's gold reward would judge it."""
  from hh_jax.data import pipeline
  from hh_jax.train.ppo_run import load_inputs
  cfg = ppo.PPOConfig(prompt_dataset="hh_synth/prompts-400-s0-t200-h90",
                      eval_prompt_dataset="hh_synth/prompts-400-s0-t200", prompt_len=40,
                      num_eval_prompts=200, data_dir=str(tmp_path))
  inputs = load_inputs(cfg)
  direct = pipeline.load_prompts("hh_synth/prompts-400-s0-t200", "test", 40, "auto",
                                 str(tmp_path), limit=200)
  np.testing.assert_array_equal(inputs.eval_prompt_tokens, direct)
  red_team = lambda p: np.mean(inputs.task_fn(p) == "harmful_request")  # noqa: E731
  assert red_team(inputs.prompt_tokens) < 0.2 and 0.35 < red_team(inputs.eval_prompt_tokens) < 0.65
  with pytest.raises(lifecycle.RunError, match="not from the world"):
    load_inputs(override(cfg, {"eval_prompt_dataset": "hh_synth/prompts-400-s0-t200-w1"}))
