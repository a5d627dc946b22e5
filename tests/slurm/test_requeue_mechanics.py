"""The launch protocol of slurm/pretrain_1p5b.sh on the local cluster, with a stand-in trainer (fast).

Owner: the Slurm launch tests. The stand-in (`fake_trainer.py`) honours the trainer's contract (gloo
rendezvous from the mapped env, resume from the newest complete checkpoint, signal -> checkpoint -> exit 75),
so these tests pin down what the scripts do (forwarding, requeue, restart count, logs, two nodes)
independently of the real trainer, which tests/slurm/test_pretrain_1p5b.py runs through the same paths.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _slurm_testing import CPU_FLAGS, REPO, Slurm, checkpoints, losses, wait_done, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.dist]
SCRIPT = REPO / "slurm" / "pretrain_1p5b.sh"
FAKE = f"{sys.executable} {REPO / 'tests' / 'slurm' / 'fake_trainer.py'}"


def _env(run_dir: Path, steps: int) -> dict[str, str]:
    return {"RECIPE": "recipes/debug_cpu.yaml", "RUN_DIR": str(run_dir), "GF_TRAIN_CMD": FAKE,
            "GF_OVERRIDES": f"schedule.max_steps={steps} checkpoint.every_steps=4", "FAKE_STEP_SECONDS": "0.3"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_usr1_checkpoints_requeues_and_resumes(slurm: Slurm, tmp_path: Path) -> None:
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = slurm.submit(SCRIPT, "--nodes=1", "--ntasks-per-node=2", *CPU_FLAGS, env=_env(ref_dir, 24))
    job = slurm.submit(SCRIPT, "--nodes=1", "--ntasks-per-node=2", *CPU_FLAGS, env=_env(run_dir, 24))
    wait_for(lambda: len(losses(run_dir)) >= 6, 120, "6 logged steps", job.log)
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job.id)], check=True, timeout=30)
    assert wait_done(job, 150) == "COMPLETED"
    assert wait_done(ref, 60) == "COMPLETED"
    log = job.log()
    assert "got SIGUSR1" in log and "requeueing job" in log, log[-3000:]
    assert "SLURM_RESTART_COUNT=1" in log, log[-3000:]
    assert int(job.info().get("Restarts", "0")) >= 1
    assert "resumed=True" in log, log[-3000:]
    # the per-job log under the run dir has both runs too
    run_log = (run_dir / "logs" / f"slurm-{job.id}.log").read_text()
    assert "SLURM_RESTART_COUNT=0" in run_log and "SLURM_RESTART_COUNT=1" in run_log
    stop_step = int(re.search(r"checkpoint at step (\d+), exit 75", log).group(1))
    assert 6 <= stop_step < 24 and stop_step in checkpoints(run_dir)
    assert losses(run_dir) == losses(ref_dir) and len(losses(ref_dir)) == 24


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_partition_preemption_requeues_and_resumes(slurm: Slurm, slurm_nodes: list[str], tmp_path: Path) -> None:
    """A job in the `high` partition that needs the CPUs of our job preempts it: Slurm sends the batch shell
    USR1 (preempt_send_user_signal), the ranks checkpoint and exit 75, the job is requeued and finishes."""
    if len(slurm_nodes) < 2:
        pytest.skip("needs 2 nodes (the reference run uses the second): GF_SLURM_NODES=2")
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    job = slurm.submit(SCRIPT, "--nodes=1", "--ntasks-per-node=2", *CPU_FLAGS, env=_env(run_dir, 24))
    ref = slurm.submit(SCRIPT, "--nodes=1", "--ntasks-per-node=2", *CPU_FLAGS, env=_env(ref_dir, 24))
    wait_for(lambda: len(losses(run_dir)) >= 6, 120, "6 logged steps", job.log)
    node = job.info()["NodeList"]
    cpus = job.info()["NumCPUs"]
    high = slurm.submit(None, "-p", "high", f"--nodelist={node}", "--nodes=1", f"--ntasks={cpus}",
                        "--cpus-per-task=1", "--gpus-per-node=0", "--time=5", "--wrap", "echo high ran on $(hostname)")
    assert wait_done(job, 180) == "COMPLETED"
    assert wait_done(high, 30) == "COMPLETED" and "high ran" in high.log()
    assert wait_done(ref, 60) == "COMPLETED"
    log = job.log()
    assert "got SIGUSR1" in log and "SLURM_RESTART_COUNT=1" in log and "resumed=True" in log, log[-3000:]
    assert losses(run_dir) == losses(ref_dir) and len(losses(ref_dir)) == 24


@pytest.mark.timeout(150)
def test_two_nodes_rendezvous_and_train(slurm: Slurm, slurm_nodes: list[str], tmp_path: Path) -> None:
    if len(slurm_nodes) < 2:
        pytest.skip("needs 2 (emulated) nodes: bring the cluster up with GF_SLURM_NODES=2 (the default)")
    run_dir = tmp_path / "run"
    job = slurm.submit(SCRIPT, "--nodes=2", "--ntasks-per-node=1", *CPU_FLAGS, env=_env(run_dir, 6))
    assert wait_done(job, 120) == "COMPLETED", job.log()[-3000:]
    log = job.log()
    assert "(2 nodes, 2 ranks)" in log
    on = set(re.findall(r"fake-trainer rank (\d)/2 on (\S+) start", log))
    assert {r for r, _ in on} == {"0", "1"} and len({n for _, n in on}) == 2, log[-3000:]
    assert sorted(losses(run_dir)) == list(range(1, 7))
