"""Packaging: every package folder is listed in pyproject.toml, and `gf_kernels` imports from the install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def _declared() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared() -> None:
    found = set()
    for root, import_root in (("gf_train", "gf_train"), ("kernels", "gf_kernels")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root).parts
            found.add(".".join((import_root, *rel)))
    missing = found - _declared()
    assert not missing, f"add these packages to [tool.setuptools].packages in pyproject.toml: {sorted(missing)}"


def test_gf_kernels_imports_outside_the_checkout(tmp_path: Path) -> None:
    # Run from an unrelated folder so the checkout is not on sys.path: only the installed mapping counts.
    r = subprocess.run([sys.executable, "-c", "import gf_kernels, gf_train; print(gf_kernels.wkv6.__name__)"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wkv6" in r.stdout


def test_cpu_machine_keeps_the_cpu_torch_build() -> None:
    """The install recipe must not swap in a multi-GB CUDA torch on a machine without a GPU."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine: any build that sees the GPU is right")
    assert torch.version.cuda is None, f"CUDA build of torch installed on a CPU machine: {torch.__version__}"
