"""A consumer virtual environment for the export tests that need another package set than the suite's:
a venv that sees this environment's packages (torch, numpy, ...) through a .pth file at the end of its
path, with `requirement` installed into it (its own packages come first). Used by test_lm_eval.py
(lm_eval next to this transformers) and test_hf_other_transformers.py (the other transformers major)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def build_consumer_venv(venv: Path, requirement: str, timeout: float) -> tuple[Path, subprocess.CompletedProcess]:
    """(the venv's python, pip's result); the caller decides whether a failed install skips or fails."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "zz_base_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --no-compile: pip byte-compiles every installed module by default (transformers, scipy, scikit-learn:
    # thousands of files, tens of CPU seconds on CI's 2 cores); Python compiles the few the tests import
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                          requirement], capture_output=True, text=True, timeout=timeout)
    return py, res
