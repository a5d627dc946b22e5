"""Pre-fill / decode invariants (spec §10, §12.5) for every architecture, fp32 on CPU."""

from __future__ import annotations

import pytest
import torch
from _model_testing import random_model, rel_err, tiny_cfg

from gf_train.model import build_model

TOL = 1e-4
ARCHS = ["goldfinch", "finch_c2", "finch", "llama"]


def _ids(B: int = 2, T: int = 13, V: int = 97, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS + ["goldfinch_rope"])
def test_prefill_decode_chunks_match_forward(arch: str) -> None:
    cfg = tiny_cfg("goldfinch", rope=True) if arch == "goldfinch_rope" else tiny_cfg(arch)
    model = random_model(cfg)
    ids = _ids()
    with torch.no_grad():
        full = model(ids)  # [B, T, V]
    T = ids.shape[1]
    # whole-sequence prefill (T=13 > 2G+1=5: the GOLD window path)
    last, _ = model.prefill(ids)
    assert rel_err(last, full[:, -1]) < TOL
    # prefix prefill then token-by-token decode
    logits, cache = model.prefill(ids[:, :6])
    assert rel_err(logits, full[:, 5]) < TOL
    for t in range(6, T):
        logits, cache = model.decode(ids[:, t], cache)
        assert rel_err(logits, full[:, t]) < TOL, t
    assert cache.n_tokens == T
    # two chunks (second one multi-token on a non-empty cache: bottom-right mask) == one prefill
    _, c1 = model.prefill(ids[:, :4])
    two, c2 = model.prefill(ids[:, 4:], c1)
    one, c_one = model.prefill(ids)
    assert rel_err(two, one) < TOL and rel_err(two, full[:, -1]) < TOL
    nxt = torch.tensor([3, 5])
    a, _ = model.decode(nxt, c2)
    b, _ = model.decode(nxt, c_one)
    assert rel_err(a, b) < TOL
    # the input cache is never modified
    assert c1.n_tokens == 4


@pytest.mark.parametrize("arch", ["goldfinch", "llama"])
def test_chunk_size_and_cache_modes(arch: str) -> None:
    model = random_model(tiny_cfg(arch))
    ids = _ids(T=17)
    with torch.no_grad():
        full = model(ids)
    for kw in ({"chunk_size": 4}, {"chunk_size": 1}, {"cache_mode": "compressed"},
               {"cache_mode": "kv", "chunk_size": 5}):
        logits, cache = model.prefill(ids[:, :12], **kw)
        assert rel_err(logits, full[:, 11]) < TOL, kw
        for t in range(12, 17):
            logits, cache = model.decode(ids[:, t], cache)
            assert rel_err(logits, full[:, t]) < TOL, (kw, t)


def test_goldfinch_without_gold_layers_is_finch_c2() -> None:
    c2 = random_model(tiny_cfg("finch_c2"))
    gf = build_model(tiny_cfg("goldfinch", gold_layers=0))
    assert set(gf.state_dict()) == set(c2.state_dict())
    gf.load_state_dict(c2.state_dict(), strict=True)
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(gf(ids), c2(ids))
    assert torch.equal(gf.prefill(ids)[0], c2.prefill(ids)[0])


def _gold_run(model, ids, window, seed):
    logits, cache = model.prefill(ids, gold_window=window, seed_gold_shift=seed)
    g = model.first_gold_layer
    shifts = [(cache.layers[i].att_shift, cache.layers[i].ffn_shift) for i in range(g, model.cfg.n_layer)]
    return logits, shifts


def test_gold_prefill_window_thresholds_spec_12_5() -> None:
    """2G+1 positions with zero shift states, or 2G with the first GOLD shift seeded, are exact; one
    fewer is not (L6, g=4, G=2)."""
    model = random_model(tiny_cfg("goldfinch"), scale=0.5)
    with torch.no_grad():  # strong token shifts: every mix mostly takes the previous token
        for n, p in model.named_parameters():
            if "time_maa" in n and p.dim() == 3 and p.shape[:2] == (1, 1):
                p.fill_(0.9)
    G = model.cfg.n_gold
    assert G == 2
    ids = _ids(T=16)
    ref_logits, ref_shifts = _gold_run(model, ids, 16, False)  # whole sequence through GOLD
    with torch.no_grad():
        assert rel_err(ref_logits, model(ids)[:, -1]) < TOL

    def err(window: int, seed: bool) -> float:
        logits, shifts = _gold_run(model, ids, window, seed)
        e = rel_err(logits, ref_logits)
        for (a, f), (ra, rf) in zip(shifts, ref_shifts):
            e = max(e, rel_err(a, ra), rel_err(f, rf))
        return e

    # measured: exact windows <= 2e-7 (fp32 round-off), one shorter ~4e-5 and ~2e-3, shorter still >> 1e-3
    assert err(2 * G + 1, False) < 1e-6
    assert err(2 * G, True) < 1e-6
    assert err(2 * G, False) > 1e-5
    assert err(2 * G - 1, True) > 1e-5


def test_prefill_runs_gold_on_window_only(monkeypatch: pytest.MonkeyPatch) -> None:
    model = random_model(tiny_cfg("goldfinch"))
    seen: list[int] = []
    gold = model.blocks[model.first_gold_layer].att
    orig = gold.forward

    def spy(x, k, v, shift, want_state, key_mask=None):
        seen.append((x.shape[1], k.shape[1]))
        return orig(x, k, v, shift, want_state, key_mask)

    monkeypatch.setattr(gold, "forward", spy)
    for mode in ("compressed", "kv"):
        seen.clear()
        model.prefill(_ids(T=40), cache_mode=mode)
        assert seen == [(2 * model.cfg.n_gold + 1, 40)], mode


def test_prefill_validates_inputs() -> None:
    model = random_model(tiny_cfg("goldfinch", n_layer=3))
    _, cache = model.prefill(_ids(B=2))
    with pytest.raises(ValueError, match="batch"):
        model.decode(torch.tensor([1, 2, 3]), cache)
    with pytest.raises(ValueError, match="integer"):
        model.prefill(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="cache_mode"):
        model.prefill(_ids(), cache_mode="fp8")


@pytest.mark.parametrize("arch", ["goldfinch", "finch", "llama"])
def test_fast_backends_match_forward(arch: str) -> None:
    """The chunked torch WKV kernel (with carried state) and sdpa give the same invariants."""
    model = random_model(tiny_cfg(arch, wkv_backend="torch", attn_backend="sdpa"))
    ids = _ids(T=40)
    with torch.no_grad():
        full = model(ids)
    logits, cache = model.prefill(ids[:, :20], chunk_size=7)
    assert rel_err(logits, full[:, 19]) < TOL
    logits, cache = model.prefill(ids[:, 20:36], cache)
    assert rel_err(logits, full[:, 35]) < TOL
    for t in range(36, 40):
        logits, cache = model.decode(ids[:, t], cache)
        assert rel_err(logits, full[:, t]) < TOL, t
