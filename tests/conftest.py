"""Test environment: set before any kernel/DeepSpeed/wandb import, per-test TMPDIR, markers, GPU skip, the
order and grouping of tests under pytest-xdist.

Markers (registered in pyproject.toml): gpu (skipped without CUDA), slow, dist, slurm.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors (read at @triton.jit time)
os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed: no accelerator probing warning on CPU
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GF_POISON_OUTPUTS", "1")  # kernels fill the outputs they allocate with NaN first
if os.environ.get("PYTEST_XDIST_WORKER"):  # several workers share the cores: one compute thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip without CUDA. Under pytest-xdist (`bash scripts/test.sh` runs two workers): the
    `slurm` tests share one worker (they share the local cluster's two nodes), and the long tests go first
    (that group, then `slow`), so no worker starts a several-minute test while the other one runs dry."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: they collect, the controller schedules
        for item in items:
            if "slurm" in item.keywords:
                item.add_marker(pytest.mark.xdist_group("slurm"))
        items.sort(key=lambda it: ("slurm" not in it.keywords, "slow" not in it.keywords))  # stable
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker `gpu`)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _per_test_tmpdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private TMPDIR per test: streaming's filelocks and shm names never collide between tests. Short
    (right under pytest's basetemp, which pytest-xdist makes longer): multiprocessing puts its forkserver's
    Unix socket there, and a socket path has at most 107 bytes. Kept until pytest prunes basetemp: the
    forkserver (one per process) outlives the test that started it."""
    d = tempfile.mkdtemp(prefix="t", dir=tmp_path_factory.getbasetemp())
    monkeypatch.setenv("TMPDIR", d)
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
