"""LR schedule (pure function of the step) and the optimizer groups of spec §8.4."""

from __future__ import annotations

import math

import pytest
import torch

from gf_train.config.train import OptimConfig
from gf_train.train.optim import classify, param_groups
from gf_train.train.schedule import lr_at


def _lr(step: int, decay: str = "cosine_half", warm: int = 10, total: int = 110) -> float:
    return lr_at(step, lr_init=6e-4, lr_final=2e-4, warmup_steps=warm, max_steps=total, decay=decay)


def test_warmup_is_reference_formula() -> None:
    for s in range(10):
        assert _lr(s) == pytest.approx(6e-4 * (0.2 + 0.8 * s / 10))
    assert _lr(10) == pytest.approx(6e-4)


@pytest.mark.parametrize("decay,mid", [
    ("cosine_half", 4e-4),  # (init+final)/2 at p=0.5
    ("cosine_quarter", 2e-4 + 4e-4 * math.cos(math.pi / 4)),
    ("linear", 4e-4),
    ("constant", 6e-4),
])
def test_decays(decay: str, mid: float) -> None:
    assert _lr(60, decay) == pytest.approx(mid)
    end = 6e-4 if decay == "constant" else 2e-4
    assert _lr(110, decay) == pytest.approx(end)
    assert _lr(500, decay) == pytest.approx(end)  # clipped past the end
    vals = [_lr(s, decay) for s in range(10, 111)]
    assert all(a >= b - 1e-18 for a, b in zip(vals, vals[1:]))  # monotone after warm-up


def test_schedule_edge_cases() -> None:
    assert lr_at(0, lr_init=1.0, lr_final=0.1, warmup_steps=0, max_steps=5) == 1.0
    assert lr_at(3, lr_init=1.0, lr_final=0.1, warmup_steps=5, max_steps=5) == pytest.approx(0.2 + 0.8 * 3 / 5)
    with pytest.raises(ValueError, match="decay"):
        lr_at(0, lr_init=1.0, lr_final=0.1, warmup_steps=0, max_steps=5, decay="exp")


@pytest.mark.parametrize("name,shape,rule,mult,wd", [
    ("blocks.3.att.time_maa_w1", (64, 160), "lora", 1, 0),
    ("blocks.3.att.time_decay_w2", (64, 64), "lora", 1, 0),
    ("blocks.3.att.time_maa_x", (1, 1, 64), "time_mix", 1, 0),
    ("blocks.3.ffn.time_maa_k", (1, 1, 64), "time_mix", 1, 0),
    ("blocks.3.att.time_decay", (1, 1, 64), "time_decay", 2, 0),
    ("blocks.3.att.time_faaaa", (4, 16), "time_faaaa", 1, 0),
    ("blocks.0.ln0.bias", (64,), "bias", 1, 0),
    ("blocks.0.ln1.weight", (64,), "no_decay", 1, 0),
    ("emb.weight", (65536, 64), "decay", 1, 0.001),
    ("head.weight", (65536, 64), "decay", 1, 0.001),
    ("blocks.2.att.receptance.weight", (64, 64), "decay", 1, 0.001),
    ("w_kv_cache_a.weight", (4, 64), "decay", 1, 0.001),
])
def test_rules(name: str, shape: tuple[int, ...], rule: str, mult: float, wd: float) -> None:
    assert classify(name, shape, OptimConfig()) == (rule, mult, wd)


def test_switches() -> None:
    off = OptimConfig(decay_kv_cache_proj=False)
    assert classify("w_kv_cache_b.weight", (64, 68), off) == ("kv_cache_proj", 1.0, 0.0)
    assert classify("head.weight", (97, 64), off)[2] == 0.001
    assert classify("blocks.1.att.time_decay", (1, 1, 8), OptimConfig(layerwise_lr=False))[1] == 1.0
    assert classify("head.weight", (97, 64), OptimConfig(weight_decay=0.0))[2] == 0.0


def test_groups_cover_every_param_once() -> None:
    from tests.train.fakes import TinyModel

    class C:
        n_embd, n_layer = 16, 2

    m = TinyModel(C())
    groups = param_groups(m.named_parameters(), OptimConfig())
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["blocks.0.att.time_decay"]["lr_scale"] == 2.0
    assert by_name["emb.weight"]["weight_decay"] == 0.001
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups])
    assert {g["group_name"] for g in opt.param_groups} == {g["group_name"] for g in groups}
