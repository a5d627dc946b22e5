"""State-dict adapters (spec §7.1): a synthetic reference checkpoint, written from the spec's table
(not from our model), loads strictly; the round trip is lossless; the config is recovered."""

from __future__ import annotations

import pytest
import torch

from gf_train.config.model import ModelConfig
from gf_train.model import build_model
from gf_train.model.state_dict_adapter import from_reference, infer_config_from_reference, to_reference


def reference_shapes(arch: str, L: int, C: int, V: int, rho: int = 3, r: int = 16) -> dict[str, tuple]:
    """Key -> shape per spec §7.1 (GoldFinch-paper layout; RWKV-LM x060 for arch "finch")."""
    H, F, c, R = C // 64, int(3.5 * C / 32) * 32, C // r, max(C // 16, 64)
    g = (L * (rho - 1)) // rho if arch == "goldfinch" else L
    s: dict[str, tuple] = {"emb.weight": (V, C), "head.weight": (V, C), "ln_out.weight": (C,),
                           "ln_out.bias": (C,), "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,)}
    for i in range(L):
        p = f"blocks.{i}."
        for n in ("ln1", "ln2"):
            s[p + n + ".weight"] = s[p + n + ".bias"] = (C,)
        a = p + "att."
        if arch == "llama":
            for n in ("wq", "wk", "wv"):
                s[a + n + ".weight"] = (C, C)
            s[a + "wo.weight"] = (C, C)
            Fl = int(8 * C / 3 / 32) * 32
            s[p + "ffn.w1.weight"] = s[p + "ffn.w3.weight"] = (Fl, C)
            s[p + "ffn.w2.weight"] = (C, Fl)
            continue
        if i < g:
            mus = ["x", "r", "k", "v", "w"] + (["g"] if arch == "finch" else ["v2"])
            for m in mus:
                s[a + f"time_maa_{m}"] = (1, 1, C)
            s[a + "time_maa_w1"], s[a + "time_maa_w2"] = (C, 160), (5, 32, C)
            s[a + "time_decay"] = (1, 1, C)
            s[a + "time_decay_w1"], s[a + "time_decay_w2"] = (C, 64), (64, C)
            if arch != "finch":
                s[a + "time_value2_w1"], s[a + "time_value2_w2"] = (C, 64), (64, C)
            s[a + "time_faaaa"] = (H, 64)
            for n in ("receptance", "key", "value", "output") + (("gate",) if arch == "finch" else ()):
                s[a + n + ".weight"] = (C, C)
            s[a + "ln_x.weight"] = s[a + "ln_x.bias"] = (C,)
        else:
            for m in ("x", "q", "v_cache", "k", "v"):
                s[a + f"time_maa_{m}"] = (1, 1, C)
            s[a + "time_maa_q_w1"], s[a + "time_maa_q_w2"] = (C, 32), (32, C)
            s[a + "time_maa_kv_w1"], s[a + "time_maa_kv_w2"] = (C, 64), (2, 32, C)
            for n in ("key", "value"):
                s[a + f"time_{n}_w1"], s[a + f"time_{n}_w2"] = (C, R), (R, C)
            s[a + "query.weight"] = s[a + "output.weight"] = (C, C)
            for n in ("q", "k", "v", "x"):
                s[a + f"ln_{n}.weight"] = s[a + f"ln_{n}.bias"] = (C,)
        s[p + "ffn.time_maa_k"] = s[p + "ffn.time_maa_r"] = (1, 1, C)
        s[p + "ffn.key.weight"], s[p + "ffn.value.weight"] = (F, C), (C, F)
        s[p + "ffn.receptance.weight"] = (C, C)
    if arch == "goldfinch" and g < L:
        s["w_kv_cache_a.weight"], s["w_kv_cache_b.weight"] = (c, C), (C, C + c)
    return s


CASES = [("goldfinch", 6, 128, 3, 16), ("goldfinch", 6, 128, 2, 8), ("finch", 4, 128, 3, 16),
         ("finch_c2", 3, 128, 3, 16), ("llama", 3, 128, 3, 16)]


@pytest.mark.parametrize("arch,L,C,rho,r", CASES)
def test_synthetic_reference_loads_and_round_trips(arch: str, L: int, C: int, rho: int, r: int) -> None:
    V = 300
    torch.manual_seed(0)
    ref = {k: torch.randn(s).to(torch.bfloat16) for k, s in reference_shapes(arch, L, C, V, rho, r).items()}
    cfg = infer_config_from_reference(ref, wkv_backend="naive", attn_backend="naive")
    assert (cfg.arch, cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.head_size) == (arch, L, C, V, 64)
    if arch == "goldfinch":
        assert cfg.first_gold_layer == (L * (rho - 1)) // rho and cfg.kv_compression == r
    ours = from_reference({"_forward_module." + k: v for k, v in ref.items()}, cfg)
    model = build_model(cfg).to(torch.bfloat16)
    model.load_state_dict(ours, strict=True)
    back = to_reference(model.state_dict(), cfg)
    assert back.keys() == ref.keys()
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    model.float()(torch.randint(0, V, (1, 5)))  # runs


def test_missing_time_faaaa_is_filled_and_errors_name_keys() -> None:
    C, L, V = 128, 3, 300
    ref = {k: torch.zeros(s) for k, s in reference_shapes("goldfinch", L, C, V).items()}
    cfg = infer_config_from_reference(ref)
    del ref["blocks.1.att.time_faaaa"]
    ours = from_reference(ref, cfg)
    assert ours["blocks.1.att.time_faaaa"].shape == (2, 64)
    assert float(ours["blocks.1.att.time_faaaa"].abs().sum()) > 0  # the §7.2 init value
    bad = dict(ref)
    bad["blocks.0.att.key.weight"] = torch.zeros(C, C + 1)
    with pytest.raises(ValueError, match="blocks.0.att.key.weight"):
        from_reference(bad, cfg)
    del bad["head.weight"]
    with pytest.raises(ValueError, match="head.weight"):
        from_reference(bad, cfg)
    with pytest.raises(ValueError, match="unexpected"):
        from_reference(ref, ModelConfig(arch="finch_c2", n_layer=L, n_embd=C, vocab_size=V))
