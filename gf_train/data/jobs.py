"""`Jobs`: the data-preparation job queue over a `multiprocessing` pool (or this process), with priorities.

`tokenize_corpus` mixes three kinds of work in one queue: pass-1 units, input hashing, and pass-2 shards,
some of which become runnable while pass 1 is still going. `Pool.imap` would hand every queued job to the
workers in submission order, so a shard that becomes ready late would wait behind all of pass 1 and then
run alone while the other workers idle. Here at most `depth` jobs are in the pool at a time (one more than
the workers, to hide the hand-over latency) and urgent jobs go first, so ready shards start at once and the
workers stay busy until the end. Results come back in completion order, tagged by the caller.
Without a pool every job runs inline, in `next()`, urgent ones first.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable, Hashable
from typing import Any


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


class Jobs:
    def __init__(self, pool: Any | None, workers: int) -> None:
        self.pool, self.depth = pool, workers + 1
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
        tag, result, err = self.done.get()
        self.in_flight -= 1
        if err is not None:
            raise err
        return tag, result
