"""The trainer: loop, one step (`step`), save policy, schedule, optimizer groups, metrics, saving/resuming
(collective side), preemption, the test-only fault hooks (`faults`).

Entry point: `gf_train.train.loop.train(cfg, run_dir, ...)` (what `gf-train train` calls).
"""

from gf_train.train.signals import EXIT_NONFINITE, EXIT_OK, EXIT_REQUEUE, EXIT_SAVE_FAILED, EXIT_USER_ERROR

__all__ = ["EXIT_NONFINITE", "EXIT_OK", "EXIT_REQUEUE", "EXIT_SAVE_FAILED", "EXIT_USER_ERROR"]
