"""A PM run and a PPO run started from a local Hugging Face checkpoint through the normal CLI,
then exported with `hh-jax export` and checked against transformers.

    hh-jax train experiments/pm_pretrained.py --workdir W --set init_from_hf=DIR --set data.tokenizer=DIR
    hh-jax train experiments/ppo_pretrained.py --workdir W --set policy_init=DIR --set tokenizer=DIR ...
    hh-jax export RUN_DIR OUT_DIR

The checkpoint is a tiny random GPT-NeoX made here with transformers, with a byte-level BPE
trained here with the `tokenizers` trainer; the data is the shared HH-RLHF sample (harmless-base
test), prepared offline as a user pins their own file's digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from hh_jax import cli, models
from hh_jax.data import pipeline
from hh_jax.data.tokenizers import PretrainedTokenizer, train_hf_bpe
from hh_jax.special_tokens import NUM_SPECIAL
from hh_jax.train import lifecycle
from tests.conftest import HH_RLHF_SAMPLE

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

DATA = "hh_rlhf/harmless-base"


def _prepare_sample(root) -> str:
  """The HH-RLHF sample as the TFDS dataset DATA (split "test"), in a fresh data dir."""
  if not os.path.exists(HH_RLHF_SAMPLE):
    pytest.skip(f"{HH_RLHF_SAMPLE} is not there")
  manual = root / "manual" / "harmless-base"
  os.makedirs(manual)
  shutil.copy(HH_RLHF_SAMPLE, manual / "test.jsonl.gz")
  data = open(HH_RLHF_SAMPLE, "rb").read()
  digest = {"harmless-base/test.jsonl.gz": (len(data), hashlib.sha256(data).hexdigest())}
  builder = tfds.builder(DATA, data_dir=str(root / "tfds"), splits=("test",), checksums=digest)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual.parent)))
  return str(root / "tfds")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """(checkpoint dir, data dir): tokenizer.json + config.json + model.safetensors."""
  root = tmp_path_factory.mktemp("hf_run")
  data_dir = _prepare_sample(root)
  texts = [ex["chosen"] for ex in pipeline.read_split(DATA, "test", data_dir)][:300]
  tok = train_hf_bpe(texts, vocab_size=320).tokenizer
  tok.add_special_tokens(["<|endoftext|>"])
  path = root / "tiny-neox"
  os.makedirs(path)
  tok.save(str(path / "tokenizer.json"))
  config = transformers.GPTNeoXConfig(
      vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=128, rotary_pct=0.25,
      eos_token_id=tok.token_to_id("<|endoftext|>"), bos_token_id=None)
  torch.manual_seed(0)
  transformers.GPTNeoXForCausalLM(config).save_pretrained(str(path))
  return str(path), data_dir


def _train(*args) -> None:
  assert cli.main(["train", *args, "--no-progress"]) == 0


@pytest.fixture(scope="module")
def pm_run(checkpoint, tmp_path_factory):
  path, data_dir = checkpoint
  run = str(tmp_path_factory.mktemp("runs") / "pm")
  _train("experiments/pm_pretrained.py", "--workdir", run, "--set", f"init_from_hf={path}",
         "--set", f"data.tokenizer={path}", "--set", f"data.dataset={DATA}",
         "--set", f"data.data_dir={data_dir}", "--set", "data.max_len=48", "--set", "dtype=float32",
         "--set", "data.train_split=test", "--set", "data.num_train_pairs=160",
         "--set", "data.num_eval_pairs=32", "--set", "batch_size=16",
         "--set", "optim.learning_rate=1e-3")
  return run


def test_pm_run_from_a_checkpoint_trains_from_its_weights(checkpoint, pm_run):
  path, _ = checkpoint
  summary = lifecycle.read_json(pm_run, lifecycle.SUMMARY)
  assert summary["model_size"] == "tiny-neox" and summary["train/steps"] == 10
  trained = lifecycle.load_model(pm_run)
  _, start = models.from_pretrained(path, special_tokens=True)
  assert trained.cfg.positions == "rotary" and trained.cfg.vocab_size == 321 + NUM_SPECIAL
  moved = np.abs(np.asarray(trained.params["embed"]["embedding"]) - np.asarray(start["embed"]["embedding"]))
  assert 0 < moved.max() < 0.1                     # finetuned from the checkpoint, not re-drawn


def test_ppo_run_from_a_checkpoint_against_its_pm(checkpoint, pm_run, tmp_path):
  path, data_dir = checkpoint
  run = str(tmp_path / "ppo")
  _train("experiments/ppo_pretrained.py", "--workdir", run, "--set", f"policy_init={path}",
         "--set", f"tokenizer={path}", "--set", f"reward_pm={pm_run}", "--set", f"test_pms=('{pm_run}',)",
         "--set", f"prompt_dataset={DATA}", "--set", "prompt_split=test", "--set", "num_prompts=64",
         "--set", f"data_dir={data_dir}",
         "--set", "prompt_len=32", "--set", "max_new_tokens=8", "--set", "num_iterations=2",
         "--set", "batch_size=8", "--set", "minibatch_size=4", "--set", "num_eval_prompts=8")
  summary = lifecycle.read_json(run, lifecycle.SUMMARY)
  assert summary["ppo/iterations"] == 2 and np.isfinite(summary["ppo/kl"])
  pms = lifecycle.read_json(run, "pms.json")
  assert pms["policy"]["run"] == os.path.abspath(path)


def test_export_of_the_pm_run_scores_like_hh_jax_in_transformers(checkpoint, pm_run, tmp_path):
  out = str(tmp_path / "export")
  assert cli.main(["export", pm_run, out]) == 0
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  model = lifecycle.load_model(pm_run)
  tok = PretrainedTokenizer.load(out)
  assert tok.hh_layout
  texts = ["\n\nHuman: what is 2 + 3?\n\nAssistant: 5", "\n\nHuman: hi\n\nAssistant: hello there"]
  rows = [tok.encode(t) + [tok.eoc_id] for t in texts]
  width = max(map(len, rows))
  tokens = np.array([r + [0] * (width - len(r)) for r in rows], np.int32)
  mask = tokens != 0
  ours = models.apply(model.graphdef, model.params, tokens, score_index=mask.sum(1) - 1).scores
  with torch.no_grad():
    theirs = hf(input_ids=torch.tensor(tokens, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long)).logits[:, 0].numpy()
  bias = float(np.asarray(model.params["score_head"]["bias"])[0])
  np.testing.assert_allclose(theirs + bias, np.asarray(ours), atol=1e-4)
  assert json.load(open(os.path.join(out, "config.json")))["architectures"] == [
      "GPTNeoXForSequenceClassification"]
  _, again = models.from_pretrained(out, special_tokens=True)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(model.params), jax.device_get(again))


def test_hh_rlhf_preset_with_weights_dir_plans_the_ladder_smallest_first(checkpoint, tmp_path):
  from experiments.presets import PRESETS, with_pretrained_ladder
  from hh_jax.train import experiment as ex
  small, _ = checkpoint
  weights = tmp_path / "weights"
  os.makedirs(weights)
  shutil.copytree(small, weights / "b-small")
  big = transformers.GPTNeoXConfig(vocab_size=321, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=128)
  transformers.GPTNeoXForCausalLM(big).save_pretrained(str(weights / "a-big"))
  preset = with_pretrained_ladder(PRESETS["hh-rlhf"], str(weights))
  assert preset.axes["checkpoints"] == (str(weights / "b-small"), str(weights / "a-big"))
  pms = ex.plan("pm_pretrained", str(tmp_path / "out"), preset)
  assert [r.name for r in pms][:3] == ["b-small-n10000-s0", "b-small-n40000-s0", "b-small-n160000-s0"]
  assert {r.config.data.dataset for r in pms} == {"hh_rlhf/all"}
  ppo = ex.plan("ppo_pretrained", str(tmp_path / "out"), preset)
  assert [r.config.reward_pm for r in ppo] == [str(tmp_path / "out" / "pm_pretrained" / n)
                                              for n in ("b-small-n160000-s0", "a-big-n160000-s0")]
