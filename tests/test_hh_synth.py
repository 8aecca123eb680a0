"""Tests of the `hh_synth` TFDS dataset: configs, schema, equality with the plain API."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

import hh_jax.data  # noqa: F401  (registers the builders)
from hh_jax.data import hh_synth
from hh_jax.data.world import corpus

HH_RLHF_FIELDS = {"context", "chosen", "rejected", "num_turns", "chosen_full", "rejected_full",
                  "subset"}
GOLD_FIELDS = {"gold_helpful_chosen", "gold_helpful_rejected", "gold_harmless_chosen",
               "gold_harmless_rejected", "p_chosen", "task"}


def _prepare(name_or_config, data_dir):
  kw = {"config": name_or_config} if isinstance(name_or_config, hh_synth.HHSynthConfig) else {}
  name = "hh_synth" if kw else f"hh_synth/{name_or_config}"
  builder = tfds.builder(name, data_dir=data_dir, **kw)
  builder.download_and_prepare()
  return builder


def _text(x) -> str:
  return x.decode() if isinstance(x, bytes) else x


def test_registered_with_default_configs():
  assert tfds.builder_cls("hh_synth") is hh_synth.HhSynth
  configs = hh_synth.HhSynth.builder_configs
  for kind, (train, test) in hh_synth.DEFAULT_SIZES.items():
    assert (configs[kind].kind, configs[kind].size, configs[kind].test_size) == (kind, train, test)
  assert hh_synth.HhSynth.DEFAULT_BUILDER_CONFIG_NAME == "helpful"


def test_config_names():
  cfg = hh_synth.config_from_name("helpful-8k-s1")
  assert (cfg.kind, cfg.size, cfg.seed, cfg.test_size, cfg.helpful_fraction) == (
      "helpful", 8000, 1, 2000, 0.5)
  cfg = hh_synth.config_from_name("mix-64k-s0-t100-h30")
  assert (cfg.size, cfg.test_size, cfg.helpful_fraction, cfg.name) == (
      64000, 100, 0.3, "mix-64000-s0-t100-h30")
  assert hh_synth.config_from_name("helpful-8000-s1") is hh_synth.make_config("helpful", 8000, 1)
  assert hh_synth.config_from_name("helpful-eight-s1") is None
  with pytest.raises(ValueError, match="kind must be one of"):
    hh_synth.make_config("harmful", 10)
  with pytest.raises(ValueError, match="whole percent"):
    hh_synth.make_config("mix", 10, helpful_fraction=1 / 3)


@pytest.fixture(scope="module")
def helpful_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  _prepare("helpful-200-s0-t50", data_dir)
  return data_dir


def test_comparisons_equal_the_plain_api(helpful_dir):
  source = tfds.data_source("hh_synth/helpful-200-s0-t50", data_dir=helpful_dir)
  assert (len(source["train"]), len(source["test"])) == (200, 50)
  info = tfds.builder("hh_synth/helpful-200-s0-t50", data_dir=helpful_dir).info
  assert set(info.features) == HH_RLHF_FIELDS | GOLD_FIELDS
  assert info.features["num_turns"].np_dtype == np.int32
  assert info.features["p_chosen"].np_dtype == np.float32
  for split, n in (("train", 200), ("test", 50)):
    expected = corpus.comparisons("helpful", seed=0, n=n, split=split)
    got = [source[split][i] for i in range(n)]
    key = lambda ex: (_text(ex["context"]), _text(ex["chosen"]), _text(ex["rejected"]))  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected.examples()))
    by_key = {key(ex): ex for ex in expected.examples()}
    for ex in got:
      want = by_key[key(ex)]
      for field in info.features:
        value = _text(ex[field]) if isinstance(ex[field], bytes) else ex[field]
        assert value == pytest.approx(want[field]), field
    assert info.metadata["bayes_ceiling"][split] == pytest.approx(expected.bayes_ceiling)
  assert corpus.comparisons("helpful", 0, 200).columns["context"] != \
      corpus.comparisons("helpful", 0, 200, split="test").columns["context"]


def test_same_seed_gives_identical_files(helpful_dir, tmp_path):
  _prepare(hh_synth.make_config("helpful", 200, seed=0, test_size=50), tmp_path)
  rel = f"hh_synth/helpful-200-s0-t50/{hh_synth.HhSynth.VERSION}"
  files = sorted(p.name for p in (helpful_dir / rel).glob("*.array_record*"))
  assert files
  for name in files:
    assert (helpful_dir / rel / name).read_bytes() == (tmp_path / rel / name).read_bytes()


def test_lm_prompts_and_mix_configs(tmp_path):
  lm = _prepare("lm-120-s2-t10", tmp_path).as_data_source()
  texts = sorted(_text(lm["train"][i]["text"]) for i in range(120))
  assert texts == sorted(corpus.corpus(2, 120))
  prompts = _prepare("prompts-80-s0-t10-h25", tmp_path).as_data_source()["train"]
  records = sorted(corpus.sample_prompt_records(0, 80, mix=0.25))
  got = sorted((_text(prompts[i]["context"]), _text(prompts[i]["subset"])) for i in range(80))
  assert got == records
  mix = _prepare("mix-100-s0-t20-h30", tmp_path)
  subsets = [_text(mix.as_data_source()["train"][i]["subset"]) for i in range(100)]
  assert subsets.count("helpful") == 30
  assert 0.5 < mix.info.metadata["bayes_ceiling"]["train"] < 1.0
