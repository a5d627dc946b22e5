"""`gf-train data tokenize|inspect|cache-clean` and `data_prep/tokenize.py` / `data_prep/inspect.py`: flags, mains.

Owner: `gf_train.cli`. The work is `gf_train.data.tokenize.tokenize_corpus`,
`gf_train.data.inspect.inspect_dataset` and `gf_train.data.cache.clean_mirrors`. Exit status: 0 done
(tokenize: or a no-op), 2 user error.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any


def add_tokenize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="file, folder or glob of .jsonl/.jsonl.gz/.jsonl.zst/.txt/.parquet, or a datasets.save_to_disk"
                        " folder (repeatable)")
    p.add_argument("--out", required=True, help="output folder (gets manifest.json, train/, val/), or "
                   "s3://bucket/prefix (built locally, then uploaded; S3_ENDPOINT_URL for S3-compatible stores)")
    p.add_argument("--tokenizer", default="rwkv_world", help="rwkv_world, a tokenizer.json, or a HF tokenizer folder")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per training sample (stored: seq_len + 1)")
    p.add_argument("--text-field", default="text", help="JSON field / column holding the text (default: text)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-fraction", type=float, default=0.0, help="fraction of documents for validation")
    val.add_argument("--val-docs", type=int, default=None, help="exact number of documents for validation")
    p.add_argument("--eos", default=None, help="document separator token (string or id); default per tokenizer")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--skip-bad-records", action="store_true", help="count and skip malformed records, don't fail")
    p.add_argument("--replace-invalid-unicode", action="store_true",
                   help="replace invalid Unicode (bad UTF-8, lone surrogates) by U+FFFD instead of failing/skipping")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stage-dir", default=None, help="with --out s3://...: local folder to build in before the "
                   "upload (default: the temporary folder; needs room for the dataset)")


def tokenize_main(args: argparse.Namespace) -> int:
    from gf_train.data import remote
    from gf_train.data.readers import DataPrepError
    from gf_train.data.tokenize import limit_tokenizer_threads, summary, tokenize_corpus

    limit_tokenizer_threads()  # --workers 1 tokenizes here: one core, like each pool worker
    run: Any = tokenize_corpus
    if remote.is_remote(args.out):  # build locally, then upload (gf_train.data.remote)
        run = functools.partial(remote.tokenize_to_remote, tokenize_corpus, stage_dir=args.stage_dir)
    try:
        m = run(args.input, args.out, args.tokenizer, args.seq_len, text_field=args.text_field,
                val_fraction=args.val_fraction, val_docs=args.val_docs, workers=args.workers,
                overwrite=args.overwrite, skip_bad_records=args.skip_bad_records, eos=args.eos,
                replace_invalid_unicode=args.replace_invalid_unicode, progress=not args.no_progress)
    except DataPrepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if m["status"] == "written":
        print(f"wrote {args.out}\n{summary(m)}")
    return 0


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="dataset folder (output of data_prep/tokenize.py) or one of its splits, local or "
                   "s3://bucket/prefix (S3_ENDPOINT_URL for S3-compatible stores)")
    p.add_argument("--split", default="train", help="split to decode samples from (default train)")
    p.add_argument("--samples", type=int, default=2, help="samples to decode (default 2)")
    p.add_argument("--chars", type=int, default=400, help="characters shown per sample (default 400)")
    p.add_argument("--cache-dir", default=None, help="with s3://: local mirror of the shards (default: "
                   "data.cache_dir's, ~/.cache/gf-train/data)")


def inspect_main(args: argparse.Namespace) -> int:
    from gf_train.data.inspect import inspect_dataset

    try:
        print(inspect_dataset(args.dir, args.split, args.samples, args.chars, cache_dir=args.cache_dir))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def add_cache_clean_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("uris", nargs="*", metavar="URI", help="s3:// datasets (roots or split folders) whose mirrors to "
                   "remove (default: every mirror)")
    p.add_argument("--cache-dir", default=None, help="the cache (default: data.cache_dir's, ~/.cache/gf-train/data)")
    p.add_argument("--stale", action="store_true", help="only versions that are no longer the dataset's current one "
                   "on the store (re-uploaded or deleted datasets); asks the store")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")


def cache_clean_main(args: argparse.Namespace) -> int:
    from gf_train.config.data import DataConfig
    from gf_train.data.cache import clean_mirrors
    from gf_train.data.remote import is_remote

    bad = [u for u in args.uris if not is_remote(u)]
    if bad:
        print(f"error: {bad[0]} is not an s3:// URI; give the dataset URI whose mirror to remove (local datasets "
              "are not cached)", file=sys.stderr)
        return 2
    try:
        clean_mirrors(args.cache_dir or DataConfig().cache_dir, args.uris, stale=args.stale, dry_run=args.dry_run)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def tokenize_script(argv: list[str] | None = None) -> int:
    """`python data_prep/tokenize.py ...`: the same flags as `gf-train data tokenize`."""
    p = argparse.ArgumentParser(prog="data_prep/tokenize.py",
                                description="raw text corpora -> MDS train/val datasets + manifest")
    add_tokenize_arguments(p)
    return tokenize_main(p.parse_args(argv))


def inspect_script(argv: list[str] | None = None) -> int:
    """`python data_prep/inspect.py DIR ...`: the same flags as `gf-train data inspect`."""
    p = argparse.ArgumentParser(prog="data_prep/inspect.py",
                                description="print a tokenized dataset's manifest and decode samples")
    add_inspect_arguments(p)
    return inspect_main(p.parse_args(argv))
