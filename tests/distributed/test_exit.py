"""`gf_train.distributed.exit.end_process`: after a process group, the process leaves without interpreter
finalization (where a gloo worker thread freeing its last collective aborts the process), having done what a
normal exit does before it; without one, it is `sys.exit`. The race itself is rare and timing-bound (see the
module docstring and docs/benchmarks.md "Exit after a process group"); these tests pin the mechanism."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gf_train.cli import entry
from gf_train.distributed.info import free_port

REPO = Path(__file__).resolve().parents[2]

# Writes <dir>/atexit from an atexit handler and <dir>/finalized from a finalizer that only interpreter
# finalization runs (garbage in a reference cycle), prints without a newline (buffered), then ends.
_PROGRAM = """
import atexit, sys, threading, time
from pathlib import Path
from gf_train.distributed.exit import end_process, mark_process_group_used
out = Path(sys.argv[1])
if sys.argv[2] == "group":
    mark_process_group_used()
atexit.register(lambda: (out / "atexit").write_text("ran"))
late = threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("joined")))
late.start()  # a non-daemon thread: a normal exit waits for it, so does end_process
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(1)  # left open: its idle worker ends only through threading's exit hooks
pool.submit(lambda: None).result()
class Finalized:
    def __del__(self, path=out / "finalized"):
        path.write_text("ran")
f = Finalized(); f.cycle = f; del f
sys.stdout.write("buffered output, no newline")
end_process(int(sys.argv[3]))
"""


@pytest.mark.parametrize("group", [True, False])
def test_end_process(tmp_path: Path, group: bool) -> None:
    r = subprocess.run([sys.executable, "-c", _PROGRAM, str(tmp_path), "group" if group else "none", "3"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 3, r.stderr
    assert r.stdout == "buffered output, no newline"  # flushed before os._exit
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "finalized").exists() is not group  # finalization skipped only after a process group


def test_every_entry_point_ends_through_it() -> None:
    """The console script, `python -m gf_train` and the trainer tests' stand-in all end with end_process."""
    # the installed console script (`pip install -e .` in scripts/setup_env.sh); no tomllib on Python 3.10
    assert [e.value for e in entry_points(group="console_scripts", name="gf-train")] == ["gf_train.cli:entry"]
    assert "end_process(main())" in Path(entry.__code__.co_filename).read_text()
    assert (REPO / "gf_train" / "__main__.py").read_text().strip().endswith("entry()")
    assert "end_process(main())" in (REPO / "tests" / "train" / "fakes.py").read_text()


def test_init_distributed_marks_the_process(tmp_path: Path) -> None:
    code = ("import torch\n"
            "from gf_train.distributed import exit, read_dist_info\n"
            "from gf_train.distributed.engine import init_distributed, shutdown\n"
            "assert not exit.process_group_used()\n"
            "init_distributed(read_dist_info(), torch.device('cpu'))\n"
            "shutdown()\n"
            "print(exit.process_group_used())\n")
    env = {"PATH": "/usr/bin:/bin", "MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "DS_ACCELERATOR": "cpu", "MASTER_PORT": str(free_port())}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                       env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("True"), r.stderr[-3000:]
