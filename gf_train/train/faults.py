"""Test-only fault hooks of the trainer, driven by environment variables read once at start-up.

Owner: `gf_train.train`. The fault and preemption tests (tests/checkpoint/test_faults.py, tests/train/,
tests/slurm/) set these variables on the launched processes; a run without them injects nothing.

- `GF_TRAIN_FAULT_NAN_STEPS="5,6"`: the loss of those 0-based optimizer steps is NaN on rank 0 (so its
  gradients are NaN too and the step is skipped by every rank).
- `GF_TRAIN_FAULT_SAVE_SLEEP=seconds`: every checkpoint save sleeps that long after writing its files and
  before the ranks agree and `COMPLETE` is written (widens the window a kill -9 test aims at).
- `GF_TRAIN_FAULT_SIGNAL_STEP=N` (+ `GF_TRAIN_FAULT_SIGNAL_RANK`, default 0): that rank sends itself SIGUSR1
  after the first backward of 0-based step N (preemption tests: the signal lands in the middle of a step).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

import torch

NAN_STEPS = "GF_TRAIN_FAULT_NAN_STEPS"
SAVE_SLEEP = "GF_TRAIN_FAULT_SAVE_SLEEP"
SIGNAL_STEP = "GF_TRAIN_FAULT_SIGNAL_STEP"
SIGNAL_RANK = "GF_TRAIN_FAULT_SIGNAL_RANK"


def _number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    """`raw` (the value of variable `name`) as an int or float; a one-line error naming the variable."""
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}; fix or unset "
                         f"it (it is a testing hook)") from None


@dataclass(frozen=True)
class FaultInjector:
    """The faults this rank injects; `from_env` reads the environment once, the trainer asks at each step."""

    nan_steps: frozenset[int] = frozenset()  # 0-based steps whose loss this rank makes NaN (rank 0 only)
    save_sleep_s: float = 0.0  # seconds every checkpoint save sleeps before the ranks agree
    signal_step: int | None = None  # the 0-based step in which this rank sends itself SIGUSR1

    @classmethod
    def from_env(cls, rank: int, env: Mapping[str, str] | None = None) -> FaultInjector:
        env = os.environ if env is None else env
        nan_steps = frozenset(int(_number(NAN_STEPS, x.strip(), int))
                              for x in env.get(NAN_STEPS, "").split(",") if x.strip())
        if rank != 0:  # one rank's NaN is enough: the gradient all-reduce spreads it to every rank
            nan_steps = frozenset()
        signal_step: int | None = None
        # the rank is only read when a signal step is set (as before the hooks had an object)
        if env.get(SIGNAL_STEP) and _number(SIGNAL_RANK, env.get(SIGNAL_RANK, "0"), int) == rank:
            signal_step = int(_number(SIGNAL_STEP, env[SIGNAL_STEP], int))
        save_sleep_s = float(_number(SAVE_SLEEP, env.get(SAVE_SLEEP, "") or "0", float))
        return cls(nan_steps, save_sleep_s, signal_step)

    def poison_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        """`loss`, made NaN in a faulty step (the backward then makes every gradient NaN)."""
        if step in self.nan_steps:
            return loss * float("nan")
        return loss

    def after_backward(self, step: int, micro: int) -> None:
        """Send this process SIGUSR1 after the first micro-batch of the signal step."""
        if step == self.signal_step and micro == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
