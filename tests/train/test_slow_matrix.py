"""The big matrix (slow): exact resume for ZeRO 1/2/3 x bf16 on/off x 1/2 ranks, and kill -9 trials
(including in the middle of writing a checkpoint) followed by the same command: same final loss."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from tests.train.conftest import launch, losses, ok


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize("nproc", [1, 2])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_exact_resume_matrix(tmp_path: Path, stage: int, precision: str, nproc: int) -> None:
    if (stage, precision, nproc) == (3, "bf16", 2):
        pytest.skip("covered by tests/train/test_resume.py::test_two_ranks_zero3_bf16_exact_resume")
    over = (f"dist.zero_stage={stage}", f"dist.precision={precision}", "schedule.max_steps=6",
            "checkpoint.every_steps=null")
    a, b = tmp_path / "a", tmp_path / "b"
    ok(launch(a, *over, nproc=nproc))
    ok(launch(b, "--stop-at-step", "3", *over, nproc=nproc))
    ok(launch(b, *over, nproc=nproc))
    assert len(losses(a)) == 6 and losses(a) == losses(b)


@pytest.mark.slow
def test_kill9_anywhere_then_rerun(tmp_path: Path) -> None:
    """Slow steps and slow saves (testing hooks) so that random kills land mid-step and mid-save."""
    over = ("schedule.max_steps=12", "checkpoint.every_steps=2", "checkpoint.keep_last=2")
    straight = tmp_path / "straight"
    ok(launch(straight, *over))
    want = losses(straight)[12]
    rng = random.Random(1234)
    env = {"GF_TRAIN_FAULT_SAVE_SLEEP": "0.5"}
    for trial in range(3):
        run = tmp_path / f"trial{trial}"
        for _ in range(2):  # two kills per trial, each at a random time
            p = launch(run, *over, env=env, wait=False)
            time.sleep(rng.uniform(4.0, 7.0))
            p.send_signal(signal.SIGKILL)
            p.wait()
        ok(launch(run, *over))
        assert losses(run)[12] == want
        ck = run / "checkpoints"
        assert (ck / "step_00000012" / "COMPLETE").is_file()
        assert len([d for d in ck.iterdir() if (d / "COMPLETE").is_file()]) == 2
