"""`gf-train plot RUN_DIR [--out PNG]`: loss, lr, tokens/s and MFU against step from metrics.jsonl.

Owner: `gf_train.cli` (argument parsing only; the work is `gf_train.train.plot.plot_metrics`).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run directory holding metrics.jsonl (or the file itself)")
    parser.add_argument("--out", default=None, help="PNG path (default RUN_DIR/metrics.png)")


def main(args: argparse.Namespace) -> int:
    from gf_train.train.plot import plot_metrics

    path = plot_metrics(args.run_dir, args.out)
    print(path)
    return 0
