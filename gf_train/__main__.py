"""`python -m gf_train` is the `gf-train` command."""

from gf_train.cli import entry

entry()
