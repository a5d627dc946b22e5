"""Where a checkpoint's files live: step directories, the `COMPLETE` marker, listing, moving aside.

Owner: `gf_train.checkpoint`. Layout under RUN_DIR/checkpoints/:

    step_00000020/             one checkpoint (20 optimizer steps done)
      ds/                      DeepSpeed tag dir: module + optimizer partitions (engine.save_checkpoint)
      ds_universal/            only after a resume on another world size (ds_to_universal output; unverified)
      latest                   "ds": DeepSpeed's pointer to the tag, so `zero_to_fp32.py . out` needs no -t
      zero_to_fp32.py          DeepSpeed's consolidation script (copied by DeepSpeed)
      client_state.json        step, tokens, world size, zero stage, precision, tokenizer, versions, ...
      config.yaml              the resolved RunConfig
      rank_00000.json ...      per rank: RNG states + data loader state
      manifest_rank_00000.json per rank: size + xxh3_64 of every file that rank wrote (see `manifest`)
      COMPLETE                 written last by rank 0 once every rank's manifest is in: only such dirs load
    corrupt/step_...           checkpoints that failed verification or loading (moved, never deleted)
    abandoned/<time>/step_...  checkpoints newer than a `--resume-from` target (the old timeline)

Only `step_XXXXXXXX` directories directly in checkpoints/ form the current timeline.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

DS_TAG = "ds"
UNIVERSAL_TAG = "ds_universal"
COMPLETE = "COMPLETE"
LATEST = "latest"
CLIENT_STATE = "client_state.json"
CONFIG = "config.yaml"
CORRUPT_DIR = "corrupt"
ABANDONED_DIR = "abandoned"
STEP_RE = re.compile(r"step_(\d{8})")


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def step_of(step_dir: Path) -> int | None:
    m = STEP_RE.fullmatch(step_dir.name)
    return int(m.group(1)) if m else None


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def is_complete(step_dir: Path) -> bool:
    return (step_dir / COMPLETE).is_file()


def list_checkpoints(root: Path, complete_only: bool = True) -> list[tuple[int, Path]]:
    """(step, dir) of the current timeline sorted by step; by default only complete ones."""
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        s = step_of(d)
        if s is not None and d.is_dir() and (not complete_only or is_complete(d)):
            out.append((s, d))
    return sorted(out)


def incomplete_newer_than(root: Path, step: int) -> list[Path]:
    """Step dirs without `COMPLETE` newer than `step` (interrupted saves): reported, never loaded."""
    return [d for s, d in list_checkpoints(root, complete_only=False) if s > step and not is_complete(d)]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file + fsync + rename: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def move_aside(step_dir: Path, kind: str, stamp: str | None = None) -> Path:
    """Move a step dir to checkpoints/<kind>/[<stamp>/]<name> (a numbered suffix if taken). Never deletes."""
    dest_root = step_dir.parent / kind
    if stamp:
        dest_root = dest_root / stamp
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / step_dir.name
    n = 1
    while dest.exists():
        dest = dest_root / f"{step_dir.name}.{n}"
        n += 1
    os.replace(step_dir, dest)
    return dest


def time_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())
