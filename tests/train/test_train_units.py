"""Pure parts of the trainer: config checks, metrics, signals (checkpoint units: tests/checkpoint/, DistInfo:
tests/distributed/)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from gf_train.config import RunConfig
from gf_train.train.metrics import MetricsSink, mfu, peak_tflops
from gf_train.train.signals import PreemptionFlag


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


def test_trainer_warns_once_about_ineffective_settings_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from gf_train.train.loop import train

    real = importlib.util.find_spec
    # A missing wandb stops train() at its first check: anything printed before is printed before any work.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = RunConfig()
    cfg.schedule.max_steps, cfg.schedule.warmup_steps, cfg.checkpoint.every_steps = 4, 4, 5
    cfg.log.wandb = "offline"
    with pytest.raises(ValueError, match="needs the wandb package"):
        train(cfg, tmp_path / "run")
    err = capsys.readouterr().err
    assert err.count("gf-train: warning:") == 2, err
    assert "schedule.warmup_steps=4 >= the run's 4 steps" in err and "checkpoint.every_steps=5 is past the end" in err
    assert not (tmp_path / "run").exists()
