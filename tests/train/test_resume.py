"""End-to-end trainer behaviour with the fake model/loader: exact resume, preemption, non-finite steps,
world-size change, config checks, wandb offline. Launches subprocesses (single process or torchrun)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.conftest import launch, losses, metrics, ok

FIELDS = {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "tokens_per_s_per_device", "mfu",
          "step_time_s", "data_wait_s", "mem_gb", "skipped_steps"}


def _straight_vs_resumed(tmp_path: Path, nproc: int, *over: str) -> tuple[dict, dict]:
    a, b = tmp_path / "straight", tmp_path / "resumed"
    ok(launch(a, *over, nproc=nproc))
    ok(launch(b, "--stop-at-step", "3", *over, nproc=nproc))
    assert json.loads((b / "exit_status.json").read_text())["reason"] == "stop_at_step"
    ok(launch(b, *over, nproc=nproc))
    return losses(a), losses(b)


@pytest.mark.slow
def test_single_process_exact_resume_metrics_and_layout(tmp_path: Path) -> None:
    over = ("dist.zero_stage=1", "log.peak_tflops=0.001", "data.val=[{path: fake}]")
    la, lb = _straight_vs_resumed(tmp_path, 1, *over)
    assert len(la) == 8 and la == lb  # bit-exact, `==` on floats
    rows = metrics(tmp_path / "straight")
    train_rows = [r for r in rows if "loss" in r]
    assert FIELDS <= set(train_rows[0]) and train_rows[0]["mfu"] > 0
    assert [r["step"] for r in rows if "val_loss" in r] == [4, 8]
    ck = tmp_path / "resumed" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step_00000004", "step_00000008"]  # keep_last=2
    step = ck / "step_00000008"
    for name in ("COMPLETE", "client_state.json", "config.yaml", "rank_00000.json", "ds"):
        assert (step / name).exists(), name
    client = json.loads((step / "client_state.json").read_text())
    assert client["step"] == 8 and client["tokens"] == 8 * 4 * 16 and "torch" in client["versions"]
    rank = json.loads((step / "rank_00000.json").read_text())
    assert {"python", "numpy", "torch"} <= set(rank["rng"]) and rank["data"] == {"consumed": 32}


@pytest.mark.slow
@pytest.mark.dist
def test_two_ranks_zero3_bf16_exact_resume(tmp_path: Path) -> None:
    la, lb = _straight_vs_resumed(tmp_path, 2, "dist.zero_stage=3", "dist.precision=bf16")
    assert len(la) == 8 and la == lb


@pytest.mark.slow
@pytest.mark.dist
def test_sigusr1_on_one_rank_checkpoints_and_requeues(tmp_path: Path) -> None:
    """Only rank 1 gets the signal; all ranks agree, save at the step boundary and exit 75."""
    straight, pre = tmp_path / "straight", tmp_path / "pre"
    ok(launch(straight, nproc=2))
    res = launch(pre, nproc=2, env={"GF_TRAIN_FAULT_SIGNAL_STEP": "4", "GF_TRAIN_FAULT_SIGNAL_RANK": "1"})
    assert res.returncode != 0  # torchrun reports a failed worker: exit code 1
    status = json.loads((pre / "exit_status.json").read_text())
    assert status == {"exit_code": 75, "reason": "preempted", "step": 5}
    assert (pre / "checkpoints" / "step_00000005" / "COMPLETE").is_file()
    ok(launch(pre, nproc=2))
    assert losses(pre) == losses(straight)


@pytest.mark.slow
def test_sigusr1_single_process_exit_code(run_dir: Path) -> None:
    ok(launch(run_dir, env={"GF_TRAIN_FAULT_SIGNAL_STEP": "1"}), 75)
    assert (run_dir / "checkpoints" / "step_00000002" / "COMPLETE").is_file()


@pytest.mark.slow
def test_nonfinite_steps_skipped_then_stop(tmp_path: Path) -> None:
    a = tmp_path / "a"
    ok(launch(a, "log.wandb=offline", env={"GF_TRAIN_FAULT_NAN_STEPS": "2", "WANDB_MODE": None}))
    rows = [r for r in metrics(a) if "loss" in r]
    assert rows[-1]["skipped_steps"] == 1 and rows[-1]["step"] == 8
    assert list((a / "wandb").glob("offline-run-*")), "wandb offline run dir missing"
    b = tmp_path / "b"
    ok(launch(b, "optim.max_nonfinite_in_row=2", env={"GF_TRAIN_FAULT_NAN_STEPS": "2,3"}), 3)
    assert (b / "checkpoints" / "step_00000004" / "COMPLETE").is_file()
    # The checkpoint holds the last good weights: resuming continues with finite losses.
    ok(launch(b, "optim.max_nonfinite_in_row=2"))
    assert all(v == v for k, v in losses(b).items() if k > 4)


@pytest.mark.slow
@pytest.mark.dist
def test_two_ranks_to_one_rank_resume_keeps_data_order(tmp_path: Path) -> None:
    a, b = tmp_path / "straight", tmp_path / "elastic"
    ok(launch(a, nproc=2))
    ok(launch(b, "--stop-at-step", "4", nproc=2))
    ok(launch(b))  # 1 rank: universal checkpoint conversion + global sample counter
    la, lb = losses(a), losses(b)
    assert (b / "checkpoints" / "step_00000004" / "ds_universal").is_dir()
    assert all(la[s] == lb[s] for s in range(1, 5))
    # Same samples in the same order; only the reduction order differs.
    assert all(abs(la[s] - lb[s]) < 2e-3 for s in range(5, 9)), (la, lb)


@pytest.mark.slow
def test_refuses_architecture_and_stage_changes(run_dir: Path) -> None:
    ok(launch(run_dir, "--stop-at-step", "2"))
    res = ok(launch(run_dir, "model.n_embd=64"), 1)
    assert "model.n_embd is 32 in the checkpoint" in res.stderr
    res = ok(launch(run_dir, "dist.zero_stage=3"), 1)
    assert "zero_stage" in res.stderr
