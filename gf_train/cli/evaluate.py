"""`gf-train eval --model DIR|CHECKPOINT --data MDS_DIR|s3://...`: loss, perplexity and bits per byte.

Owner: `gf_train.cli` (argument parsing only; the work is `gf_train.evaluate.evaluate`, the trainer's
validation code). The model's tokenizer must be the data's (`gf_train.tokenizer_identity`). An s3:// dataset
is read as training reads it (`gf_train.data.remote`: AWS credentials, S3_ENDPOINT_URL, shards mirrored
under --cache-dir); its manifest is read, and credential, bucket and endpoint problems reported in one
line, before the model is loaded.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="export folder, or a run / checkpoint directory")
    parser.add_argument("--data", required=True, help="tokenized dataset (data_prep/tokenize.py --out) or a split; "
                        "local or s3://bucket/prefix (S3_ENDPOINT_URL for S3-compatible stores)")
    parser.add_argument("--split", default="val", help="split folder when --data is a dataset root (default val)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="token budget: a larger split is evaluated on a fixed random subset of this many "
                             "tokens drawn with --seed, as the trainer's eval.max_tokens / dist.seed (default: all)")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the subset (the run's dist.seed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--cache-dir", default=None, help="with s3:// data: local mirror of the shards (default: "
                        "data.cache_dir's, ~/.cache/gf-train/data; shared with training)")
    parser.add_argument("--cache-limit", default=None, help="with s3:// data: most bytes the mirror may hold, "
                        "e.g. 20gb (data.cache_limit; default: no limit)")


def main(args: argparse.Namespace) -> int:
    from gf_train.config.data import StreamConfig, parse_bytes
    from gf_train.data.cache import check_cache_limit
    from gf_train.evaluate import evaluate, resolve_split
    from gf_train.export.load import load_model
    from gf_train.tokenizer_identity import check_data_tokenizer

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ValueError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    if args.cache_limit is not None:
        parse_bytes(args.cache_limit, "--cache-limit")
    split_dir, _ = resolve_split(args.data, args.split)  # checks before the model is loaded
    check_data_tokenizer(args.model, split_dir)
    check_cache_limit([StreamConfig(path=str(split_dir))], args.cache_limit, f"--data {split_dir}", "--cache-limit")
    loaded = load_model(args.model)
    r = evaluate(loaded.model, split_dir, args.split, args.batch_size, args.max_tokens, args.seed,
                 cache_dir=args.cache_dir, cache_limit=args.cache_limit)
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        bpb = "n/a (no manifest)" if r.bits_per_byte is None else f"{r.bits_per_byte:.4f}"
        print(f"split {r.split}: {r.set}; {r.samples} samples, {r.tokens} predicted tokens\n"
              f"loss {r.loss:.4f} nats/token  perplexity {r.perplexity:.2f}  bits per byte {bpb}")
    return 0
