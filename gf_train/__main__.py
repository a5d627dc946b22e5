"""`python -m gf_train` is the `gf-train` command."""

import sys

from gf_train.cli import main

sys.exit(main())
