"""TFDS dataset `hh_synth`: the synthetic HH world (hh_jax.data.world), served like `hh_rlhf`.

Configs (train / test sizes; all seed 0, world seed 0):

| config     | examples                                             | train   | test  |
|------------|------------------------------------------------------|---------|-------|
| `lm`       | `text`: full transcripts for base-LM pretraining     | 120,000 | 2,000 |
| `helpful`  | comparisons labelled by gold helpfulness             | 32,000  | 2,000 |
| `harmless` | red-team comparisons labelled by gold harmlessness   | 32,000  | 2,000 |
| `mix`      | helpful + harmless, shuffled (half each)             | 64,000  | 4,000 |
| `prompts`  | `context`, `subset`, `task`, `num_turns`: RL prompts | 20,000  | 1,000 |

Every config has three splits: `train`, `validation` (as large as `test`) and `test`.
Validation is what any choice made by looking at results may read; test is for the
reported claims only.

Any size / seed / test size / helpful fraction / world: a config named
`KIND[-SIZE-sSEED[-tTEST][-hPERCENT]][-wWORLD]`, for example
`tfds.builder("hh_synth/helpful-8k-s1", data_dir=D)` (SIZE may end in k),
`helpful-8000-s1-t500` (500 test examples), `mix-64k-s0-h30` (30% helpful comparisons),
`mix-w3` (the default `mix` drawn from world 3: other facts, other task instances); or
equivalently `tfds.builder("hh_synth", config=make_config("mix", 64_000, 0,
helpful_fraction=0.3))`.

Comparison examples carry the `hh_rlhf` schema (context, chosen, rejected, num_turns,
chosen_full, rejected_full, subset) plus gold fields: `gold_{helpful,harmless}_{chosen,
rejected}` (float32), `p_chosen` (float32, the labeler's probability that the stored
chosen is preferred; the pair's Bayes accuracy is max(p, 1 - p)) and `task`.
`info.metadata["bayes_ceiling"][split]` holds each split's ceiling. Examples are exactly
`world.corpus.comparisons(kind, seed, size, split)` (also the plain-Python way to get
them); files are array_record, readable with `tfds.data_source`, no TensorFlow needed.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from hh_jax.data.world import corpus, labeler, tasks

KINDS = ("lm", "helpful", "harmless", "mix", "prompts")
DEFAULT_SIZES = {"lm": (120_000, 2_000), "helpful": (32_000, 2_000),
                 "harmless": (32_000, 2_000), "mix": (64_000, 4_000), "prompts": (20_000, 1_000)}
_NAME_RE = re.compile(r"^(lm|helpful|harmless|mix|prompts)"
                      r"(?:-(\d+)(k?)-s(\d+)(?:-t(\d+))?(?:-h(\d+))?)?(?:-w(\d+))?$")
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class HHSynthConfig(tfds.core.BuilderConfig):
  """What an hh_synth dataset is a pure function of.

  Attributes:
    kind: one of KINDS.
    size, test_size: examples in the train and test splits.
    seed: data seed.
    helpful_fraction: fraction of helpful prompts (lm, prompts) or comparisons (mix).
    world_seed: the world the data is drawn from (`world.tasks.world`).
  """

  kind: str = "helpful"
  size: int = 32_000
  test_size: int = 2_000
  seed: int = 0
  helpful_fraction: float = 0.5
  world_seed: int = 0


_NAMED_CONFIGS: dict[str, HHSynthConfig] = {}  # one object per name, as TFDS requires


def make_config(kind: str, size: int, seed: int = 0, test_size: int | None = None,
                helpful_fraction: float = 0.5, world_seed: int = 0) -> HHSynthConfig:
  """The config named KIND-SIZE-sSEED[-tTEST][-hPERCENT][-wWORLD] (suffixes only when not
  default).

  test_size defaults to the kind's default; helpful_fraction must be a whole percent.
  """
  if kind not in KINDS:
    raise ValueError(f"hh_synth: kind must be one of {KINDS}, got {kind!r}")
  test_size = DEFAULT_SIZES[kind][1] if test_size is None else int(test_size)
  if size < 0 or test_size < 0:
    raise ValueError(f"hh_synth: sizes must be >= 0, got size={size}, test_size={test_size}")
  percent = int(round(100 * helpful_fraction))
  if not 0 <= percent <= 100 or abs(percent - 100 * helpful_fraction) > 1e-9:
    raise ValueError(f"hh_synth: helpful_fraction must be a whole percent in [0, 1], got "
                     f"{helpful_fraction}")
  name = f"{kind}-{size}-s{seed}"
  name += f"-t{test_size}" if test_size != DEFAULT_SIZES[kind][1] else ""
  name += f"-h{percent}" if percent != 50 else ""
  if world_seed and name == f"{kind}-{DEFAULT_SIZES[kind][0]}-s0":
    name = kind                          # a default config in another world: KIND-wWORLD
  name += f"-w{world_seed}" if world_seed else ""
  if name not in _NAMED_CONFIGS:
    _NAMED_CONFIGS[name] = HHSynthConfig(
        name=name, description=f"{kind}: {size} train / {test_size} test examples, seed {seed}, "
                               f"world {world_seed}.",
        kind=kind, size=int(size), test_size=test_size, seed=int(seed),
        helpful_fraction=percent / 100, world_seed=int(world_seed))
  return _NAMED_CONFIGS[name]


def config_from_name(name: str) -> HHSynthConfig | None:
  """Parses KIND[-SIZE[k]-sSEED[-tTEST][-hPERCENT]][-wWORLD] (None if the name is not of that
  form); a bare KIND (with or without -wWORLD) has the kind's default sizes and seed 0."""
  m = _NAME_RE.match(name)
  if m is None:
    return None
  kind, size, k, seed, test, percent, world = m.groups()
  size = DEFAULT_SIZES[kind][0] if size is None else int(size) * (1000 if k else 1)
  return make_config(kind, size, int(seed or 0),
                     test_size=None if test is None else int(test),
                     helpful_fraction=0.5 if percent is None else int(percent) / 100,
                     world_seed=int(world or 0))


