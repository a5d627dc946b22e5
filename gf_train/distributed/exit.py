"""How a gf-train process ends once it has used a torch.distributed process group: `end_process(code)`.

Why not a plain `sys.exit`: the process groups outlive `destroy_process_group()` (DeepSpeed keeps references
to them) and so do their worker threads. A gloo worker drops the last collective it ran (its tensors, whose
Python objects need the GIL to be freed) a moment *after* the caller's `wait()` returned. When that moment
falls after interpreter finalization has begun, the thread cannot take the GIL: CPython ends it with
`pthread_exit`, whose unwinding crosses a `noexcept` destructor, and `std::terminate` aborts the process
("terminate called without an active exception", SIGABRT) after a run that finished and saved. It is a race
(a core dump showed `~AsyncAllgatherWork -> TensorImpl::decref_pyobject -> take_gil -> pthread_exit` in a
gloo worker while the main thread was in `Py_FinalizeEx`); it hit ~1 in 25 two-rank CPU runs on a loaded
2-core machine (docs/benchmarks.md), and torchrun, srun and the job scheduler then report a finished run as
failed. NCCL's watchdog thread also frees finished work off the main thread. pytorch/pytorch#179291 tried to
fix this in torch and was closed.

So after a process group was used, the process ends the way a normal exit does, up to finalization (the thread
pools' exit hooks and the joins of non-daemon threads, then the `atexit` handlers: multiprocessing's children,
logging, wandb, mosaicml-streaming's shared memory), flushes stdout and stderr, and then leaves with
`os._exit`, which never finalizes the interpreter. Everything a run writes (checkpoints, metrics,
exit_status.json) is closed before this point. Processes that never created a process group exit normally.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

_used = False


def mark_process_group_used() -> None:
    """Called when this process creates a process group (`engine.init_distributed`)."""
    global _used
    _used = True


def process_group_used() -> bool:
    return _used


def end_process(code: int) -> NoReturn:
    """Exit with `code` (a command's return value); see the module docstring for what happens when a process
    group was used."""
    if not _used:
        sys.exit(code)
    # What Py_FinalizeEx does before finalizing, in its order: threading._shutdown() runs the exit hooks of
    # thread pools (concurrent.futures, inductor's compile pool: without them their idle workers never end)
    # and then joins the non-daemon threads; then the atexit handlers.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # in registration order reversed, exceptions printed, as at a normal exit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or file: nothing more can reach it
            pass
    os._exit(code)
