"""`gf-train convert --from goldfinch-paper|rwkv-lm CKPT.pth --out DIR [--set key=value ...]`.

Owner: `gf_train.export` (argument parsing only; the work is `gf_train.export.convert.convert_reference`).
`--set key=value` sets ModelConfig fields the weights cannot show (e.g. `--set ctx_len=4096 --set rope=true`).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, choices=["goldfinch-paper", "rwkv-lm"],
                        help="layout of the checkpoint: recursal/GoldFinch-paper or BlinkDL/RWKV-LM x060")
    parser.add_argument("checkpoint", help="the reference .pth state dict")
    parser.add_argument("--out", required=True, help="export folder to create")
    parser.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16")
    parser.add_argument("--tokenizer", default="rwkv_world", help="tokenizer to ship (default rwkv_world)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a ModelConfig field the weights cannot show (repeatable), e.g. --set ctx_len=4096")


def main(args: argparse.Namespace) -> int:
    from gf_train.config import parse_override
    from gf_train.export.convert import convert_reference

    overrides = dict(parse_override(o.removeprefix("model.")) for o in args.overrides)
    out = convert_reference(args.source, args.checkpoint, args.out, overrides, dtype=args.dtype,
                            tokenizer=args.tokenizer or None, overwrite=args.overwrite)
    print(out)
    return 0
