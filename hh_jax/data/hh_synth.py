"""TFDS dataset `hh_synth`: the synthetic HH world (hh_jax.data.world), served like `hh_rlhf`.

Configs (train / test sizes; all seed 0):

| config     | examples                                             | train   | test  |
|------------|------------------------------------------------------|---------|-------|
| `lm`       | `text`: full transcripts for base-LM pretraining     | 100,000 | 2,000 |
| `helpful`  | comparisons labelled by gold helpfulness             | 32,000  | 2,000 |
| `harmless` | red-team comparisons labelled by gold harmlessness   | 32,000  | 2,000 |
| `mix`      | helpful + harmless, shuffled (half each)             | 64,000  | 4,000 |
| `prompts`  | `context`, `subset`, `task`, `num_turns`: RL prompts | 20,000  | 1,000 |

Any size / seed / test size / helpful fraction: a config named
`KIND-SIZE-sSEED[-tTEST][-hPERCENT]`, for example `tfds.builder("hh_synth/helpful-8k-s1",
data_dir=D)` (SIZE may end in k), `helpful-8000-s1-t500` (500 test examples),
`mix-64k-s0-h30` (30% helpful comparisons); or equivalently
`tfds.builder("hh_synth", config=make_config("mix", 64_000, 0, helpful_fraction=0.3))`.

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
DEFAULT_SIZES = {"lm": (100_000, 2_000), "helpful": (32_000, 2_000),
                 "harmless": (32_000, 2_000), "mix": (64_000, 4_000), "prompts": (20_000, 1_000)}
_NAME_RE = re.compile(
    r"^(lm|helpful|harmless|mix|prompts)-(\d+)(k?)-s(\d+)(?:-t(\d+))?(?:-h(\d+))?$")


@dataclasses.dataclass
class HHSynthConfig(tfds.core.BuilderConfig):
  """What an hh_synth dataset is a pure function of.

  Attributes:
    kind: one of KINDS.
    size, test_size: examples in the train and test splits.
    seed: data seed.
    helpful_fraction: fraction of helpful prompts (lm, prompts) or comparisons (mix).
  """

  kind: str = "helpful"
  size: int = 32_000
  test_size: int = 2_000
  seed: int = 0
  helpful_fraction: float = 0.5


_NAMED_CONFIGS: dict[str, HHSynthConfig] = {}  # one object per name, as TFDS requires


def make_config(kind: str, size: int, seed: int = 0, test_size: int | None = None,
                helpful_fraction: float = 0.5) -> HHSynthConfig:
  """The config named KIND-SIZE-sSEED[-tTEST][-hPERCENT] (suffixes only when not default).

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
  if name not in _NAMED_CONFIGS:
    _NAMED_CONFIGS[name] = HHSynthConfig(
        name=name, description=f"{kind}: {size} train / {test_size} test examples, seed {seed}.",
        kind=kind, size=int(size), test_size=test_size, seed=int(seed),
        helpful_fraction=percent / 100)
  return _NAMED_CONFIGS[name]


def config_from_name(name: str) -> HHSynthConfig | None:
  """Parses KIND-SIZE[k]-sSEED[-tTEST][-hPERCENT] (None if the name is not of that form)."""
  m = _NAME_RE.match(name)
  if m is None:
    return None
  kind, size, k, seed, test, percent = m.groups()
  return make_config(kind, int(size) * (1000 if k else 1), int(seed),
                     test_size=None if test is None else int(test),
                     helpful_fraction=0.5 if percent is None else int(percent) / 100)


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

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "World knowledge: the fact family (who likes which colour, Zipf popularity)."}
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
                              labeler_beta=dict(labeler.DEFAULT_BETA), bayes_ceiling={})
    sizes = {"train": cfg.size, "test": cfg.test_size}
    return {split: self._generate_examples(split, n) for split, n in sizes.items()}

  def _generate_examples(self, split: str, n: int):
    cfg = self.builder_config
    if cfg.kind == "lm":
      for i, text in enumerate(corpus.corpus(cfg.seed, n, cfg.helpful_fraction, split)):
        yield i, {"text": text}
      return
    if cfg.kind == "prompts":
      records = corpus.sample_prompt_records(cfg.seed, n, cfg.helpful_fraction, split)
      for i, (context, subset) in enumerate(records):
        yield i, {"context": context, "subset": subset, "task": tasks.parse_context(context).task,
                  "num_turns": tasks.num_turns(context)}
      return
    cs = corpus.comparisons(cfg.kind, cfg.seed, n, split, cfg.helpful_fraction)
    self.info.metadata["bayes_ceiling"][split] = cs.bayes_ceiling
    yield from enumerate(cs.examples())
