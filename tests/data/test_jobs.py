"""gf_train.data.jobs (the pass-job queue) and the zstd thread-count invariance pass 2 relies on."""

from __future__ import annotations

import multiprocessing as mp
import operator
import os
import signal

import numpy as np
import pytest

from gf_train.data.jobs import Jobs, WorkerDied


def test_inline_jobs_run_urgent_first_and_raise() -> None:
    jobs = Jobs(None, 1)
    for i in range(3):
        jobs.add(("n", i), operator.add, (i, 10))
    jobs.add(("u", 0), operator.mul, (2, 3), urgent=True)
    assert jobs.next() == (("u", 0), 6)
    jobs.add(("u", 1), operator.mul, (4, 3), urgent=True)  # added while normal jobs wait: still first
    got = [jobs.next() for _ in range(len(jobs))]
    assert got == [(("u", 1), 12), (("n", 0), 10), (("n", 1), 11), (("n", 2), 12)] and len(jobs) == 0
    jobs.add("bad", operator.truediv, (1, 0))
    with pytest.raises(ZeroDivisionError):
        jobs.next()


def test_pool_jobs_return_every_result_and_raise() -> None:
    with mp.get_context("forkserver").Pool(2) as pool:
        jobs = Jobs(pool, 2)
        for i in range(20):
            jobs.add(i, operator.mul, (i, i), urgent=i % 3 == 0)
        got = dict(jobs.next() for _ in range(20))
        assert got == {i: i * i for i in range(20)} and len(jobs) == 0
        jobs.add("bad", operator.truediv, (1, 0))
        with pytest.raises(ZeroDivisionError):
            jobs.next()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does


def test_a_dead_worker_is_an_error_not_a_hang() -> None:
    with mp.get_context("forkserver").Pool(2) as pool:
        jobs = Jobs(pool, 2, poll_s=0.2)
        jobs.add("ok", operator.add, (1, 2))
        jobs.add("dies", _die, ())
        got = []
        with pytest.raises(WorkerDied, match="killed \\(exit code -9: out of memory.*fewer --workers"):
            for _ in range(2):
                got.append(jobs.next())
        assert got in ([], [("ok", 3)])


def _exit_3() -> None:
    os._exit(3)  # a worker that ends itself (a crash in a C extension, a sys.exit in user code)


def test_a_worker_that_exits_is_not_called_out_of_memory() -> None:
    with mp.get_context("forkserver").Pool(2) as pool:
        jobs = Jobs(pool, 2, poll_s=0.2)
        jobs.add("exits", _exit_3, ())
        with pytest.raises(WorkerDied, match="exited with code 3 .*printed above by the worker") as e:
            jobs.next()
        assert "memory" not in str(e.value)


def test_zstd_bytes_do_not_depend_on_threads() -> None:
    """pass 2 compresses its last shards with several threads; MDSWriter calls zstd.compress(data, 3)."""
    import zstd

    rng = np.random.default_rng(0)
    # 24 MB of token-like data (a Zipf-ish vocabulary): several of zstd's multi-threading jobs
    data = np.minimum(rng.zipf(1.3, 12 << 20), 65535).astype(np.uint16).tobytes()
    ref = zstd.compress(data, 3)
    for threads in (1, 2, 4):
        assert zstd.compress(data, 3, threads) == ref, threads


def test_span_of_is_the_covering_units_only() -> None:
    """A pass-2 job gets only the units that hold its tokens (a corpus has ~500 units per GB)."""
    import itertools
    import random

    from gf_train.data.pack import span_of

    rng = random.Random(0)
    tokens = [rng.choice([0, 0, 1, 5, 40, 100]) for _ in range(300)]
    cum = [0, *itertools.accumulate(tokens)]
    for _ in range(2000):
        t0 = rng.randrange(cum[-1])
        t1 = rng.randrange(t0 + 1, cum[-1] + 1)
        first, base, ut = span_of(cum, t0, t1)
        assert base == cum[first] <= t0 and base + sum(ut) >= t1 and ut == tokens[first: first + len(ut)]
        assert cum[first + 1] > t0 or tokens[first] == 0  # no unit that ends before t0, except an empty one
        assert cum[first + len(ut) - 1] < t1  # no unit that starts at or after t1
