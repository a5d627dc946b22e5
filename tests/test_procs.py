"""tests/_procs.py, the helper every multi-process test launches through: a timeout kills the whole tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests._procs import run_group

# A launcher stand-in: starts a child that would run for 5 minutes, prints its pid, then waits for it.
_TREE = ("import subprocess, sys\n"
         "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
         "print(c.pid, flush=True)\n"
         "c.wait()\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child of the launcher is reparented and reaped by init; until then it is a zombie
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_a_timeout_kills_the_children_too() -> None:
    with pytest.raises(subprocess.TimeoutExpired) as e:
        run_group([sys.executable, "-c", _TREE], timeout=3)
    child = int(e.value.stdout.split()[0])  # what the launcher printed comes back with the timeout
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_result_like_subprocess_run() -> None:
    r = run_group([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                  timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
