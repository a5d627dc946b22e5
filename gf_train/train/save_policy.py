"""When the trainer writes a checkpoint, and why: the save policy.

Owner: `gf_train.train`. After every optimizer step the loop asks `SavePolicy.reason(...)` once; the
answer is None (no save) or the one `SaveReason` that wins, in this order:

1. `NONFINITE`: `optim.max_nonfinite_in_row` skipped steps in a row; the checkpoint holds the last good
   weights and the trainer then exits with EXIT_NONFINITE.
2. `PREEMPTED`: SIGUSR1/SIGTERM arrived on some rank; save, then exit with EXIT_REQUEUE.
3. `FINAL`: the last step (`max_steps`) with `checkpoint.save_final`.
4. `STOP_AT_STEP`: `--stop-at-step` reached (the trainer then exits with EXIT_OK).
5. `INTERVAL`: `checkpoint.every_steps` divides the step.
6. `TIMED`: `checkpoint.every_minutes` have passed since the last save (or since the loop started). Only
   rank 0's clock counts: the ranks learn it through the step's all-reduce (`gf_train.train.step`), so
   they all save the same step.

The policy holds no state beyond the time of the last save (`restart_clock()` sets it).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from gf_train.config import RunConfig


class SaveReason(enum.Enum):
    NONFINITE = "nonfinite"
    PREEMPTED = "preempted"
    FINAL = "final"
    STOP_AT_STEP = "stop_at_step"
    INTERVAL = "interval"
    TIMED = "timed"


class SavePolicy:
    """Interval, timed, final, stop and preemption saves of one run (steps count completed steps)."""

    def __init__(self, *, max_steps: int, every_steps: int | None = None, every_minutes: float | None = None,
                 save_final: bool = True, stop_at_step: int | None = None, keeps_time: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_steps, self.every_steps, self.every_minutes = max_steps, every_steps, every_minutes
        self.save_final, self.stop_at_step = save_final, stop_at_step
        self.keeps_time = keeps_time  # rank 0 only: one clock decides timed saves for every rank
        self._clock = clock
        self._last_save = clock()

    @classmethod
    def for_run(cls, cfg: RunConfig, max_steps: int, stop_at_step: int | None, is_main: bool) -> SavePolicy:
        ckpt = cfg.checkpoint
        return cls(max_steps=max_steps, every_steps=ckpt.every_steps, every_minutes=ckpt.every_minutes,
                   save_final=ckpt.save_final, stop_at_step=stop_at_step, keeps_time=is_main)

    def restart_clock(self) -> None:
        """The loop starts, or a checkpoint was written now: timed saves count from here."""
        self._last_save = self._clock()

    def timed_save_due(self) -> bool:
        """This rank's vote for a timed save (always False off rank 0); the step's all-reduce shares it."""
        return self.keeps_time and self.every_minutes is not None and \
            self._clock() - self._last_save >= 60 * self.every_minutes

    def stops_at(self, step: int) -> bool:
        """`--stop-at-step` is reached after `step` completed steps."""
        return self.stop_at_step is not None and step >= self.stop_at_step

    def reason(self, step: int, *, nonfinite_stop: bool = False, preempted: bool = False,
               timed_save_due: bool = False) -> SaveReason | None:
        """Save now (after `step` completed steps)? The reason, or None. The flags are the ones every rank
        agreed on (`StepResult`), so every rank gets the same answer."""
        if nonfinite_stop:
            return SaveReason.NONFINITE
        if preempted:
            return SaveReason.PREEMPTED
        if step == self.max_steps and self.save_final:
            return SaveReason.FINAL
        if self.stops_at(step):
            return SaveReason.STOP_AT_STEP
        if self.every_steps and step % self.every_steps == 0:
            return SaveReason.INTERVAL
        if timed_save_due:
            return SaveReason.TIMED
        return None
