"""Write and read model weights as safetensors only: one file, or shards plus an HF-style index.

Owner: `gf_train.export`. Names follow transformers (`model.safetensors`, or
`model-00001-of-00003.safetensors` + `model.safetensors.index.json` past `max_shard_bytes`), so
`from_pretrained` reads either. No pickle is ever written or read here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _own(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors that share no storage (safetensors refuses aliases)."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or _nbytes(t) != t.untyped_storage().nbytes():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def save_state_dict(state: dict[str, torch.Tensor], out_dir: str | Path,
                    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write `state` into `out_dir`; returns the file names written (weights, and the index if sharded)."""
    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be >= 1, got {max_shard_bytes}")
    out = Path(out_dir)
    state = _own(state)
    meta = {"format": "pt"}
    total = sum(_nbytes(t) for t in state.values())
    if total <= max_shard_bytes:
        save_file(state, str(out / SINGLE), metadata=meta)
        return [SINGLE]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, t in state.items():
        if shards[-1] and size + _nbytes(t) > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += _nbytes(t)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        save_file(shard, str(out / name), metadata=meta)
        weight_map.update({k: name for k in shard})
    (out / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return [*names, INDEX]


def load_state_dict(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of an export folder (single file or sharded)."""
    d = Path(model_dir)
    if (d / SINGLE).is_file():
        return load_file(str(d / SINGLE))
    if (d / INDEX).is_file():
        index = json.loads((d / INDEX).read_text())
        state: dict[str, torch.Tensor] = {}
        for name in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(d / name)))
        missing = set(index["weight_map"]) - set(state)
        if missing:
            raise ValueError(f"{d}: the index names tensors missing from the shards: {sorted(missing)[:5]}")
        return state
    raise FileNotFoundError(f"{d} has no {SINGLE} or {INDEX}; is it a `gf-train export` folder?")
