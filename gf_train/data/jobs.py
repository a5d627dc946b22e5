"""`Jobs`: the data-preparation job queue over a `multiprocessing` pool (or this process), with priorities.

`tokenize_corpus` mixes three kinds of work in one queue: pass-1 units, input hashing, and pass-2 shards,
some of which become runnable while pass 1 is still going. `Pool.imap` would hand every queued job to the
workers in submission order, so a shard that becomes ready late would wait behind all of pass 1 and then
run alone while the other workers idle. Here at most `depth` jobs are in the pool at a time (one more than
the workers, to hide the hand-over latency) and urgent jobs go first, so ready shards start at once and the
workers stay busy until the end. Results come back in completion order, tagged by the caller.
Without a pool every job runs inline, in `next()`, urgent ones first.

A pool worker that dies (killed: out of memory, most often) takes its job with it and `multiprocessing`
never reports that job, so `next()` watches the workers while it waits and raises `WorkerDied` instead
of waiting forever.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable, Hashable
from typing import Any


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


class WorkerDied(RuntimeError):
    pass


class Jobs:
    def __init__(self, pool: Any | None, workers: int, poll_s: float = 2.0) -> None:
        self.pool, self.depth, self.poll_s = pool, workers + 1, poll_s
        self.procs: list[Any] = list(getattr(pool, "_pool", []))  # the worker processes (to notice deaths)
        self.normal: collections.deque = collections.deque()
        self.urgent: collections.deque = collections.deque()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.in_flight = 0

    def add(self, tag: Hashable, fn: Callable[..., Any], args: tuple, *, urgent: bool = False) -> None:
        (self.urgent if urgent else self.normal).append((tag, fn, args))

    def __len__(self) -> int:
        """Jobs not yet returned by `next()`."""
        return len(self.normal) + len(self.urgent) + self.in_flight

    def _pop(self) -> tuple:
        return self.urgent.popleft() if self.urgent else self.normal.popleft()

    def next(self) -> tuple[Hashable, Any]:
        """(tag, result) of the next finished job; a job's exception is raised here."""
        assert len(self), "no jobs left"
        if self.pool is None:
            tag, fn, args = self._pop()
            return tag, fn(*args)
        while self.in_flight < self.depth and (self.urgent or self.normal):
            tag, fn, args = self._pop()
            self.in_flight += 1
            self.pool.apply_async(_call, (fn, args), callback=lambda r, t=tag: self.done.put((t, r, None)),
                                  error_callback=lambda e, t=tag: self.done.put((t, None, e)))
        while True:
            try:
                tag, result, err = self.done.get(timeout=self.poll_s)
                break
            except queue.Empty:
                self._check_workers()
        self.in_flight -= 1
        if err is not None:
            raise err
        return tag, result

    def _check_workers(self) -> None:
        self.procs += [p for p in getattr(self.pool, "_pool", []) if p not in self.procs]  # replacements too
        dead = [p for p in self.procs if p.exitcode not in (None, 0)]
        if dead:
            code = dead[0].exitcode
            if code in (-9, 137):  # SIGKILL: the kernel's OOM killer, most often
                raise WorkerDied(f"a worker process was killed (exit code {code}: out of memory, most often) and "
                                 "took its job with it; run again with fewer --workers, or find the input that "
                                 "needs so much memory")
            raise WorkerDied(f"a worker process exited with code {code} and took its job with it; its own error "
                             "message (printed above by the worker) says why")
