"""Tokenizers that need no download.

Every tokenizer in hh-jax follows the `Tokenizer` protocol and reserves the same three
special ids, so models, batching and rollouts never depend on which one is used:

    PAD_ID = 0   padding (never attended to, never scored)
    EOS_ID = 1   end of a reply / document (the policy stops here)
    EOC_ID = 2   end-of-context token appended after a reply; the PM score is read here
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

PAD_ID = 0
EOS_ID = 1
EOC_ID = 2
NUM_SPECIAL = 3


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> token ids. `decode(encode(s)) == s` for every text the tokenizer accepts."""

  pad_id: int
  eos_id: int
  eoc_id: int

  @property
  def vocab_size(self) -> int: ...

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Sequence[int]) -> str: ...
