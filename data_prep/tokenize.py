"""data_prep/tokenize.py: the same as `gf-train data tokenize` (flags: `gf_train.cli.data`)."""

import os
import sys

# This folder holds files named like stdlib modules (tokenize); keep it off sys.path so that
# `import tokenize` anywhere (linecache, dataclasses, ...) gets the stdlib module, not this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root, for runs without `pip install -e .`

from gf_train.cli.data import tokenize_script  # noqa: E402

if __name__ == "__main__":
    sys.exit(tokenize_script())
