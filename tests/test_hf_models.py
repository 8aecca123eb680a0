"""Hugging Face checkpoints in and out, checked against transformers' PyTorch models.

Every checkpoint is a tiny random one made here with transformers (tests/hf_checkpoints.py):
GPT-2 (tied and untied), GPT-NeoX (rotary fraction 1/4 and 1/2, parallel and sequential
residual), Llama (GQA 6 query / 2 KV heads with llama3 RoPE scaling; linear scaling with
biases) and Qwen2 (GQA, q/k/v biases, YaRN). The reference is transformers' own forward pass
and greedy `generate`, never hh-jax's output.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import hf_checkpoints as H

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hh_jax import models  # noqa: E402
from hh_jax.special_tokens import EOC_ID, NUM_SPECIAL  # noqa: E402
from hh_jax.train.rollout import generate  # noqa: E402

NAMES = list(H.hf_configs())
TOL = 1e-4


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """name -> (directory, transformers model)."""
  torch.set_num_threads(1)
  root = tmp_path_factory.mktemp("hf")
  return {name: (str(root / name), H.build(name, str(root / name))) for name in NAMES}


def _max_diff(a, b, mask):
  return float(np.abs(np.asarray(a) - np.asarray(b))[mask].max())


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers_with_left_and_right_padding(checkpoints, name):
  path, ref = checkpoints[name]
  graphdef, params = models.from_pretrained(path)
  tokens, mask = H.padded_batch()
  out = models.apply(graphdef, params, tokens, pad_mask=mask).logits
  assert out.shape == (*tokens.shape, H.VOCAB)
  assert _max_diff(out, H.torch_logits(ref, tokens, mask), mask) < TOL


@pytest.mark.parametrize("name", ["gpt2", "neox", "llama3", "qwen2"])
def test_greedy_generation_with_kv_cache_matches_transformers(checkpoints, name):
  path, ref = checkpoints[name]
  graphdef, params = models.from_pretrained(path)
  prompt = np.random.default_rng(1).integers(NUM_SPECIAL, H.VOCAB, (2, 7)).astype(np.int32)
  prompt[1, :3] = 0                                      # one full row, one left-padded row
  mask = prompt != 0
  ours = generate(graphdef, params, jnp.asarray(prompt), jax.random.key(0), max_new_tokens=32,
                  temperature=0.0, eos_id=-1).response
  with torch.no_grad():
    theirs = ref.generate(input_ids=torch.tensor(prompt, dtype=torch.long),
                          attention_mask=torch.tensor(mask, dtype=torch.long), do_sample=False,
                          max_new_tokens=32, min_new_tokens=32, pad_token_id=0, eos_token_id=None)
  np.testing.assert_array_equal(np.asarray(ours), theirs[:, prompt.shape[1]:].numpy())


def test_sharded_checkpoint_loads_like_the_single_file(checkpoints, tmp_path):
  path, ref = checkpoints["llama3"]
  sharded = str(tmp_path / "sharded")
  ref.save_pretrained(sharded, max_shard_size="20KB")
  assert os.path.exists(os.path.join(sharded, "model.safetensors.index.json"))
  one, many = models.from_pretrained(path)[1], models.from_pretrained(sharded)[1]
  jax.tree.map(np.testing.assert_array_equal, one, many)


def test_bfloat16_loads_bfloat16_params_close_to_float32(checkpoints):
  path, _ = checkpoints["neox"]
  g32, p32 = models.from_pretrained(path)
  g16, p16 = models.from_pretrained(path, dtype="bfloat16")
  assert {x.dtype for x in jax.tree.leaves(p16)} == {jnp.dtype("bfloat16")}
  tokens, mask = H.padded_batch()
  a = models.apply(g32, p32, tokens, pad_mask=mask).logits
  b = models.apply(g16, p16, tokens, pad_mask=mask).logits
  assert b.dtype == jnp.float32 and _max_diff(a, b, mask) < 0.25


def test_parameters_land_in_their_sharding(checkpoints):
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  path, _ = checkpoints["gpt2"]
  mesh = Mesh(np.array(jax.devices()[:1]), ("fsdp",))
  graphdef, params = models.from_pretrained(
      path, shardings=lambda abstract: jax.tree.map(lambda _: NamedSharding(mesh, P()), abstract))
  assert all(isinstance(x.sharding, NamedSharding) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", ["gpt2_untied", "neox", "llama3", "qwen2"])
def test_policy_export_loads_in_transformers_and_reimports_bitwise(checkpoints, name, tmp_path):
  path, _ = checkpoints[name]
  graphdef, params = models.from_pretrained(path, key=jax.random.key(1))
  out = str(tmp_path / "export")
  models.save_pretrained(out, graphdef, params, special_tokens=False)
  hf = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
  tokens, mask = H.padded_batch(seed=2)
  ours = models.apply(graphdef, params, tokens, pad_mask=mask).logits
  assert _max_diff(ours, H.torch_logits(hf, tokens, mask), mask) < TOL
  _, again = models.from_pretrained(out)
  jax.tree.map(np.testing.assert_array_equal, params, again)


def _pm_batch(seed: int = 3):
  """Right-padded PM rows ending in EOC: tokens (B, T), mask, eoc index (B,)."""
  tokens, mask = H.padded_batch(seed=seed, low=NUM_SPECIAL)
  mask[1] = True
  eoc = mask.sum(1) - 1
  tokens[np.arange(len(tokens)), eoc] = EOC_ID
  return np.where(mask, tokens, 0), mask, eoc


def _hf_scores(hf, tokens, mask):
  with torch.no_grad():
    return hf(input_ids=torch.tensor(tokens, dtype=torch.long),
              attention_mask=torch.tensor(mask, dtype=torch.long)).logits[:, 0].numpy()


@pytest.mark.parametrize("name", ["gpt2", "neox", "qwen2"])
def test_pm_export_is_a_sequence_classifier_scoring_at_eoc(checkpoints, name, tmp_path):
  path, _ = checkpoints[name]
  graphdef, params = models.from_pretrained(path, special_tokens=True, key=jax.random.key(2))
  params["score_head"]["bias"] = jnp.full((1,), 0.75)
  out = str(tmp_path / "pm")
  models.save_pretrained(out, graphdef, params, score_head=True)
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["pad_token_id"] == 0 and config["num_labels"] == 1
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(
      out, attn_implementation="eager").eval()
  tokens, mask, eoc = _pm_batch()
  ours = models.apply(graphdef, params, tokens, pad_mask=mask, score_index=eoc).scores
  # transformers' score head has no bias: its score is ours minus b (module docstring of hf.py).
  np.testing.assert_allclose(_hf_scores(hf, tokens, mask) + 0.75, np.asarray(ours), atol=TOL)
  _, again = models.from_pretrained(out, special_tokens=True)
  jax.tree.map(np.testing.assert_array_equal, params, again)


def test_ladder_model_exports_as_gpt2(tmp_path):
  cfg = models.ladder_config("25k", vocab_size=67, max_len=32, tie_embeddings=False)
  graphdef, params = models.init(cfg, jax.random.key(0))
  models.save_pretrained(str(tmp_path), graphdef, params)
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  assert type(hf).__name__ == "GPT2LMHeadModel"
  tokens, mask = H.padded_batch(seed=4)
  tokens = np.minimum(tokens, 66)
  ours = models.apply(graphdef, params, tokens, pad_mask=mask).logits
  assert _max_diff(ours, H.torch_logits(hf, tokens, mask), mask) < TOL


def test_special_tokens_shift_the_vocabulary_and_move_eos(tmp_path):
  cls_name, kwargs = H.hf_configs()["neox"]
  path = str(tmp_path / "ckpt")
  ref = H.build("neox", path)
  config = json.load(open(os.path.join(path, "config.json")))
  config["eos_token_id"] = 7
  json.dump(config, open(os.path.join(path, "config.json"), "w"))
  _, raw = models.from_pretrained(path)
  graphdef, params = models.from_pretrained(path, special_tokens=True)
  emb, raw_emb = np.asarray(params["embed"]["embedding"]), np.asarray(raw["embed"]["embedding"])
  assert emb.shape == (H.VOCAB + NUM_SPECIAL, raw_emb.shape[1])
  np.testing.assert_array_equal(emb[1], raw_emb[7])                         # EOS = the old eos row
  np.testing.assert_allclose(emb[0], raw_emb.mean(0), rtol=1e-6, atol=1e-7)  # PAD, EOC = mean
  np.testing.assert_array_equal(emb[2], emb[0])
  np.testing.assert_array_equal(emb[NUM_SPECIAL + 7], emb[0])               # moved away
  keep = np.arange(H.VOCAB) != 7
  np.testing.assert_array_equal(emb[NUM_SPECIAL:][keep], raw_emb[keep])
  # Shifted ids give the checkpoint's logits (the shifted columns; the untied head moved too).
  tokens, mask = H.padded_batch(seed=5)
  tokens = np.where(tokens == 7, 8, tokens)
  ours = models.apply(graphdef, params, np.where(mask, tokens + NUM_SPECIAL, 0), pad_mask=mask).logits
  ref_logits = H.torch_logits(ref, tokens, mask)
  assert _max_diff(np.asarray(ours)[..., NUM_SPECIAL:][..., keep], ref_logits[..., keep], mask) < TOL
