"""data_prep/tokenize.py: thin command line over `gf_train.data.tokenize` (the same as `gf-train data tokenize`)."""

import os
import sys

# This folder holds files named like stdlib modules (tokenize); keep it off sys.path so that
# `import tokenize` anywhere (linecache, dataclasses, ...) gets the stdlib module, not this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root, for runs without `pip install -e .`

import argparse  # noqa: E402

from gf_train.data import tokenize as _lib  # noqa: E402


def _main() -> int:
    parser = argparse.ArgumentParser(prog="data_prep/tokenize.py", description=_lib.__doc__.splitlines()[0])
    _lib.add_arguments(parser)
    return _lib.main(parser.parse_args())


if __name__ == "__main__":
    sys.exit(_main())
