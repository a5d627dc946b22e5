"""Which checkpoints stay: pruning (current timeline only) and moving a rolled-back timeline aside.

Owner: `gf_train.checkpoint`. Called by rank 0 only.

- `prune`: after a new checkpoint is complete and verified, delete complete checkpoints of the current
  timeline beyond the newest `keep_last`, and incomplete dirs older than the newest complete one.
  corrupt/ and abandoned/ are never touched.
- `abandon_newer`: resuming from an older checkpoint (`--resume-from`) starts a new timeline; the newer
  step dirs move to checkpoints/abandoned/<time>/ so that auto-resume never jumps back to them and
  pruning never counts them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gf_train.checkpoint.layout import ABANDONED_DIR, COMPLETE, is_complete, list_checkpoints, move_aside, time_stamp


def prune(root: Path, keep_last: int) -> list[Path]:
    """Delete what retention no longer needs; returns the deleted dirs."""
    complete = list_checkpoints(root)
    if not complete:
        return []
    newest = complete[-1][0]
    doomed = [d for _, d in complete[:-keep_last]] if len(complete) > keep_last else []
    doomed += [d for s, d in list_checkpoints(root, complete_only=False) if not is_complete(d) and s < newest]
    for d in doomed:
        # Remove COMPLETE first so a half-deleted dir is never taken for a checkpoint.
        (d / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(d, ignore_errors=True)
    return doomed


def abandon_newer(root: Path, step: int, stamp: str | None = None) -> list[Path]:
    """Move every step dir of `root` newer than `step` (complete or not) to abandoned/<stamp>/."""
    newer = [d for s, d in list_checkpoints(root, complete_only=False) if s > step]
    stamp = stamp or time_stamp()
    return [move_aside(d, ABANDONED_DIR, stamp) for d in newer]
