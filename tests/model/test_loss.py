"""Training forward: CE value, L2Wrap gradient (spec §7.6), activation checkpointing, bf16 weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _model_testing import random_model, tiny_cfg


@pytest.mark.parametrize("l2wrap", [True, False])
def test_loss_value_and_l2wrap_gradient(l2wrap: bool) -> None:
    model = random_model(tiny_cfg("goldfinch", n_layer=3, l2wrap=l2wrap)).train()
    B, T = 2, 7
    ids = torch.randint(0, 97, (B, T))
    tgt = torch.randint(0, 97, (B, T))
    logits = model(ids).detach().requires_grad_(True)
    ce = F.cross_entropy(logits.view(-1, 97), tgt.view(-1))
    (g_ce,) = torch.autograd.grad(ce, logits)
    captured = {}

    def hook(mod, inp, out):
        out.retain_grad()
        captured["z"] = out

    model.head.register_forward_hook(hook)
    loss = model(ids, tgt)
    assert torch.allclose(loss, ce, atol=1e-6)  # the value is the plain cross entropy
    loss.backward()
    z = captured["z"]
    extra = torch.zeros_like(g_ce)
    if l2wrap:
        mx, arg = z.detach().max(dim=-1, keepdim=True)
        extra.scatter_(-1, arg, mx * 1e-4 / (B * T))
    assert torch.allclose(z.grad, g_ce + extra, atol=1e-7)
    if l2wrap:
        assert not torch.allclose(z.grad, g_ce, atol=1e-9)


def test_grad_checkpointing_same_gradients() -> None:
    ids = torch.randint(0, 97, (2, 9))
    grads = []
    for cp in (False, True):
        model = random_model(tiny_cfg("goldfinch", n_layer=3, grad_cp=cp)).train()
        model(ids, ids).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5), n


@pytest.mark.parametrize("arch", ["goldfinch", "finch", "llama"])
def test_bf16_weights_forward_backward(arch: str) -> None:
    model = random_model(tiny_cfg(arch, n_layer=3, wkv_backend="torch", attn_backend="sdpa")).to(torch.bfloat16)
    ids = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        ref = random_model(tiny_cfg(arch, n_layer=3, wkv_backend="torch", attn_backend="sdpa"))(ids)
    logits = model(ids)
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - ref).abs().max() / ref.abs().max() < 0.1
    loss = model.train()(ids, ids)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                        if p.grad is not None)


def test_targets_shape_checked() -> None:
    model = random_model(tiny_cfg("llama", n_layer=2))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
