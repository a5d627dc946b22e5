"""Shared helpers for the export tests: tiny models with non-trivial weights, HF loading offline."""

from __future__ import annotations

from pathlib import Path

import torch

from gf_train.config.model import ModelConfig
from gf_train.export.card import CardInfo
from gf_train.export.hf_dir import ExportInputs

SAMPLE_TEXT = "GoldFinch: RWKV-6 meets GOLD attention. Ünïcode ✓ 中文\n\tend"  # tokenizer round trips


def tiny_config(arch: str = "goldfinch", vocab_size: int = 65536, **kw: object) -> ModelConfig:
    base: dict[str, object] = dict(arch=arch, n_layer=3, n_embd=32, head_size=16, vocab_size=vocab_size,
                                   ctx_len=64, wkv_backend="torch", attn_backend="sdpa")
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def random_model(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """build_model + noise on every weight (the init zeroes all block outputs, which would hide bugs)."""
    from gf_train.model import build_model

    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def inputs_for(model: torch.nn.Module, tokenizer: object | None = None) -> ExportInputs:
    cfg = model.cfg
    card = CardInfo(name="tiny", model={}, n_params=sum(p.numel() for p in model.parameters()), dtype="fp32",
                    tokenizer=getattr(tokenizer, "name", "none"), step=7, tokens=1234, train_loss=5.5,
                    val_loss=5.75, source="unit test")
    return ExportInputs(model.state_dict(), cfg, card, tokenizer, "run_name: tiny\n")


def unique_dir(tmp_path: Path, stem: str = "gf") -> Path:
    """transformers caches remote code per folder *name*: give every export its own."""
    return tmp_path / f"{stem}_{tmp_path.name}"
