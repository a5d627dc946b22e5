"""`gf-train config show --config R.yaml [--explain] [key=value ...]`: the resolved config of a run.

Owner: `gf_train.cli` (argument parsing only; the work is `gf_train.config.load`, `dump` and `explain`).
`--explain` prints every field with its resolved value and its one-line doc, then the settings that
would have no effect (`gf_train.config.ineffective_settings`).
"""

from __future__ import annotations

import argparse
import sys

from gf_train.cli.overrides import add_overrides_argument


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True, help="recipe YAML (repeatable, later wins)")
    parser.add_argument("--explain", action="store_true",
                        help="every field with its value and what it means, and the settings that have no effect")
    add_overrides_argument(parser)


def show_main(args: argparse.Namespace) -> int:
    from gf_train.config import dump, load

    cfg = load(args.config, args.overrides)
    if args.explain:
        from gf_train.config import explain

        sys.stdout.write(explain(cfg))
    else:
        sys.stdout.write(dump(cfg))
    return 0
