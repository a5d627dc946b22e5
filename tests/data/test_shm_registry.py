"""Streaming's shm registry with several jobs on one node (`gf_train.data.compat.registry_lock`): datasets
are registered one job at a time, so jobs that start together never pick the same segment prefix."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_helpers import corpus_docs, write_jsonl

from gf_train.data.compat import REGISTRY_LOCK, registry_lock
from gf_train.data.tokenize import tokenize_corpus
from gf_train.distributed.info import free_port, launch_free_env
from tests._procs import kill_group, start_group, wait_group

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="streaming's registry lives in /dev/shm")

# One job of 2 ranks (torch.distributed.run, gloo): opens and closes `n` datasets of the split on every rank,
# reads each once; every rank prints "ok" when every one worked. Streaming's registration has barriers
# between its scan and its registry entry, so jobs that start together overlap there.
_JOB = """
import sys
import torch.distributed as dist
from gf_train.data import open_split
split, n = sys.argv[1], int(sys.argv[2])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
for _ in range(n):
    with open_split([split], 16, world_size=world, rank=rank) as src:
        src.sample(0)
dist.barrier()
print("ok", flush=True)
"""


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("reg")
    inp = write_jsonl(d / "c.jsonl", corpus_docs(60))
    tokenize_corpus([str(inp)], d / "ds", "rwkv_world", 16, progress=False, log=lambda s: 0)
    return d / "ds" / "train"


def _env() -> dict[str, str]:
    return {**launch_free_env(), "PYTHONPATH": str(HERE.parents[1]), "OMP_NUM_THREADS": "1"}


def _job(split: Path, n: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), "--no-python", sys.executable, "-c", _JOB, str(split), str(n)]
    return start_group(cmd, env=_env())


@pytest.mark.slow
def test_a_dataset_is_registered_only_under_the_lock(split: Path) -> None:
    with registry_lock():  # another job registering (or cleaning) right now
        job = _job(split, 1)
        time.sleep(10)  # imports and rendezvous take ~5 s; the job then waits for the lock
        assert job.poll() is None, job.communicate()
    res = wait_group(job, timeout=120)
    assert res.returncode == 0 and res.stdout.count("ok") == 2, res.stderr[-3000:]


def test_lock_wait_has_a_deadline_and_names_the_lock(tmp_path: Path) -> None:
    code = ("from gf_train.data.compat import registry_lock\n"
            f"with registry_lock({str(tmp_path)!r}, timeout_s=0.5): pass\n")
    with registry_lock(str(tmp_path)):
        r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and str(tmp_path / REGISTRY_LOCK) in r.stderr and "fuser" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr  # released when its holder let go


@pytest.mark.slow
def test_jobs_that_start_together_never_share_a_prefix(split: Path) -> None:
    """Without the lock, two of these jobs now and then pick the same prefix: the later one's
    `<prefix>_locals` exists already (FileExistsError), or it shares the other's barrier and hangs."""
    jobs = [_job(split, 12) for _ in range(3)]
    try:
        for job in jobs:
            try:
                res = wait_group(job, timeout=240)
            except subprocess.TimeoutExpired:
                pytest.fail("a job hung (two jobs share a registry entry?)")
            first = [ln for ln in res.stderr.splitlines() if "Error" in ln and "Connection closed" not in ln][:5]
            assert res.returncode == 0 and res.stdout.count("ok") == 2, \
                "\n".join(first) + "\n" + res.stderr[-3000:]
    finally:
        for j in jobs:
            if j.returncode is None:  # still running: a failed check above left it
                kill_group(j)
