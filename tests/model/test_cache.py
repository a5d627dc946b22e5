"""Cache memory accounting (spec §10.1, §10.4, §12.6): measured bytes == formula, the paper's ratios."""

from __future__ import annotations

import pytest
import torch
from _model_testing import random_model, tiny_cfg

from gf_train.config.model import ModelConfig
from gf_train.model import build_model
from gf_train.model.cache import growth_bytes_per_token


def _growth(model, dtype_ids=torch.int32, n0: int = 3, mode: str = "compressed") -> tuple[int, object]:
    dev = model.emb.weight.device
    ids = torch.zeros(1, n0, dtype=torch.long, device=dev)
    _, cache = model.prefill(ids, token_dtype=dtype_ids, cache_mode=mode)
    before = cache.nbytes_growing()
    _, cache = model.decode(ids[:, 0], cache)
    return cache.nbytes_growing() - before, cache


def test_paper_ratio_1p5b_on_meta() -> None:
    gf = build_model(ModelConfig(arch="goldfinch", n_layer=24, n_embd=2048, wkv_backend="torch",
                                 attn_backend="sdpa"), "meta").to(torch.bfloat16)
    ll = build_model(ModelConfig(arch="llama", n_layer=24, n_embd=2048, attn_backend="sdpa"),
                     "meta").to(torch.bfloat16)
    g32, cache = _growth(gf, torch.int32)
    g16, _ = _growth(gf, torch.uint16)
    gl, _ = _growth(ll)
    assert g32 == 128 * 2 + 4 == growth_bytes_per_token(cache.kinds, 2048, 128, 2, 4)
    assert g16 == 128 * 2 + 2
    assert gl == 2 * 24 * 2048 * 2 == 196_608
    assert round(gl / g32, 1) == 756.2  # abstract: C/16 + 2 entries (32-bit token id)
    assert gl / g16 == pytest.approx(762.0, abs=0.05)  # Table 1: C/16 + 1 entries
    # fixed-size state: 16·(32·64·64 + 2·2048) + 8·2·2048 numbers (§10.1), WKV in fp32, shifts in bf16
    parts = cache.nbytes_by_type()
    assert parts["finch_state"] == 16 * (32 * 64 * 64 * 4 + 2 * 2048 * 2)
    assert parts["gold_state"] == 8 * 2 * 2048 * 2
    assert parts["key_cache"] == 4 * 128 * 2 and parts["token_ids"] == 4 * 4
    assert cache.nbytes() == sum(parts.values())
    # kv mode: 2·C entries per GOLD layer per token (8 of 24 layers: a third of the Llama's K/V)
    gkv, kv_cache = _growth(gf, mode="kv")
    assert gkv == 8 * 2 * 2048 * 2 == growth_bytes_per_token(cache.kinds, 2048, 128, 2, 4, "kv") == gl // 3
    assert kv_cache.nbytes_by_type()["gold_kv"] == 4 * gkv and kv_cache.keys is None


@pytest.mark.parametrize("arch", ["goldfinch", "llama", "finch"])
def test_small_model_growth_matches_formula(arch: str) -> None:
    cfg = tiny_cfg(arch)
    model = random_model(cfg)
    for mode in ("compressed", "kv"):
        g, cache = _growth(model, n0=5, mode=mode)
        assert g == growth_bytes_per_token(cache.kinds, cfg.n_embd, cfg.kv_dim, 4, 4, mode), mode
        if arch == "finch":
            assert g == 0
    _, c2 = model.prefill(torch.zeros(2, 7, dtype=torch.long), cache_mode="kv")
    if arch == "goldfinch":
        assert c2.keys is None and c2.token_ids is None
        assert c2.nbytes_by_type()["gold_kv"] == cfg.n_gold * 2 * 2 * 7 * cfg.n_embd * 4


def test_compressed_cache_stores_c_not_kc() -> None:
    cfg = tiny_cfg("goldfinch")
    _, cache = random_model(cfg).prefill(torch.zeros(2, 9, dtype=torch.long), cache_mode="compressed")
    assert cache.keys.shape == (2, 9, cfg.kv_dim) and cache.token_ids.shape == (2, 9)
    assert all(st.k is None and st.v is None for st in cache.layers)  # nothing per layer


def test_kv_store_appends_in_place_and_branches_copy() -> None:
    """``kv`` decode appends each GOLD layer's new k/v row into spare capacity of one store (no copy of
    the old rows), old caches stay valid, and continuing an older cache (a branch) gives the same logits
    as a fresh forward while leaving the newer cache's rows intact."""
    model = random_model(tiny_cfg("goldfinch"))
    g = model.first_gold_layer
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    _, c0 = model.prefill(ids, cache_mode="kv")
    _, c1 = model.decode(torch.tensor([3, 4]), c0)
    _, c2 = model.decode(torch.tensor([5, 6]), c1)
    s0, s1, s2 = (c.layers[g].kv_store for c in (c0, c1, c2))
    assert s0 is s1 is s2 and s2.filled == 11  # one store, appended in place
    assert c2.layers[g].k.data_ptr() == c0.layers[g].k.data_ptr()
    k2_before = c2.layers[g].k.clone()
    # branch from c1 with other tokens: must not overwrite row 10 of c2, and must match forward
    lb, cb = model.decode(torch.tensor([7, 8]), c1)
    assert cb.layers[g].kv_store is not s1
    assert torch.equal(c2.layers[g].k, k2_before)
    full = model(torch.cat([ids, torch.tensor([[3, 7], [4, 8]])], dim=1))[:, -1]
    assert (lb - full).abs().max() <= 1e-5 * full.abs().max()
    assert c1.layers[g].k.shape[1] == 10 and cb.layers[g].k.shape[1] == 11
