"""`hh-jax data ...`: prepare TFDS datasets, show their metadata, train a BPE tokenizer.

    hh-jax data prepare hh_rlhf/harmless-base --data_dir D [--manual_dir M]
        [--splits test] [--checksums FILE.tsv] [--skip_malformed]
    hh-jax data info hh_rlhf/harmless-base --data_dir D
    hh-jax data train-tokenizer hh_rlhf/harmless-base --data_dir D --num_merges 4000
        [--split train] [--out PATH]

Without --manual_dir, `prepare` downloads the official files. Builder options
(--splits, --checksums, --skip_malformed) are passed only when given, so the same
command prepares `hh_synth/...` too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import tensorflow_datasets as tfds

import hh_jax.data  # noqa: F401  registers the builders
from hh_jax.data.hh_rlhf import ChecksumError, MalformedInputError
from hh_jax.data.tokenizers import train_bpe


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="hh-jax data", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  prep = sub.add_parser("prepare", help="download (or read --manual_dir) and write array_record files")
  prep.add_argument("name", help="dataset/config, e.g. hh_rlhf/harmless-base")
  prep.add_argument("--data_dir", required=True)
  prep.add_argument("--manual_dir", default=None, help="directory laid out as {subset}/{split}.jsonl.gz")
  prep.add_argument("--splits", default=None, help="comma-separated, e.g. 'test' (default: all)")
  prep.add_argument("--checksums", default=None, help="TSV path<TAB>size<TAB>sha256 overriding the builder's")
  prep.add_argument("--skip_malformed", action="store_true", help="skip and count malformed lines")
  info = sub.add_parser("info", help="print a prepared dataset's splits and metadata as JSON")
  info.add_argument("name")
  info.add_argument("--data_dir", required=True)
  tok = sub.add_parser("train-tokenizer", help="train a byte-level BPE on a prepared split")
  tok.add_argument("name")
  tok.add_argument("--data_dir", required=True)
  tok.add_argument("--num_merges", type=int, default=4000)
  tok.add_argument("--split", default="train")
  tok.add_argument("--out", default=None, help="default: <dataset dir>/tokenizer-bpe<merges>-<split>.json")
  return parser


def _prepare(args) -> int:
  kwargs = {}
  if args.splits:
    kwargs["splits"] = tuple(s.strip() for s in args.splits.split(",") if s.strip())
  if args.checksums:
    kwargs["checksums"] = args.checksums
  if args.skip_malformed:
    kwargs["skip_malformed"] = True
  builder = tfds.builder(args.name, data_dir=args.data_dir, **kwargs)
  start = time.perf_counter()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir))
  seconds = time.perf_counter() - start
  sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
  print(json.dumps({"prepared": args.name, "data_dir": os.fspath(builder.data_dir), "splits": sizes,
                    "seconds": round(seconds, 2), "metadata": dict(builder.info.metadata or {})}, indent=1))
  return 0


def _info(args) -> int:
  builder = tfds.builder(args.name, data_dir=args.data_dir)
  if not builder.is_prepared():
    print(f"{args.name} is not prepared in {args.data_dir}", file=sys.stderr)
    return 1
  sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
  print(json.dumps({"name": args.name, "data_dir": os.fspath(builder.data_dir), "splits": sizes,
                    "metadata": dict(builder.info.metadata or {})}, indent=1))
  return 0


def _train_tokenizer(args) -> int:
  builder = tfds.builder(args.name, data_dir=args.data_dir)
  source = builder.as_data_source(split=args.split)
  texts = []
  for i in range(len(source)):
    ex = source[i]
    texts += [ex["chosen_full"].decode("utf-8"), ex["rejected_full"].decode("utf-8")]
  tokenizer = train_bpe(texts, args.num_merges)
  out = args.out or os.path.join(os.fspath(builder.data_dir),
                                 f"tokenizer-bpe{args.num_merges}-{args.split}.json")
  tokenizer.save(out)
  print(json.dumps({"tokenizer": out, "merges": len(tokenizer.merges), "vocab_size": tokenizer.vocab_size}))
  return 0


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  command = {"prepare": _prepare, "info": _info, "train-tokenizer": _train_tokenizer}[args.command]
  try:
    return command(args)
  except (ChecksumError, MalformedInputError, FileNotFoundError) as e:  # bad input: say which, no traceback
    print(f"hh-jax data {args.command}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
