"""Recipe tests: make ``gf_kernels`` importable (the model package imports it) when the venv's editable
install predates pyproject's ``gf_kernels -> kernels/`` mapping, as tests/kernels/conftest.py does.

Owner: the Slurm launch (recipes/).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _alias_gf_kernels() -> None:
    if importlib.util.find_spec("gf_kernels") is not None:
        return
    root = Path(__file__).resolve().parents[2] / "kernels"
    spec = importlib.util.spec_from_file_location("gf_kernels", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gf_kernels"] = mod
    spec.loader.exec_module(mod)


_alias_gf_kernels()
