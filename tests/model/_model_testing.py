"""Shared helpers for the model tests: tiny configs and randomised (non-init) weights."""

from __future__ import annotations

import torch

from gf_train.config.model import ModelConfig
from gf_train.model import GoldFinchLM, build_model


def tiny_cfg(arch: str = "goldfinch", **kw: object) -> ModelConfig:
    base: dict[str, object] = dict(arch=arch, n_layer=6, n_embd=64, head_size=16, vocab_size=97, ctx_len=64,
                                   wkv_backend="naive", attn_backend="naive")
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def random_model(cfg: ModelConfig, seed: int = 0, scale: float = 0.2) -> GoldFinchLM:
    """Initialised model with every parameter perturbed, so that no sub-layer is zero at init."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
