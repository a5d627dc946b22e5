"""gf_train.cli: every argument parser and `main` of gf-train (the `gf-train` command, `data_prep/*.py`).

One module per subcommand (`train`, `export`, `convert`, `evaluate`, `generate`, `plot`, `data`), each with
`add_arguments(parser)` and `main(args)`; `app` holds the root parser. Library modules take typed arguments
and own no flags.
"""

from gf_train.cli.app import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
