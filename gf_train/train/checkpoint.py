"""Checkpoint layout, completeness, retention, client state (JSON), RNG capture and config checks.

Owner: `gf_train.train`. Layout of one checkpoint (all paths relative to RUN_DIR/checkpoints/):

    step_00000020/
      ds/                      DeepSpeed tag dir: module + optimizer partitions (engine.save_checkpoint)
      ds_universal/            only after a resume on another world size (ds_to_universal output)
      zero_to_fp32.py          DeepSpeed's consolidation script (`python zero_to_fp32.py . out -t ds`)
      client_state.json        step, tokens, skipped steps, world size, zero stage, precision,
                               config hash, package versions, wandb run id
      config.yaml              the resolved RunConfig
      rank_00000.json ...      per rank: RNG states (python, numpy, torch, cuda) + data loader state
      COMPLETE                 written last by rank 0, after a barrier: only such dirs are ever loaded

Everything we write ourselves is JSON/YAML (nothing to unpickle). Retention: keep the newest
`keep_last` complete checkpoints; older ones (and stale incomplete dirs) are deleted only after a newer
one is complete.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gf_train.config import RunConfig
from gf_train.config.model import ModelConfig

DS_TAG = "ds"
UNIVERSAL_TAG = "ds_universal"
COMPLETE = "COMPLETE"
CLIENT_STATE = "client_state.json"
_STEP_RE = re.compile(r"step_(\d{8})")
# Model fields that do not change the weights' meaning: they may differ on resume (logged).
NON_ARCH_MODEL_FIELDS = frozenset({"wkv_backend", "attn_backend", "grad_cp", "ctx_len", "l2wrap", "rope_rescale",
                                   "tokenizer", "vocab_hash"})  # tokenizer: checked by train.preflight


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def is_complete(step_dir: Path) -> bool:
    return (step_dir / COMPLETE).is_file()


def list_checkpoints(root: Path, complete_only: bool = True) -> list[tuple[int, Path]]:
    """(step, dir) sorted by step; by default only complete ones."""
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = _STEP_RE.fullmatch(d.name)
        if m and d.is_dir() and (not complete_only or is_complete(d)):
            out.append((int(m.group(1)), d))
    return sorted(out)


def newest_complete(run_dir: Path) -> Path | None:
    found = list_checkpoints(checkpoints_dir(run_dir))
    return found[-1][1] if found else None


def resolve_checkpoint(path: Path) -> Path:
    """`--resume-from`: a step dir, or a run dir / checkpoints dir (then its newest complete one)."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if _STEP_RE.fullmatch(path.name):
        if not is_complete(path):
            raise ValueError(f"checkpoint {path} is incomplete (no {COMPLETE} file: the save was interrupted); "
                             f"pick an older step directory")
        return path
    for root in (path, checkpoints_dir(path)):
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    raise ValueError(f"{path} holds no complete checkpoint (step_XXXXXXXX/ with a {COMPLETE} file)")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def mark_complete(step_dir: Path) -> None:
    """Rank 0, after the barrier that follows every rank's writes."""
    atomic_write_text(step_dir / COMPLETE, "ok\n")
    fd = os.open(step_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(root: Path, keep_last: int) -> list[Path]:
    """Rank 0: delete complete checkpoints beyond the newest `keep_last`, and incomplete ones older than
    the newest complete one (left by a crash mid-save). Returns what was deleted."""
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


# ---- client state ----

def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("gf-train", "torch", "deepspeed", "numpy", "mosaicml-streaming", "triton"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def write_client_state(step_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_text(step_dir / CLIENT_STATE, json.dumps(state, indent=1, sort_keys=True))


def read_client_state(step_dir: Path) -> dict[str, Any]:
    return json.loads((step_dir / CLIENT_STATE).read_text())


def rank_file(step_dir: Path, rank: int) -> Path:
    return step_dir / f"rank_{rank:05d}.json"


def write_rank_state(step_dir: Path, rank: int, state: dict[str, Any]) -> None:
    atomic_write_text(rank_file(step_dir, rank), json.dumps(state))


def read_rank_state(step_dir: Path, rank: int) -> dict[str, Any] | None:
    p = rank_file(step_dir, rank)
    return json.loads(p.read_text()) if p.is_file() else None


# ---- RNG ----

def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def capture_rng() -> dict[str, Any]:
    """JSON-serialisable RNG states of this process."""
    py = random.getstate()
    npst = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        states = [_unb64(s) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ---- config comparison ----

def compare_configs(old: RunConfig, new: RunConfig) -> list[str]:
    """Raise ValueError naming the first architecture field that differs; return the other changes."""
    for f in dataclasses.fields(ModelConfig):
        if f.name in NON_ARCH_MODEL_FIELDS:
            continue
        a, b = getattr(old.model, f.name), getattr(new.model, f.name)
        if a != b:
            raise ValueError(
                f"model.{f.name} differs from the checkpoint ({a!r} there, {b!r} now): the weights cannot be "
                f"loaded. Use model.{f.name}={a!r}, a new --run-dir, or --init-from for a partial warm start")
    changes: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            for f in dataclasses.fields(a):
                walk(getattr(a, f.name), getattr(b, f.name), f"{prefix}{f.name}.")
        elif a != b:
            changes.append(f"{prefix[:-1]}: {a!r} -> {b!r}")

    walk(old, new, "")
    return changes
