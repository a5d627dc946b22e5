"""End-to-end learning: each tiny architecture overfits one fixed batch on CPU (loss < 0.5 nats)
through the full training path (kernels' torch/sdpa backends, L2Wrap, Adam)."""

from __future__ import annotations

import time

import pytest
import torch
from _model_testing import tiny_cfg

from gf_train.model import build_model


@pytest.mark.parametrize("arch", ["goldfinch", "finch", "llama"])
def test_overfit_fixed_batch(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(arch, n_layer=4, n_embd=64, vocab_size=64, ctx_len=32, wkv_backend="torch", attn_backend="sdpa")
    model = build_model(cfg).train()
    data = torch.randint(0, 64, (4, 33))
    x, y = data[:, :-1], data[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.99))
    t0 = time.time()
    first = float(model(x, y).detach())
    loss = first
    for _ in range(300):
        loss_t = model(x, y)
        opt.zero_grad()
        loss_t.backward()
        opt.step()
        loss = float(loss_t.detach())
        if loss < 0.5:
            break
    assert first > 3.5  # ~ln(64) at init
    assert loss < 0.5, f"{arch}: loss {loss:.3f} after 300 steps ({time.time() - t0:.1f}s)"
