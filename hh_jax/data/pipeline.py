"""From a run config to arrays: one code path for the synthetic world and HH-RLHF.

    tfds.builder(name).download_and_prepare()    once per data_dir (under a file lock)
    tfds.data_source(name, split)                TF-free reads of the array_record files
    encode_pairs / encode_lm_sequence            tokenize (cached per dataset/tokenizer/length)
    select(num_train_pairs, helpful_fraction)    nested subsets for dataset-size sweeps

Selection: the training pool is permuted once per run seed; a run with D pairs takes
the first D of that permutation (or, with `helpful_fraction` f, the first round(f D)
helpful and D - round(f D) harmless pairs), so for one seed every smaller dataset is a
subset of every larger one. The evaluation pairs are the first `num_eval_pairs` of a
fixed (seed 0) permutation: every run of a sweep is scored on the same pairs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import os
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from hh_jax.config import DataConfig
from hh_jax.data import batching, hh_synth, tokenizers
from hh_jax.data.world import WorldTokenizer, gold_scores, tasks
from hh_jax.special_tokens import PAD_ID

# (Importing any hh_jax.data module runs hh_jax/data/__init__.py, which registers the TFDS
# builders hh_rlhf and hh_synth that `tfds.builder` below looks up by name.)


@dataclasses.dataclass
class PMData:
  """Everything a PM run reads: encoded pairs, and per-eval-pair extras (gold p_chosen, lengths)."""

  tokenizer: tokenizers.Tokenizer
  train: batching.PairArrays
  eval: batching.PairArrays
  eval_extras: dict[str, np.ndarray]


@dataclasses.dataclass
class LMData:
  """An LM run's sequences: text + EOS, right-padded with PAD."""

  tokenizer: tokenizers.Tokenizer
  train_tokens: np.ndarray          # (N, T) int32
  eval_tokens: np.ndarray           # (M, T) int32


GOLD_FIELDS = ("p_chosen", "gold_helpful_chosen", "gold_helpful_rejected",
               "gold_harmless_chosen", "gold_harmless_rejected")