def config_of_dataset(dataset: str) -> HHSynthConfig | None:
  """The config of an `hh_synth/NAME` dataset (None for other datasets or unparsed names)."""
  if not dataset.startswith("hh_synth/"):
    return None
  return config_from_name(dataset.split("/", 1)[1])


def world_seed_of(dataset: str) -> int:
  """The world seed of an `hh_synth/...` dataset name (0 for the default configs)."""
  cfg = config_of_dataset(dataset)
  return cfg.world_seed if cfg is not None else 0


def in_world(dataset: str, world_seed: int) -> str:
  """The same hh_synth dataset drawn from another world: `hh_synth/mix` -> `hh_synth/mix-w3`.
  Names of other datasets are returned unchanged."""
  if not dataset.startswith("hh_synth/"):
    return dataset
  cfg = config_of_dataset(dataset)
  if cfg is None:
    raise ValueError(f"{dataset}: not an hh_synth config name (KIND[-SIZE-sSEED...][-wWORLD])")
  base = re.sub(r"-w\d+$", "", dataset)
  return f"{base}-w{world_seed}" if world_seed else base


def _default_configs() -> list[HHSynthConfig]:
  out = []
  for kind in KINDS:
    train, test = DEFAULT_SIZES[kind]
    out.append(HHSynthConfig(name=kind, description=f"default {kind} ({train} train examples)",
                             kind=kind, size=train, test_size=test, seed=0))
  return out


def _comparison_features() -> dict:
  text = tfds.features.Text()
  f32 = tfds.features.Scalar(dtype=np.float32)
  return {
      "context": text, "chosen": text, "rejected": text,
      "num_turns": tfds.features.Scalar(dtype=np.int32),
      "chosen_full": text, "rejected_full": text, "subset": text,
      "gold_helpful_chosen": f32, "gold_helpful_rejected": f32,
      "gold_harmless_chosen": f32, "gold_harmless_rejected": f32,
      "p_chosen": f32, "task": text,
  }


class HhSynth(tfds.core.GeneratorBasedBuilder):
  """The synthetic HH world with a gold labeler (see the module docstring)."""

  VERSION = tfds.core.Version("4.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "World knowledge: the fact family (who likes which colour, Zipf popularity).",
                   "2.0.0": "4096 people (FIRST LAST of PLACE), 4-digit sums, world seeds, a "
                            "validation split.",
                   "3.0.0": "The HHH preamble: 10% of LM transcripts open with it and have a "
                            "careful assistant's reply (3 words added to the vocabulary).",
                   "4.0.0": "Red-team (harmless) prompts are harmful requests only; benign "
                            "look-alikes stay in the helpful prompts."}
  BUILDER_CONFIGS = _default_configs()
  DEFAULT_BUILDER_CONFIG_NAME = "helpful"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As in hh_rlhf: TFDS 4.9.10's default needs `importlib_resources`.
    return epath.Path(__file__)

  @classmethod
  def get_builder_config(cls, name, version=None):
    # Named configs first, then any KIND-SIZE-sSEED name.
    return super().get_builder_config(name, version) or config_from_name(name)

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self._original_state.update(file_format=kwargs["file_format"])

  def _info(self) -> tfds.core.DatasetInfo:
    kind = self.builder_config.kind
    if kind == "lm":
      features = {"text": tfds.features.Text()}
    elif kind == "prompts":
      features = {"context": tfds.features.Text(), "subset": tfds.features.Text(),
                  "task": tfds.features.Text(),
                  "num_turns": tfds.features.Scalar(dtype=np.int32)}
    else:
      features = _comparison_features()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        supervised_keys=None,
        citation="Bai et al. 2022, Training a Helpful and Harmless Assistant with RLHF, "
                 "arXiv:2204.05862",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    self.info.metadata.update(kind=cfg.kind, seed=cfg.seed, helpful_fraction=cfg.helpful_fraction,
                              world_seed=cfg.world_seed, labeler_beta=dict(labeler.DEFAULT_BETA),
                              bayes_ceiling={})
    sizes = {"train": cfg.size, "validation": cfg.test_size, "test": cfg.test_size}
    return {split: self._generate_examples(split, n) for split, n in sizes.items()}

  def _generate_examples(self, split: str, n: int):
    cfg = self.builder_config
    if cfg.kind == "lm":
      for i, text in enumerate(corpus.corpus(cfg.seed, n, cfg.helpful_fraction, split,
                                             cfg.world_seed)):
        yield i, {"text": text}
      return
    if cfg.kind == "prompts":
      records = corpus.sample_prompt_records(cfg.seed, n, cfg.helpful_fraction, split,
                                             cfg.world_seed)
      for i, (context, subset) in enumerate(records):
        yield i, {"context": context, "subset": subset,
                  "task": tasks.parse_context(context, cfg.world_seed).task,
                  "num_turns": tasks.num_turns(context)}
      return
    cs = corpus.comparisons(cfg.kind, cfg.seed, n, split, cfg.helpful_fraction,
                            world_seed=cfg.world_seed)
    self.info.metadata["bayes_ceiling"][split] = cs.bayes_ceiling
    yield from enumerate(cs.examples())
