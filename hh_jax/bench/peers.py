"""The PyTorch peers of the bench: the same PM train step in eager PyTorch, and Hugging Face
`GPT2LMHeadModel.generate` on the decoding shape, both from `benchmarks/torch_pm.py` run in
a subprocess (its own thread pool, nothing shared with XLA). Skipped with a note when the
`bench` extra (torch, transformers) is not installed."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from hh_jax.bench.throughput import VOCAB, BenchConfig

TORCH_PEER = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "torch_pm.py"


def torch_missing_note() -> str | None:
  """None if the torch peer can run, else why not (printed, and the parts are skipped)."""
  if importlib.util.find_spec("torch") is None:
    return "torch not installed (pip install 'hh-jax[bench]'): PyTorch peer skipped"
  if not TORCH_PEER.exists():
    return f"{TORCH_PEER} not found (run from a source checkout): PyTorch peer skipped"
  return None


def hf_missing_note() -> str | None:
  """None if transformers is importable, else why HF generate is skipped."""
  if importlib.util.find_spec("transformers") is None:
    return "transformers not installed (pip install 'hh-jax[bench]'): HF generate skipped"
  return None


def run_torch_peer(args: list[str]) -> dict:
  """benchmarks/torch_pm.py in a subprocess; its JSON result (the last stdout line)."""
  proc = subprocess.run([sys.executable, str(TORCH_PEER), *args], capture_output=True, text=True,
                        check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"{TORCH_PEER} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_pm_step(bc: BenchConfig) -> dict:
  """{"torch_version", "torch_num_threads", size: {"torch_pm_step_tokens_per_s"}} per size.

  XLA's CPU client runs one thread per core; torch is given the same.
  """
  return run_torch_peer(["--sizes", ",".join(bc.sizes), "--pairs", str(bc.pairs), "--seq",
                         str(bc.seq), "--vocab", str(VOCAB), "--steps", str(bc.steps),
                         "--repeats", str(bc.repeats), "--threads", str(os.cpu_count())])


def hf_generate(bc: BenchConfig) -> dict:
  """{"transformers_version", decode_size: {"hf_generate_tokens_per_s"}} on the decode shape."""
  return run_torch_peer(["--sizes", bc.decode_size, "--hf-generate", "--batch",
                         str(bc.decode_batch), "--prompt", str(bc.prompt_len), "--new",
                         str(bc.new_tokens), "--vocab", str(VOCAB), "--repeats",
                         str(bc.decode_repeats), "--threads", str(os.cpu_count())])


def write_trl_batches(path: str, batches: list[dict]) -> None:
  """The padded PM batches (`hh_jax.train.pm` keys, B pairs of T tokens each) as the torch
  peer's TRL-style file: tokens (K, 2B, T) with chosen rows first, eoc (K, 2B), longest (K,)
  = each batch's longest row (the length TRL's collator pads that batch to)."""
  tokens = np.stack([np.concatenate([b["chosen_tokens"], b["rejected_tokens"]]) for b in batches])
  eoc = np.stack([np.concatenate([b["chosen_eoc_index"], b["rejected_eoc_index"]]) for b in batches])
  np.savez(path, tokens=tokens, eoc=eoc, longest=eoc.max(axis=1) + 1)


def torch_trl_pairs_per_s(bc: BenchConfig, batches: list[dict]) -> dict:
  """{size: torch pairs/s} of the eager PM step run as TRL's reward trainer runs the batches
  (chosen + rejected in one batch, padded to the batch's longest row)."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "trl_batches.npz")
    write_trl_batches(path, batches)
    out = run_torch_peer(["--sizes", ",".join(bc.sizes), "--trl-batches", path, "--vocab",
                          str(VOCAB), "--repeats", str(bc.repeats), "--threads", str(os.cpu_count())])
  return {size: out[size]["torch_pairs_per_s"] for size in bc.sizes}
