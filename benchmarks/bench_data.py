"""Data-pipeline throughput on the shared 1,800-pair HH-RLHF sample (< 1 min on 2 cores).

    /work/venv/bin/python benchmarks/bench_data.py [--sample PATH] [--max_len 256] [--batch_size 32]

Prints one JSON object: preparation pairs/s (TFDS builder -> array_record), read pairs/s
(`tfds.data_source`), encode pairs/s (ByteTokenizer and a locally trained BPE), and
PairIterator batches/s (fixed length and bucketed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import tensorflow_datasets as tfds

import hh_jax.data  # noqa: F401  registers hh_rlhf
from hh_jax.data import batching
from hh_jax.data.hh_rlhf import file_digest
from hh_jax.data.tokenizers import ByteTokenizer, train_bpe

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                      "hh-rlhf", "harmless-base-test-sample.jsonl.gz")   # the sample beside a checkout


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def _iterate(arrays, batch_size, buckets, epochs):
  it = batching.PairIterator(arrays, batch_size, seed=0, buckets=buckets, num_epochs=epochs)
  count = sum(1 for _ in it)
  return count


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--sample", default=SAMPLE)
  parser.add_argument("--max_len", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--bpe_merges", type=int, default=1000)
  args = parser.parse_args(argv)

  tmp = tempfile.mkdtemp(prefix="bench_data_")
  try:
    manual = os.path.join(tmp, "manual", "harmless-base")
    os.makedirs(manual)
    shutil.copy(args.sample, os.path.join(manual, "test.jsonl.gz"))
    builder = tfds.builder("hh_rlhf/harmless-base", data_dir=os.path.join(tmp, "data"), splits=("test",),
                           checksums={"harmless-base/test.jsonl.gz": file_digest(args.sample)})
    config = tfds.download.DownloadConfig(manual_dir=os.path.dirname(manual))
    _, prep_s = _timed(lambda: builder.download_and_prepare(download_config=config))
    source = builder.as_data_source(split="test")
    examples, read_s = _timed(lambda: [source[i] for i in range(len(source))])
    n = len(examples)

    byte = ByteTokenizer()
    arrays, enc_byte_s = _timed(lambda: batching.encode_pairs(byte, examples, args.max_len))
    texts = [ex["chosen_full"].decode() for ex in examples] + [ex["rejected_full"].decode() for ex in examples]
    bpe, bpe_train_s = _timed(lambda: train_bpe(texts, args.bpe_merges))
    _, enc_bpe_s = _timed(lambda: batching.encode_pairs(bpe, examples, args.max_len))

    epochs = 20
    fixed_batches, fixed_s = _timed(lambda: _iterate(arrays, args.batch_size, None, epochs))
    buckets = (args.max_len // 4, args.max_len // 2, args.max_len)
    bucket_batches, bucket_s = _timed(lambda: _iterate(arrays, args.batch_size, buckets, epochs))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)

  print(json.dumps({
      "pairs": n,
      "prepare_pairs_per_s": round(n / prep_s),
      "read_pairs_per_s": round(n / read_s),
      "encode_byte_pairs_per_s": round(n / enc_byte_s),
      f"bpe{args.bpe_merges}_train_s": round(bpe_train_s, 2),
      f"encode_bpe{args.bpe_merges}_pairs_per_s": round(n / enc_bpe_s),
      f"batches_per_s_B{args.batch_size}_T{args.max_len}": round(fixed_batches / fixed_s),
      "batches_per_s_bucketed": round(bucket_batches / bucket_s),
      "cpu_count": os.cpu_count(),
  }, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
