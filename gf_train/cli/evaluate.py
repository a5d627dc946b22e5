"""`gf-train eval --model DIR|CHECKPOINT --data MDS_DIR`: loss, perplexity and bits per byte.

Owner: `gf_train.cli` (argument parsing only; the work is `gf_train.export.eval.evaluate`).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="export folder, or a run / checkpoint directory")
    parser.add_argument("--data", required=True, help="tokenized dataset (data_prep/tokenize.py --out) or a split")
    parser.add_argument("--split", default="val", help="split folder when --data is a dataset root (default val)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate only the first N samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def main(args: argparse.Namespace) -> int:
    from gf_train.export.eval import evaluate
    from gf_train.export.load import load_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    loaded = load_model(args.model)
    r = evaluate(loaded.model, args.data, args.split, args.batch_size, args.max_samples)
    if args.json:
        print(json.dumps(r.__dict__))
    else:
        bpb = "n/a (no manifest)" if r.bits_per_byte is None else f"{r.bits_per_byte:.4f}"
        print(f"split {r.split}: {r.samples} samples, {r.tokens} predicted tokens\n"
              f"loss {r.loss:.4f} nats/token  perplexity {r.perplexity:.2f}  bits per byte {bpb}")
    return 0
