"""Shared fixtures: tiny models and a toy comparison set with a known rule.

Every test process (and every subprocess it starts) shares JAX's persistent compilation
cache, so the many tiny runs that compile the same steps compile each once: the cache maps an
HLO module and its compile options to the same executable, so no result changes.
"""

from __future__ import annotations

import os
import tempfile

# Before JAX compiles anything; subprocesses inherit the environment.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "hh-jax-tests-compilation-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hh_jax.data.batching import PairArrays  # noqa: E402
from hh_jax.special_tokens import EOC_ID, PAD_ID  # noqa: E402


# The real HH-RLHF sample (1,800 pairs of harmless-base/test and the release's CHECKSUMS) lies
# in the shared folder beside the repository (as in CI: `../shared`).
HH_RLHF_SAMPLES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                "data", "hh-rlhf"))
HH_RLHF_SAMPLE = os.path.join(HH_RLHF_SAMPLES, "harmless-base-test-sample.jsonl.gz")


class ToyTokenizer:
  """Ids 3..vocab-1 map to single letters; used only to size the model."""

  pad_id, eos_id, eoc_id = 0, 1, 2

  def __init__(self, vocab_size: int = 29):
    self._vocab_size = vocab_size

  @property
  def vocab_size(self) -> int:
    return self._vocab_size

  def encode(self, text):
    return [3 + ord(c) - ord("a") for c in text]

  def decode(self, ids):
    return "".join(chr(ord("a") + i - 3) for i in ids if i >= 3)


def toy_pairs(n: int, seed: int, vocab: int = 29, length: int = 13, marker: int = 7,
              harmless_every: int = 0) -> PairArrays:
  """Pairs whose chosen reply contains `marker` and rejected does not (a learnable rule).

  Row lengths vary (right padding), the EOC token ends every row.
  """
  rng = np.random.default_rng(seed)
  chosen = np.full((n, length), PAD_ID, np.int32)
  rejected = np.full((n, length), PAD_ID, np.int32)
  c_idx = np.zeros(n, np.int32)
  r_idx = np.zeros(n, np.int32)
  for i in range(n):
    for mat, idx, has_marker in ((chosen, c_idx, True), (rejected, r_idx, False)):
      m = rng.integers(5, length)                     # tokens before EOC
      row = rng.integers(8, vocab, size=m)            # never the marker
      if has_marker:
        row[rng.integers(0, m)] = marker
      mat[i, :m] = row
      mat[i, m] = EOC_ID
      idx[i] = m
  source = np.zeros(n, np.int32)
  if harmless_every:
    source[::harmless_every] = 1
  return PairArrays(chosen_tokens=chosen, rejected_tokens=rejected, chosen_eoc_index=c_idx,
                    rejected_eoc_index=r_idx, num_turns=np.ones(n, np.int32), source=source,
                    weight=np.ones(n, np.float32), source_names=("helpful", "harmless"))


@pytest.fixture(scope="session")
def toy_tokenizer():
  return ToyTokenizer()
