"""Helpers for the `slurm` tests: find the local cluster, submit THE scripts users submit, watch the jobs,
read a run's losses and checkpoints.

Owner: the Slurm launch tests (fixtures in conftest.py). Imported by file name, like the other test helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = Path("/tmp/gf-train-slurm-tests.lock")
# sbatch flags that turn the 8-GPU defaults of slurm/*.sh into the CI shape: CPU ranks (gloo), no GPUs.
CPU_FLAGS = ("--gpus-per-node=0", "--cpus-per-task=1", "--time=20", "--mem=0")


def _run(cmd: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)


def cluster_nodes() -> tuple[list[str], str]:
    """Idle-able nodes of the default partition, or ([], why not)."""
    if shutil.which("sinfo") is None:
        return [], "sinfo not found: no local Slurm cluster (as root: bash scripts/ci/slurm_local.sh up)"
    try:
        out = _run(["sinfo", "-h", "-N", "-o", "%N %T"], timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return [], "sinfo timed out: slurmctld not answering (bash scripts/ci/slurm_local.sh up)"
    if out.returncode != 0:
        return [], f"sinfo failed: {out.stderr.strip()[:200]} (bash scripts/ci/slurm_local.sh up)"
    nodes = sorted({ln.split()[0] for ln in out.stdout.splitlines()
                    if ln.split()[-1].rstrip("*~#") in ("idle", "mixed", "allocated", "completing")})
    if not nodes:
        return [], f"no usable Slurm node: {out.stdout.strip()[:200]}"
    return nodes, ""


@dataclass
class Job:
    id: int
    out: Path  # Slurm's output file

    def info(self) -> dict[str, str]:
        r = _run(["scontrol", "show", "job", "-o", str(self.id)], check=False)
        info: dict[str, str] = {}
        for tok in r.stdout.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                info.setdefault(k, v)
        return info

    def state(self) -> str:
        return self.info().get("JobState", "GONE")

    def log(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""


@dataclass
class Slurm:
    """Submits scripts and waits on jobs; cancels whatever it submitted when the test ends."""

    tmp: Path
    jobs: list[Job] = field(default_factory=list)

    def submit(self, script: str | Path | None, *flags: str, env: dict[str, str] | None = None,
               args: tuple[str, ...] = ()) -> Job:
        """sbatch SCRIPT (None: the flags carry --wrap) with `env` added to this environment."""
        name = f"{Path(script).stem if script else 'wrap'}-{len(self.jobs)}"
        out = self.tmp / f"{name}-%j.out"
        full_env = {**os.environ, **(env or {})}
        cmd = ["sbatch", "--parsable", f"--output={out}", *flags, *([str(script)] if script else []), *args]
        r = _run(cmd, env=full_env,
                 check=False, cwd=REPO)
        assert r.returncode == 0, f"sbatch failed: {r.stderr}"
        jid = int(r.stdout.strip().split(";")[0])
        job = Job(jid, Path(str(out).replace("%j", str(jid))))
        self.jobs.append(job)
        return job

    def cancel_all(self) -> None:
        ids = [str(j.id) for j in self.jobs]
        if ids:
            _run(["scancel", *ids], check=False)


def wait_for(pred: Callable[[], object], timeout: float, what: str, context: Callable[[], str] = lambda: "",
             poll: float = 0.5) -> object:
    """Poll `pred` until it returns something truthy; fail with `what` and `context()` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{context()}")
        time.sleep(poll)


def wait_done(job: Job, timeout: float) -> str:
    """Wait until the job has left the queue for good; return its final state."""
    final = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "GONE")
    state = wait_for(lambda: (s := job.state()) in final and s, timeout, f"job {job.id} to finish",
                     lambda: f"state {job.state()}\n--- job log ---\n{job.log()[-4000:]}")
    return str(state)


def losses(run_dir: Path) -> dict[int, float]:
    """step -> loss from RUN_DIR/metrics.jsonl (the last record of a step wins: a resumed run may log again)."""
    out: dict[int, float] = {}
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "loss" in rec and "step" in rec:
            out[int(rec["step"])] = float(rec["loss"])
    return out


def checkpoints(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in a run dir (directories step_N holding a COMPLETE marker)."""
    return sorted(int(p.parent.name.split("_")[-1]) for p in run_dir.rglob("step_*/COMPLETE"))
