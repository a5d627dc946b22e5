"""`gf-train export --checkpoint RUN_DIR[/checkpoints/step_N] --out DIR [--dtype bf16|fp16|fp32] [--overwrite]`.

Owner: `gf_train.cli` (argument parsing only; the work is `gf_train.export.export.export_checkpoint`).
"""

from __future__ import annotations

import argparse

# The weight dtypes an export can hold (`gf_train.export.hf_dir.DTYPES`; tests/cli keeps the two equal).
DTYPES = ("bf16", "fp32", "fp16")


def _size(text: str) -> int:
    """`5GB`, `200MB`, `4096` (bytes) -> bytes."""
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "B": 1}
    t = text.strip().upper()
    for u, mult in units.items():
        if t.endswith(u) and t[: -len(u)].strip().replace(".", "", 1).isdigit():
            return int(float(t[: -len(u)]) * mult)
    if t.isdigit():
        return int(t)
    raise argparse.ArgumentTypeError(f"size {text!r} is not like 5GB, 200MB or 4096")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="run directory (newest complete checkpoint) or a checkpoints/step_XXXXXXXX directory")
    parser.add_argument("--out", required=True, help="export folder to create")
    parser.add_argument("--dtype", default="bf16", choices=DTYPES, help="weight dtype in the export (default bf16)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--max-shard-size", type=_size, default="5GB",
                        help="split model.safetensors into shards + index past this size (default 5GB)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer spec to ship (default: the one in the training data's manifest)")


def main(args: argparse.Namespace) -> int:
    from gf_train.export.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, dtype=args.dtype, overwrite=args.overwrite,
                            max_shard_bytes=args.max_shard_size, tokenizer=args.tokenizer)
    print(out)
    return 0
