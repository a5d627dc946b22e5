"""Test environment: set before any kernel/DeepSpeed/wandb import, per-test TMPDIR, markers, GPU skip.

Markers (registered in pyproject.toml): gpu (skipped without CUDA), slow, dist, slurm.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors (read at @triton.jit time)
os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed: no accelerator probing warning on CPU
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GF_POISON_OUTPUTS", "1")  # kernels fill the outputs they allocate with NaN first

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker `gpu`)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _per_test_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private TMPDIR per test: streaming's filelocks and shm names never collide between tests."""
    d = tmp_path / "tmpdir"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", None)


@pytest.fixture(autouse=True)
def _restore_environ() -> object:
    """Undo what a test (or library code it calls, e.g. the data loader filling in RANK/LOCAL_WORLD_SIZE for
    a single process) wrote into os.environ, so no launch variable leaks into later tests' subprocesses."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def repo_root() -> Path:
    return REPO
