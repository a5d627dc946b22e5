"""What the trainer logs: `loss_avg` is the mean step loss over each logging interval (logging never changes
the training maths), and `grad_norm` is logged at ZeRO stage 0 too, equal to what DeepSpeed reports at stage 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import launch, metrics, ok


@pytest.mark.slow
def test_loss_avg_and_grad_norm_at_every_stage(tmp_path: Path) -> None:
    over = ("schedule.max_steps=6", "checkpoint.every_steps=null", "eval.every_steps=null")
    every1, every3, stage1 = tmp_path / "every1", tmp_path / "every3", tmp_path / "stage1"
    val = "data.val=[{path: fake}]"  # the fake loader's val split: 11 samples of ctx_len 16 tokens
    ok(launch(every1, *over, "dist.zero_stage=0", "log.every_steps=1", val))  # eval.max_tokens=64: 4 samples
    ok(launch(every3, *over, "dist.zero_stage=0", "log.every_steps=3"))
    res = ok(launch(stage1, *over, "dist.zero_stage=1", "log.every_steps=1", val, "eval.max_tokens=null"))
    a = {r["step"]: r for r in metrics(every1) if "loss" in r}
    b = {r["step"]: r for r in metrics(every3) if "loss" in r}
    c = {r["step"]: r for r in metrics(stage1) if "loss" in r}
    assert sorted(a) == list(range(1, 7)) and sorted(b) == [1, 3, 6]
    for s in b:  # the logging interval changes what is averaged, never the losses
        assert b[s]["loss"] == a[s]["loss"] and a[s]["loss_avg"] == a[s]["loss"]
    assert b[3]["loss_avg"] == (a[2]["loss"] + a[3]["loss"]) / 2
    assert b[6]["loss_avg"] == (a[4]["loss"] + a[5]["loss"] + a[6]["loss"]) / 3
    assert all(isinstance(r["grad_norm"], float) and r["grad_norm"] > 0 for r in a.values())  # stage 0
    # step 1: same weights and batch, so the same gradient; stage 0's norm is what DeepSpeed reports at stage 1
    assert abs(a[1]["grad_norm"] - c[1]["grad_norm"]) <= 1e-5 * c[1]["grad_norm"]
    # validation: over the budget, a fixed random subset; without one, the whole split; the log says which
    subset, = (r for r in metrics(every1) if "val_loss" in r)
    whole, = (r for r in metrics(stage1) if "val_loss" in r)
    assert (subset["val_samples"], subset["val_split_samples"], subset["val_tokens"]) == (4, 11, 64)
    assert (whole["val_samples"], whole["val_split_samples"], whole["val_tokens"]) == (11, 11, 176)
    assert "validation set: the whole val split (11 samples, 176 tokens)" in res.stderr
