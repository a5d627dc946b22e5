"""Initialisation per parameter family (spec §7.2, §7.3, §12.3)."""

from __future__ import annotations

import math

import pytest
import torch
from _model_testing import tiny_cfg

from gf_train.model import build_model

L, C, V = 6, 64, 256


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {a: build_model(tiny_cfg(a, vocab_size=V)) for a in ("goldfinch", "finch", "llama")}


def _d() -> torch.Tensor:
    return torch.arange(C, dtype=torch.float64) / C


def _mu(kind: str, li: int) -> torch.Tensor:
    r0, r1 = li / (L - 1), 1 - li / L
    d = _d()
    return {"plain": 1 - d**r1, "half": 1 - d ** (0.5 * r1), "value": 1 - (d**r1 + 0.3 * r0)}[kind]


MU = {
    "finch_c2": dict(time_maa_x="plain", time_maa_r="half", time_maa_k="plain", time_maa_v="value",
                     time_maa_w="plain", time_maa_v2="value"),
    "finch": dict(time_maa_x="plain", time_maa_w="plain", time_maa_k="plain", time_maa_v="value",
                  time_maa_r="half", time_maa_g="half"),
    "gold": dict(time_maa_x="plain", time_maa_q="half", time_maa_v_cache="plain", time_maa_k="plain",
                 time_maa_v="value"),
}


@pytest.mark.parametrize("arch", ["goldfinch", "finch"])
def test_mu_vectors(models, arch: str) -> None:
    m = models[arch]
    for blk in m.blocks:
        li = blk.layer_id
        for name, fam in MU[blk.kind].items():
            got = getattr(blk.att, name).detach().double().view(-1)
            assert torch.allclose(got, _mu(fam, li).float().double(), atol=1e-6), (li, name)
        for name in ("time_maa_k", "time_maa_r"):
            assert torch.allclose(getattr(blk.ffn, name).double().view(-1), _mu("plain", li), atol=1e-6)
    assert float(m.blocks[0].att.time_maa_x.detach()[0, 0, 0]) == 1.0  # d_0 = 0


@pytest.mark.parametrize("arch", ["goldfinch", "finch"])
def test_decay_and_bonus(models, arch: str) -> None:
    m = models[arch]
    n = torch.arange(C, dtype=torch.float64)
    for blk in m.blocks:
        if blk.kind == "gold":
            assert not hasattr(blk.att, "time_decay") and not hasattr(blk.att, "time_faaaa")
            continue
        li = blk.layer_id
        r0 = li / (L - 1)
        dec = blk.att.time_decay.detach().double().view(-1)
        assert dec.shape == (C,) and abs(dec[0] + 6) < 1e-6 and abs(dec[-1] + 1) < 1e-6
        assert torch.allclose(dec, -6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r0), atol=1e-5)
        fa = blk.att.time_faaaa.detach().double()
        assert fa.shape == (C // 16, 16)
        assert torch.allclose(fa.view(-1), r0 * (1 - n / (C - 1)) + 0.1 * (((n + 1) % 3) - 1), atol=1e-6)


def test_lora_factors(models) -> None:
    n_w2 = 0
    for m in models.values():
        for name, p in m.named_parameters():
            if name.endswith("_w1"):
                assert torch.count_nonzero(p) == 0, name
            elif name.endswith("_w2"):
                n_w2 += 1
                assert p.abs().max() <= 0.01 and p.std() > 0.004, name  # U(-0.01, 0.01): std 0.0058
    assert n_w2 > 0


def test_layernorms(models) -> None:
    for m in models.values():
        for name, p in m.named_parameters():
            if "ln_x.weight" in name:
                li = int(name.split(".")[1])
                assert torch.allclose(p, torch.full_like(p, ((li + 1) / L) ** 0.7)), name
            elif ("ln" in name.split(".")[-2]) and name.endswith(".weight"):
                assert torch.equal(p, torch.ones_like(p)), name
            elif ("ln" in name.split(".")[-2]) and name.endswith(".bias"):
                assert torch.equal(p, torch.zeros_like(p)), name


def _orth_gain(w: torch.Tensor) -> float:
    """Gain g of a (semi-)orthogonal matrix: W W^T = g^2 I (rows) or W^T W = g^2 I (columns)."""
    w = w.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    g2 = float(gram.diagonal().mean())
    assert torch.allclose(gram, g2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5 * max(g2, 1))
    return math.sqrt(g2)


def test_matrices(models) -> None:
    gf, fi, ll = models["goldfinch"], models["finch"], models["llama"]
    for m in models.values():
        assert m.emb.weight.abs().max() <= 1e-4 and m.emb.weight.std() > 3e-5
        gain = _orth_gain(m.head.weight)
        assert abs(gain - 0.5 * math.sqrt(V / C)) < 1e-5
        assert torch.allclose(m.head.weight.norm(dim=0), torch.full((C,), gain), atol=1e-5)  # column norms
    zero, small, unit = [], [], []
    for m in (gf, fi):
        for name, p in m.named_parameters():
            if not name.endswith(".weight") or p.dim() != 2 or name in ("emb.weight", "head.weight"):
                continue
            if any(z in name for z in (".att.output.", ".ffn.value.", ".ffn.receptance.")):
                zero.append(name)
                assert torch.count_nonzero(p) == 0, name
            elif ".att.key." in name or ".att.gate." in name:
                small.append(name)
                assert abs(_orth_gain(p) - 0.1) < 1e-6, name
            else:
                unit.append(name)
                assert abs(_orth_gain(p) - 1.0) < 1e-6, name
    assert "w_kv_cache_a.weight" in unit and "w_kv_cache_b.weight" in unit
    assert "blocks.5.att.query.weight" in unit and "blocks.0.ffn.key.weight" in unit
    assert "blocks.0.att.gate.weight" in small and "blocks.5.att.output.weight" in zero
    for name, p in ll.named_parameters():
        if p.dim() == 2 and name not in ("emb.weight", "head.weight"):
            assert abs(_orth_gain(p) - 1.0) < 1e-6, name  # Llama: no zero-init anywhere


@pytest.mark.parametrize("arch", ["goldfinch", "finch", "finch_c2"])
def test_blocks_are_identity_at_init(arch: str) -> None:
    torch.manual_seed(0)
    m = build_model(tiny_cfg(arch, vocab_size=V))
    ids = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        expect = m.head(m.ln_out(m.blocks[0].ln0(m.emb(ids))))
        assert torch.allclose(m(ids), expect, atol=1e-6)
