"""Fixtures for the `slurm` tests: a reachable local cluster (else skip, saying why) and one test session at a
time on it; a per-test `Slurm` that cancels what it submitted.

Owner: the Slurm launch tests. The cluster is brought up by `bash scripts/ci/slurm_local.sh up` (CI does this
before the tests); these fixtures never start or stop it.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _slurm_testing import LOCK, Slurm, cluster_nodes


@pytest.fixture(scope="session")
def slurm_nodes() -> Iterator[list[str]]:
    """The cluster's usable nodes; skips when there is no cluster. Holds a lock so that two test sessions
    on one machine do not preempt or starve each other's jobs."""
    nodes, why = cluster_nodes()
    if not nodes:
        pytest.skip(why)
    with LOCK.open("w") as fh:
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another test session has held {LOCK} for 15 minutes")
                time.sleep(1)
        yield nodes


@pytest.fixture
def slurm(slurm_nodes: list[str], tmp_path: Path) -> Iterator[Slurm]:
    s = Slurm(tmp_path)
    try:
        yield s
    finally:
        s.cancel_all()