def default_data_dir() -> str:
  return os.environ.get("HH_JAX_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def get_tokenizer(dataset: str, spec: str = "auto") -> tokenizers.Tokenizer:
  """"auto": "world" (the synthetic world's words) for hh_synth, "byte" otherwise; else
  "world", "byte" or the path of a saved tokenizer."""
  if spec == "auto":
    spec = "world" if dataset.startswith("hh_synth") else "byte"
  if spec == "world":
    return WorldTokenizer()
  return tokenizers.load_tokenizer(spec)


def turn_marker_ids(dataset: str, spec: str = "auto") -> tuple[int, ...]:
  """The single-token dialogue turn markers of a dataset's tokenizer ("\n\nHuman:" and
  "\n\nAssistant:" of the synthetic world), which a policy's reply must not contain; () for
  tokenizers whose markers are several tokens (bytes, BPE: there a reply that starts a new turn
  is not prevented)."""
  return tuple(int(i) for i in getattr(get_tokenizer(dataset, spec), "turn_marker_ids", ()))


@contextlib.contextmanager
def _file_lock(path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def prepare(dataset: str, data_dir: str | None = None, manual_dir: str | None = None):
  """Build the TFDS dataset if it is not there yet; return its builder."""
  data_dir = data_dir or default_data_dir()
  builder = tfds.builder(dataset, data_dir=data_dir)
  if not builder.is_prepared():
    lock = os.path.join(data_dir, ".locks", dataset.replace("/", "__") + ".lock")
    with _file_lock(lock):
      builder = tfds.builder(dataset, data_dir=data_dir)
      if not builder.is_prepared():
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
  return builder


def read_split(dataset: str, split: str, data_dir: str | None = None,
               manual_dir: str | None = None) -> list[dict]:
  """Every example of a split as dicts of Python values (bytes decoded to str)."""
  prepare(dataset, data_dir, manual_dir)
  source = tfds.data_source(dataset, split=split, data_dir=data_dir or default_data_dir())
  return [{k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in source[i].items()}
          for i in range(len(source))]


def _cache_path(data_dir: str, *parts) -> str:
  digest = hashlib.sha1(repr(parts).encode()).hexdigest()[:16]
  return os.path.join(data_dir, "hh_jax_cache", f"{str(parts[0]).replace('/', '__')}-{digest}.npz")


def _save_npz_atomic(path: str, **arrays) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz")
  os.close(fd)
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def encoded_pairs(dataset: str, split: str, tokenizer_spec: str, max_len: int,
                  data_dir: str | None = None, manual_dir: str | None = None):
  """(PairArrays, extras) for a whole split, cached in `<data_dir>/hh_jax_cache/`."""
  data_dir = data_dir or default_data_dir()
  tok = get_tokenizer(dataset, tokenizer_spec)
  # v2: one shared context cut for both replies, and the reply lengths stored.
  path = _cache_path(data_dir, dataset, split, tokenizer_spec, max_len, "pairs-v2")
  if os.path.exists(path):
    z = np.load(path)
    arrays = batching.PairArrays(
        **{f.name: z[f.name] for f in dataclasses.fields(batching.PairArrays)
           if f.name != "source_names"},
        source_names=tuple(str(s) for s in z["source_names"]))
    extras = {k[len("extra_"):]: z[k] for k in z.files if k.startswith("extra_")}
    return arrays, extras
  examples = read_split(dataset, split, data_dir, manual_dir)
  arrays = batching.encode_pairs(tok, examples, max_len)
  extras = {k: np.asarray([ex[k] for ex in examples], np.float32)
            for k in GOLD_FIELDS if examples and k in examples[0]}
  extras["chosen_len"] = np.asarray([len(ex["chosen"]) for ex in examples], np.int32)
  extras["rejected_len"] = np.asarray([len(ex["rejected"]) for ex in examples], np.int32)
  _save_npz_atomic(path, **{f.name: getattr(arrays, f.name) for f in dataclasses.fields(arrays)},
                   **{f"extra_{k}": v for k, v in extras.items()})
  return arrays, extras


def select_rows(source: np.ndarray, source_names: tuple[str, ...], seed: int, num: int | None,
                helpful_fraction: float | None, split_half: int | None = None) -> np.ndarray:
  """Row indices of the training subset (module docstring); errors name the missing amount.

  split_half h in {0, 1} first restricts the pool to the rows at even (h = 0) or odd (h = 1)
  positions of a fixed seed-0 permutation: two disjoint halves, whatever the run seed.
  """
  order = np.random.default_rng([seed, 7919]).permutation(len(source))
  if split_half is not None:
    if split_half not in (0, 1):
      raise ValueError(f"data.split_half must be 0, 1 or None, got {split_half}")
    half = np.random.default_rng(0).permutation(len(source))[split_half::2]
    order = order[np.isin(order, half)]
  if helpful_fraction is None:
    if num is None:
      return order
    if num > len(order):
      raise ValueError(f"data.num_train_pairs={num} exceeds the {len(order)} training pairs")
    return order[:num]
  harmless_ids = [i for i, n in enumerate(source_names) if "harmless" in n]
  is_harmless = np.isin(source[order], harmless_ids)
  helpful_rows, harmless_rows = order[~is_harmless], order[is_harmless]
  num = len(order) if num is None else num
  n_help = int(round(helpful_fraction * num))
  if n_help > len(helpful_rows) or num - n_help > len(harmless_rows):
    raise ValueError(f"data.helpful_fraction={helpful_fraction} with {num} pairs needs {n_help} "
                     f"helpful and {num - n_help} harmless pairs; the pool has "
                     f"{len(helpful_rows)} and {len(harmless_rows)}")
  rows = np.concatenate([helpful_rows[:n_help], harmless_rows[:num - n_help]])
  return rows[np.random.default_rng([seed, 104729]).permutation(len(rows))]


def load_pm_data(cfg: DataConfig, seed: int):
  """PMData for a PM run."""
  train, _ = encoded_pairs(cfg.dataset, cfg.train_split, cfg.tokenizer, cfg.max_len,
                           cfg.data_dir, cfg.manual_dir)
  evals, extras = encoded_pairs(cfg.dataset, cfg.eval_split, cfg.tokenizer, cfg.max_len,
                                cfg.data_dir, cfg.manual_dir)
  rows = select_rows(train.source, train.source_names, seed, cfg.num_train_pairs,
                     cfg.helpful_fraction, cfg.split_half)
  eval_rows = np.random.default_rng(0).permutation(len(evals))[:cfg.num_eval_pairs]
  eval_rows = np.sort(eval_rows)
  return PMData(tokenizer=get_tokenizer(cfg.dataset, cfg.tokenizer),
                train=batching.take_pairs(train, rows), eval=batching.take_pairs(evals, eval_rows),
                eval_extras={k: v[eval_rows] for k, v in extras.items()})


def load_lm_data(cfg: DataConfig, seed: int, num_eval: int = 1024):
  """LMData: every `text` of an LM corpus (or every chosen transcript of a comparison set)
  encoded as text + EOS, right-padded to max_len."""
  data_dir = cfg.data_dir or default_data_dir()
  tok = get_tokenizer(cfg.dataset, cfg.tokenizer)

  def encode(split):
    path = _cache_path(data_dir, cfg.dataset, split, cfg.tokenizer, cfg.max_len, "lm-v1")
    if os.path.exists(path):
      return np.load(path)["tokens"]
    examples = read_split(cfg.dataset, split, data_dir, cfg.manual_dir)
    field = "text" if "text" in examples[0] else "chosen_full"
    rows = [batching.encode_lm_sequence(tok, ex[field], cfg.max_len) for ex in examples]
    tokens = np.stack(rows).astype(np.int32)
    _save_npz_atomic(path, tokens=tokens)
    return tokens

  train = encode(cfg.train_split)
  if cfg.num_train_pairs is not None:
    train = train[np.random.default_rng([seed, 7919]).permutation(len(train))[:cfg.num_train_pairs]]
  return LMData(tokenizer=tok, train_tokens=train, eval_tokens=encode(cfg.eval_split)[:num_eval])


def left_pad(rows: list[np.ndarray], width: int) -> np.ndarray:
  """Left-truncate / left-pad token rows to (N, width) (prompts for batched generation)."""
  out = np.full((len(rows), width), PAD_ID, np.int32)
  for i, r in enumerate(rows):
    r = np.asarray(r, np.int32)[-width:]
    out[i, width - len(r):] = r
  return out


def load_prompts(dataset: str, split: str, prompt_len: int, tokenizer_spec: str = "auto",
                 data_dir: str | None = None, manual_dir: str | None = None,
                 limit: int | None = None) -> np.ndarray:
  """RL prompts (contexts ending in "\\n\\nAssistant:") as left-padded (N, prompt_len) tokens."""
  tok = get_tokenizer(dataset, tokenizer_spec)
  examples = read_split(dataset, split, data_dir, manual_dir)[:limit]
  return left_pad([tok.encode(ex["context"]) for ex in examples], prompt_len)


def _world_gold(prompt_tokens: np.ndarray, response: np.ndarray, world_seed: int) -> dict:
  return gold_scores(np.asarray(prompt_tokens), np.asarray(response), world_seed)


def gold_fn(dataset: str):
  """The gold reward of the world an hh_synth dataset is drawn from, as
  fn(prompt_tokens (B, P), response (B, T)) -> {"helpful", "harmless", "hh"}: (B,) each;
  None for data without a gold labeller (HH-RLHF)."""
  if not dataset.startswith("hh_synth"):
    return None
  return functools.partial(_world_gold, world_seed=hh_synth.world_seed_of(dataset))


def world_task_names(prompt_tokens: np.ndarray) -> np.ndarray:
  """(B,) the task family of each world prompt's last Human turn (e.g. "arithmetic")."""
  return np.array([tasks.parse_context_ids(tuple(int(t) for t in row)).task
                   for row in np.asarray(prompt_tokens)])
