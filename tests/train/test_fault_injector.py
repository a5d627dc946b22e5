"""`gf_train.train.faults`: the GF_TRAIN_FAULT_* testing hooks, parsed once, per rank (no DeepSpeed)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from gf_train.train.faults import FaultInjector
from gf_train.train.signals import PreemptionFlag


def test_no_variables_inject_nothing() -> None:
    faults = FaultInjector.from_env(0, {})
    assert faults == FaultInjector() and faults.save_sleep_s == 0.0
    loss = torch.tensor(2.5)
    assert faults.poison_loss(0, loss) is loss


def test_nan_steps_poison_only_those_steps_and_only_on_rank_0() -> None:
    env = {"GF_TRAIN_FAULT_NAN_STEPS": " 5, 6,,"}
    faults = FaultInjector.from_env(0, env)
    assert faults.nan_steps == {5, 6}
    assert torch.isnan(faults.poison_loss(5, torch.tensor(1.0)))
    assert torch.isnan(faults.poison_loss(6, torch.tensor(1.0)))
    assert faults.poison_loss(4, torch.tensor(1.0)).item() == 1.0
    rank1 = FaultInjector.from_env(1, env)
    assert rank1.nan_steps == frozenset() and rank1.poison_loss(5, torch.tensor(1.0)).item() == 1.0


def test_nan_loss_keeps_the_graph_so_the_gradients_are_nan() -> None:
    w = torch.ones(3, requires_grad=True)
    FaultInjector(nan_steps=frozenset({0})).poison_loss(0, (w * 2).sum()).backward()
    assert w.grad is not None and torch.isnan(w.grad).all()


def test_signal_step_belongs_to_the_named_rank_default_0() -> None:
    assert FaultInjector.from_env(0, {"GF_TRAIN_FAULT_SIGNAL_STEP": "4"}).signal_step == 4
    assert FaultInjector.from_env(1, {"GF_TRAIN_FAULT_SIGNAL_STEP": "4"}).signal_step is None
    env = {"GF_TRAIN_FAULT_SIGNAL_STEP": "4", "GF_TRAIN_FAULT_SIGNAL_RANK": "1"}
    assert FaultInjector.from_env(0, env).signal_step is None
    assert FaultInjector.from_env(1, env).signal_step == 4
    # without a step the rank variable is not read at all (as before the hooks had an object)
    assert FaultInjector.from_env(0, {"GF_TRAIN_FAULT_SIGNAL_RANK": "x"}).signal_step is None


def test_after_backward_signals_once_in_the_first_micro_batch_of_the_step() -> None:
    faults = FaultInjector(signal_step=2)
    flag = PreemptionFlag().install()
    try:
        faults.after_backward(1, 0)
        faults.after_backward(2, 1)
        assert not flag.is_set
        faults.after_backward(2, 0)
        assert flag.is_set and flag.signum == signal.SIGUSR1
    finally:
        flag.uninstall()


def test_save_sleep_is_read_once_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GF_TRAIN_FAULT_SAVE_SLEEP", "0.4")
    faults = FaultInjector.from_env(0)  # os.environ
    monkeypatch.setenv("GF_TRAIN_FAULT_SAVE_SLEEP", "9")
    assert faults.save_sleep_s == 0.4
    assert FaultInjector.from_env(0, {"GF_TRAIN_FAULT_SAVE_SLEEP": ""}).save_sleep_s == 0.0
    assert "GF_TRAIN_FAULT_SAVE_SLEEP" in os.environ  # the injector never writes the environment


@pytest.mark.parametrize(("name", "value"), [("GF_TRAIN_FAULT_NAN_STEPS", "5,x"),
                                             ("GF_TRAIN_FAULT_SAVE_SLEEP", "soon"),
                                             ("GF_TRAIN_FAULT_SIGNAL_STEP", "1.5"),
                                             ("GF_TRAIN_FAULT_SIGNAL_RANK", "one")])
def test_a_bad_value_is_a_one_line_error_naming_the_variable(name: str, value: str) -> None:
    env = {"GF_TRAIN_FAULT_SIGNAL_STEP": "3", name: value}
    with pytest.raises(ValueError, match=f"^{name}=.* is not a.*; fix or unset it") as e:
        FaultInjector.from_env(0, env)
    assert "\n" not in str(e.value)


def test_the_trainer_reads_the_hooks_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gf_train.config import RunConfig
    from gf_train.train.loop import train

    monkeypatch.setenv("GF_TRAIN_FAULT_NAN_STEPS", "two")
    cfg = RunConfig()
    cfg.schedule.max_steps = 1
    with pytest.raises(ValueError, match="GF_TRAIN_FAULT_NAN_STEPS='two' is not an integer"):
        train(cfg, tmp_path / "run", loader_factory=lambda *a: [])
    assert not (tmp_path / "run").exists()  # failed before creating anything or starting torch.distributed
