"""What a checkpoint says about itself: client state (JSON), per-rank state and RNG, the architecture check.

Owner: `gf_train.checkpoint`. Everything we write ourselves is JSON/YAML (nothing to unpickle).
`check_architecture` is the one comparison of a checkpoint's (or an export's) model config with the one
a run, export or warm start wants: the first architecture field that differs is a ValueError naming it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gf_train.checkpoint.layout import CLIENT_STATE, CONFIG
from gf_train.config import RunConfig, loads
from gf_train.config.model import ModelConfig

# Model fields that do not change the weights' meaning: they may differ on resume (logged).
NON_ARCH_MODEL_FIELDS = frozenset({"wkv_backend", "attn_backend", "grad_cp", "ctx_len", "l2wrap", "rope_rescale",
                                   "tokenizer", "vocab_hash"})  # tokenizer: checked by train.preflight


def package_versions() -> dict[str, str]:
    import importlib.metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("gf-train", "torch", "deepspeed", "numpy", "mosaicml-streaming", "triton"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def read_client_state(step_dir: Path) -> dict[str, Any]:
    return json.loads((step_dir / CLIENT_STATE).read_text())


def read_run_config(step_dir: Path) -> RunConfig:
    return loads((step_dir / CONFIG).read_text())


def rank_file(step_dir: Path, rank: int) -> Path:
    return step_dir / f"rank_{rank:05d}.json"


def read_rank_state(step_dir: Path, rank: int) -> dict[str, Any] | None:
    p = rank_file(step_dir, rank)
    return json.loads(p.read_text()) if p.is_file() else None


def tokenizer_of(step_dir: Path) -> dict[str, Any] | None:
    """The tokenizer identity {name, vocab_hash, spec} stored at save time (None for older checkpoints)."""
    tok = read_client_state(step_dir).get("tokenizer")
    return tok if isinstance(tok, dict) else None


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


# ---- configs ----

def check_architecture(theirs: dict[str, Any], ours: ModelConfig, source: str, fix: str) -> None:
    """Raise ValueError naming the first architecture field where `theirs` (the weights' model config as a
    dict, read from `source`) and `ours` differ. `fix` ends the message (what the user can do)."""
    for f in dataclasses.fields(ModelConfig):
        if f.name in NON_ARCH_MODEL_FIELDS or f.name not in theirs:
            continue
        a, b = theirs[f.name], getattr(ours, f.name)
        if a != b:
            raise ValueError(f"model.{f.name} is {a!r} in {source} but {b!r} in this run's config: the weights "
                             f"cannot be loaded. Set model.{f.name}={a!r}{fix}")


def compare_configs(old: RunConfig, new: RunConfig, source: str) -> list[str]:
    """Resume check: raise ValueError on an architecture change; return the other changes (logged)."""
    check_architecture(dataclasses.asdict(old.model), new.model, source,
                       ", use a new --run-dir, or --init-from for a partial warm start")
    changes: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            for f in dataclasses.fields(a):
                walk(getattr(a, f.name), getattr(b, f.name), f"{prefix}{f.name}.")
        elif a != b:
            changes.append(f"{prefix[:-1]}: {a!r} -> {b!r}")

    walk(old, new, "")
    return changes
