"""Helpers for trainer tests: launch training in subprocesses (single process or torchrun, gloo) and read
metrics.jsonl. `fake=True` runs tests/train/fakes.py (tiny stand-in model and loader); `fake=False` runs
the real `python -m gf_train train`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gf_train.distributed.info import free_port, launch_free_env
from tests._procs import run_group, start_group

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "train" / "tiny.yaml"


def launch(run_dir: Path, *args: str, nproc: int = 1, fake: bool = True, config: Path | None = TINY,
           env: dict[str, str | None] | None = None, timeout: float = 300, wait: bool = True,
           launcher: list[str] | None = None) -> subprocess.CompletedProcess | subprocess.Popen:
    """`launcher` replaces the whole launcher + entry prefix (e.g. the deepspeed launcher and a script)."""
    entry = [str(REPO / "tests" / "train" / "fakes.py")] if fake else ["-m", "gf_train", "train"]
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port())]
    cmd += entry
    if launcher is not None:
        cmd = list(launcher)
    cmd += (["--config", str(config)] if config else []) + ["--run-dir", str(run_dir), *args]
    e = launch_free_env()
    e.update({"PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    for k, v in (env or {}).items():  # None removes a variable
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    if not wait:
        return start_group(cmd, cwd=REPO, env=e, stderr=subprocess.STDOUT)
    return run_group(cmd, cwd=REPO, env=e, timeout=timeout)


def ok(res: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert res.returncode == code, f"exit {res.returncode} != {code}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir: Path) -> dict[int, float]:
    """step -> loss of the last line for that step (a resumed run re-logs nothing before its checkpoint)."""
    return {r["step"]: r["loss"] for r in metrics(run_dir) if "loss" in r}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
