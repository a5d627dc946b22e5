"""Run a command that starts children of its own (torchrun and its ranks, the quickstart's launches) so that
none of them outlives the test: the command gets its own process group, and a timeout (or pytest-timeout, or
Ctrl-C) kills the whole group. `subprocess.run(timeout=...)` kills only the launcher and leaves its ranks
running into later tests, holding a port, /dev/shm segments and a core."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (it was started with `start_new_session=True`)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already
        pass


def start_group(cmd: Sequence[str], **kw: Any) -> subprocess.Popen:
    """Popen in a new session (process group = its pid), stdout and stderr captured as text."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(list(cmd), text=True, start_new_session=True, **kw)


def wait_group(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """Wait for `proc` (from `start_group`); on timeout or interruption kill its whole group, then re-raise."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as e:  # TimeoutExpired, pytest-timeout's exception, KeyboardInterrupt
        kill_group(proc)
        out, err = proc.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_group(cmd: Sequence[str], *, timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)`, but a timeout kills every
    process the command started, not only the command."""
    return wait_group(start_group(cmd, **kw), timeout)
