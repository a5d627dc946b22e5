"""Pure parts of the trainer: DistInfo, metrics, signals (checkpoint units: tests/checkpoint/)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from gf_train.config import RunConfig
from gf_train.distributed.info import parse_tasks_per_node, read_dist_info
from gf_train.train.metrics import MetricsSink, mfu, peak_tflops
from gf_train.train.signals import EXIT_REQUEUE, PreemptionFlag


def test_dist_info_torchrun_env() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h",
           "MASTER_PORT": "1234"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.local_rank, i.local_world_size, i.launcher) == (3, 8, 1, 2, "torchrun")
    assert i.node_rank == 1


def test_dist_info_deepspeed_launcher_env() -> None:
    # deepspeed.launcher.launch sets RANK/LOCAL_RANK/WORLD_SIZE and LOCAL_SIZE (not LOCAL_WORLD_SIZE)
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_SIZE": "4", "CROSS_RANK": "1",
           "CROSS_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "29500"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.local_rank, i.local_world_size, i.node_rank) == (5, 8, 1, 4, 1)
    assert env["LOCAL_WORLD_SIZE"] == "4"


def test_dist_info_slurm_env_is_mapped() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_NODELIST": "gpu07", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "8"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.local_rank, i.local_world_size, i.launcher) == (5, 8, 1, 4, "slurm")
    assert i.master_addr == "gpu07" and i.master_port == 10000 + 4242
    assert env["RANK"] == "5" and env["WORLD_SIZE"] == "8" and env["LOCAL_WORLD_SIZE"] == "4"


def test_dist_info_single_and_batch_script() -> None:
    # An sbatch script without srun has SLURM_PROCID but no step variables: a single process.
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.launcher) == (0, 1, "single") and int(env["MASTER_PORT"]) > 0
    assert parse_tasks_per_node("4(x2),3", 2) == 3
    with pytest.raises(ValueError, match="inconsistent"):
        read_dist_info({"RANK": "2", "WORLD_SIZE": "2"})


def test_metrics_math_and_sink(tmp_path: Path) -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-40GB", "fp32") == 156.0
    assert peak_tflops("cpu", "bf16") is None and peak_tflops("cpu", "bf16", 1.5) == 1.5
    assert mfu(6e9, 1000.0, 12.0) == pytest.approx(0.5)
    sink = MetricsSink(tmp_path, True, 10, 0, progress_bar=True)
    sink.log({"step": 1, "loss": 2.5})
    sink.progress(1, 2.5)
    sink.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5}


def test_preemption_flag_only_sets_a_flag() -> None:
    flag = PreemptionFlag().install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.is_set and flag.describe() == "SIGUSR1"
    finally:
        flag.uninstall()
    assert EXIT_REQUEUE == 75


def test_missing_wandb_is_a_clear_error_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    import importlib.util

    from gf_train.train.loop import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = RunConfig()
    cfg.schedule.max_steps = 1
    cfg.log.wandb = "offline"
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"log.wandb=offline needs the wandb package.*pip install wandb.*"
                                         r"log.wandb=disabled"):
        train(cfg, run_dir)
    assert not run_dir.exists()  # failed before creating anything or starting torch.distributed
    from gf_train.train.wandb_sink import check_available

    check_available("disabled")  # never looks for the package
