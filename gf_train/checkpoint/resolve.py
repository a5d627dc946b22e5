"""The one checkpoint resolver: a user's path -> a complete, verified step directory.

Owner: `gf_train.checkpoint`. Used by `gf-train train --resume-from/--init-from`, `export`, `eval` and
`generate`. Accepts a step dir, a run dir or its checkpoints/ dir (then the newest complete checkpoint),
or RUN_DIR/step_N as a short form of RUN_DIR/checkpoints/step_N. Every failure is a one-line ValueError.
Auto-resume (which falls back past damaged checkpoints) lives in `gf_train.train.resume` on top of
`candidates` and `gf_train.checkpoint.manifest`.
"""

from __future__ import annotations

from pathlib import Path

from gf_train.checkpoint.layout import COMPLETE, checkpoints_dir, is_complete, list_checkpoints, step_of
from gf_train.checkpoint.manifest import verify


def locate(path: str | Path) -> Path:
    """The complete step dir `path` names (without verifying its files)."""
    p = Path(path)
    if not p.exists():
        alt = checkpoints_dir(p.parent) / p.name  # RUN_DIR/step_N given for RUN_DIR/checkpoints/step_N
        if step_of(p) is None or not alt.exists():
            raise ValueError(f"checkpoint {p} does not exist; pass a run directory or one of its "
                             f"checkpoints/step_XXXXXXXX directories")
        p = alt
    if step_of(p) is not None and p.is_dir():
        if not is_complete(p):
            raise ValueError(f"checkpoint {p} is incomplete (no {COMPLETE} file: its save was interrupted); "
                             f"pick an older step directory, or the run directory for its newest complete one")
        return p
    for root in (p, checkpoints_dir(p)):
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    raise ValueError(f"{p} holds no complete checkpoint (step_XXXXXXXX/ with a {COMPLETE} file)")


def resolve(path: str | Path, checksums: bool = True) -> Path:
    """`locate`, then verify every recorded file (sizes; digests with `checksums`)."""
    step_dir = locate(path)
    problems = verify(step_dir, checksums)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"checkpoint {step_dir} is damaged: {problems[0]}{more}; use an older step directory")
    return step_dir


def candidates(run_dir: Path) -> list[Path]:
    """Auto-resume order: the run's complete checkpoints of the current timeline, newest first."""
    return [d for _, d in reversed(list_checkpoints(checkpoints_dir(run_dir)))]
