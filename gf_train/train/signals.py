"""Preemption signals and exit codes.

Owner: `gf_train.train`. SIGUSR1 and SIGTERM only set a flag (`PreemptionFlag`); the trainer reads it at
the next optimizer-step boundary, all ranks agree through an all-reduce, a checkpoint is written and
the process exits with `EXIT_REQUEUE` (75, sysexits' EX_TEMPFAIL): "requeue me". The Slurm scripts
rely on exactly this value.

Exit codes of `gf-train train`:
- 0  `EXIT_OK`: finished (max_steps reached, or `--stop-at-step` reached).
- 1  a user error (config, data, checkpoint mismatch, no intact checkpoint left): the message names the
     problem and the fix.
- 3  `EXIT_NONFINITE`: `optim.max_nonfinite_in_row` skipped steps in a row; a checkpoint of the last
     good state was written (do not requeue blindly: lower the lr or inspect the data).
- 4  `EXIT_SAVE_FAILED`: writing a checkpoint failed on some rank (full disk, permissions, I/O error); every
     rank says why, the partial checkpoint is removed and older ones are intact. Free space, then rerun.
- 75 `EXIT_REQUEUE`: preempted (SIGUSR1/SIGTERM); a checkpoint was written; rerun the same command.

DataLoader worker processes must not die on these signals: handlers are installed in the main process
before loaders are created (fork inherits them, and a handler ignores signals in any other process);
`ignore_preemption_signals` is the `worker_init_fn` for spawned workers.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_NONFINITE = 3
EXIT_SAVE_FAILED = 4
EXIT_REQUEUE = 75

PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionFlag:
    """Set by SIGUSR1/SIGTERM in the owning process; read by the trainer at step boundaries."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def is_set(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked child (DataLoader worker): ignore
            return
        self.signum = signum

    def install(self) -> PreemptionFlag:
        for sig in PREEMPTION_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self._previous.clear()

    def describe(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "none"


def ignore_preemption_signals(worker_id: int | None = None) -> None:
    """`worker_init_fn` for DataLoader workers: the main process handles preemption, workers ignore it."""
    for sig in PREEMPTION_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
