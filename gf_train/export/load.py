"""Load a gf-train model from an export folder or a training checkpoint (for generate, eval, tests).

Owner: `gf_train.export`. An export folder is recognised by its `config.json` with `gf_model`; anything
else is treated as a checkpoint location (run dir, checkpoints dir or step dir), resolved and verified by
`gf_train.checkpoint.resolve` and consolidated by `gf_train.checkpoint.load_weights`. Weights are cast to
`dtype` (fp32 default).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gf_train.config.model import ModelConfig
from gf_train.export.hf_dir import WEIGHT_PREFIX
from gf_train.export.safetensors_io import load_state_dict


@dataclass
class Loaded:
    model: Any  # gf_train.model.GoldFinchLM, in eval mode
    config: ModelConfig
    tokenizer_spec: str | None
    source: Path


def is_export_dir(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    return cfg.is_file() and "gf_model" in json.loads(cfg.read_text())


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in d.items() if k in names})


def tokenizer_spec_of_export(path: Path) -> str | None:
    if (path / "rwkv_vocab_v20230424.txt").is_file():
        return "rwkv_world"
    if (path / "tokenizer.json").is_file():
        return str(path / "tokenizer.json")
    return None


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, wkv_backend: str = "torch") -> Loaded:
    """Build the gf-train model of an export folder or checkpoint and load its weights (strict)."""
    from gf_train.model import build_model

    p = Path(path)
    if is_export_dir(p):
        cfg = model_config_from_dict(json.loads((p / "config.json").read_text())["gf_model"])
        raw = load_state_dict(p)
        state = {k[len(WEIGHT_PREFIX):] if k.startswith(WEIGHT_PREFIX) else k: v for k, v in raw.items()}
        spec = tokenizer_spec_of_export(p)
    else:
        from gf_train.checkpoint import load_weights, resolve
        from gf_train.checkpoint.state import read_run_config, tokenizer_of
        from gf_train.export.export import data_summary

        step_dir = resolve(p)
        run_cfg = read_run_config(step_dir)
        cfg = run_cfg.model
        state = load_weights(step_dir)
        spec = (tokenizer_of(step_dir) or {}).get("spec") or data_summary(run_cfg)[1]
        p = step_dir
    cfg = dataclasses.replace(cfg, wkv_backend=wkv_backend, grad_cp=False)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model = build_model(cfg, device="meta")  # no init work: every tensor comes from `state`
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # non-persistent buffers
        model = build_model(cfg).to(dtype)
        model.load_state_dict(state, strict=True)
    return Loaded(model.eval(), cfg, spec, p)
