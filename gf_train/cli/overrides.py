"""Dotted `key.sub=value` overrides on the command line: declared once, accepted before and after flags.

Owner: `gf_train.cli`. argparse gives a `nargs="*"` positional only its first run of words, so in
`gf-train train a=1 --run-dir X b=2` the `b=2` comes back unparsed; `gather_overrides` appends such
words (in order) to `args.overrides` for the subcommands that take overrides, and leaves everything
else (unknown `--flags`, stray words) for the caller to reject.
"""

from __future__ import annotations

import argparse


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """The positional `overrides` of a subcommand that takes dotted config overrides (anywhere on the line)."""
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="dotted config overrides, e.g. schedule.max_steps=100 (before or after flags)")
    parser.set_defaults(takes_overrides=True)


def is_override(word: str) -> bool:
    """`a.b=3` is an override; `--flag`, `-x` and words without `=` are not."""
    return not word.startswith("-") and "=" in word and not word.startswith("=")


def gather_overrides(args: argparse.Namespace, unknown: list[str]) -> list[str]:
    """Move the overrides argparse left over into `args.overrides` (after the ones it parsed, in command-line
    order); return what is still unrecognized."""
    if not getattr(args, "takes_overrides", False):
        return unknown
    late = [w for w in unknown if is_override(w)]
    args.overrides = [*args.overrides, *late]
    return [w for w in unknown if not is_override(w)]
