"""Layer plan, parameter counts (spec §7.4, §12.1-2), state-dict inventory (§7.1) and FLOPs accounting."""

from __future__ import annotations

import pytest
import torch
from _model_testing import tiny_cfg

from gf_train.config.model import ModelConfig
from gf_train.model import build_model, layer_kinds
from gf_train.model.flops import flops_per_token, matmul_params, param_count


@pytest.mark.parametrize("L,rho,g", [(24, 3, 16), (12, 3, 8), (24, 2, 12), (24, 6, 20), (12, 2, 6), (12, 6, 10)])
def test_layer_split(L: int, rho: int, g: int) -> None:
    cfg = ModelConfig(arch="goldfinch", n_layer=L, n_embd=128, gold_inv_ratio=rho)
    assert cfg.first_gold_layer == g and cfg.n_gold == L - g
    assert layer_kinds(cfg) == ["finch_c2"] * g + ["gold"] * (L - g)


def test_layer_split_explicit_and_baselines() -> None:
    assert layer_kinds(ModelConfig(arch="goldfinch", n_layer=4, n_embd=64, gold_layers=0)) == ["finch_c2"] * 4
    assert layer_kinds(ModelConfig(arch="goldfinch", n_layer=4, n_embd=64, gold_layers=1))[-1] == "gold"
    assert layer_kinds(ModelConfig(arch="finch", n_layer=3, n_embd=64)) == ["finch"] * 3
    assert layer_kinds(ModelConfig(arch="llama", n_layer=3, n_embd=64)) == ["llama"] * 3
    with pytest.raises(ValueError, match="gold_layers"):
        ModelConfig(arch="goldfinch", n_layer=4, n_embd=64, gold_layers=5)


COUNTS = [
    (dict(arch="goldfinch", n_layer=24, n_embd=2048), 1_445_257_216),
    (dict(arch="goldfinch", n_layer=24, n_embd=2048, kv_compression=1), 1_453_121_536),
    (dict(arch="finch", n_layer=24, n_embd=2048), 1_599_873_024),
    (dict(arch="llama", n_layer=24, n_embd=2048), 1_473_454_080),
    (dict(arch="finch_c2", n_layer=24, n_embd=2048), 1_505_501_184),
    (dict(arch="goldfinch", n_layer=12, n_embd=768), 186_617_856),
    (dict(arch="goldfinch", n_layer=12, n_embd=768, gold_inv_ratio=2), 184_066_560),
    (dict(arch="goldfinch", n_layer=12, n_embd=768, gold_inv_ratio=6), 189_169_152),
    (dict(arch="finch_c2", n_layer=12, n_embd=768), 191_056_896),
    (dict(arch="finch", n_layer=12, n_embd=768), 196_955_136),
    (dict(arch="llama", n_layer=12, n_embd=768), 185_637_888),
]


@pytest.mark.parametrize("kw,expected", COUNTS, ids=[f"{k['arch']}-L{k['n_layer']}-{v}" for k, v in COUNTS])
def test_param_counts_spec_7_4(kw: dict, expected: int) -> None:
    cfg = ModelConfig(vocab_size=65536, **kw)
    assert param_count(cfg) == expected
    model = build_model(cfg, device="meta")
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("arch", ["goldfinch", "finch", "finch_c2", "llama"])
@pytest.mark.parametrize("kw", [{}, {"gold_inv_ratio": 2, "kv_compression": 4}, {"n_layer": 5, "dim_ffn": 96}])
def test_param_count_matches_built_model_small(arch: str, kw: dict) -> None:
    cfg = tiny_cfg(arch, **kw)
    assert param_count(cfg) == sum(p.numel() for p in build_model(cfg, device="meta").parameters())


def test_state_dict_inventory_spec_7_1() -> None:
    C, V, L = 768, 65536, 12
    cfg = ModelConfig(arch="goldfinch", n_layer=L, n_embd=C, vocab_size=V)
    sd = {k: tuple(v.shape) for k, v in build_model(cfg, device="meta").state_dict().items()}
    c, R, F = C // 16, 64, 2688
    expect = {
        "emb.weight": (V, C), "head.weight": (V, C), "ln_out.weight": (C,), "blocks.0.ln0.bias": (C,),
        "w_kv_cache_a.weight": (c, C), "w_kv_cache_b.weight": (C, C + c),
        "blocks.3.att.time_maa_w1": (C, 160), "blocks.3.att.time_maa_w2": (5, 32, C),
        "blocks.3.att.time_maa_v2": (1, 1, C), "blocks.3.att.time_decay": (1, 1, C),
        "blocks.3.att.time_decay_w1": (C, 64), "blocks.3.att.time_value2_w2": (64, C),
        "blocks.3.att.time_faaaa": (12, 64), "blocks.3.att.receptance.weight": (C, C),
        "blocks.3.att.output.weight": (C, C), "blocks.3.att.ln_x.weight": (C,),
        "blocks.8.att.time_maa_v_cache": (1, 1, C), "blocks.8.att.time_maa_q_w1": (C, 32),
        "blocks.8.att.time_maa_q_w2": (32, C), "blocks.8.att.time_maa_kv_w1": (C, 64),
        "blocks.8.att.time_maa_kv_w2": (2, 32, C), "blocks.8.att.time_key_w1": (C, R),
        "blocks.8.att.time_value_w2": (R, C), "blocks.8.att.query.weight": (C, C), "blocks.8.att.ln_k.bias": (C,),
        "blocks.11.ffn.time_maa_k": (1, 1, C), "blocks.11.ffn.key.weight": (F, C),
        "blocks.11.ffn.value.weight": (C, F), "blocks.11.ffn.receptance.weight": (C, C),
    }
    for k, s in expect.items():
        assert sd[k] == s, k
    assert "blocks.1.ln0.weight" not in sd and "blocks.8.att.time_faaaa" not in sd
    assert "blocks.8.att.key.weight" not in sd and "blocks.8.att.value.weight" not in sd
    assert not any(k.startswith("blocks.7.att.query") for k in sd)
    fin = {k: tuple(v.shape) for k, v in build_model(ModelConfig(arch="finch", n_layer=2, n_embd=128,
                                                                   vocab_size=256), "meta").state_dict().items()}
    assert fin["blocks.1.att.gate.weight"] == (128, 128) and fin["blocks.1.att.time_maa_g"] == (1, 1, 128)
    assert "blocks.1.att.time_maa_v2" not in fin
    lla = {k: tuple(v.shape) for k, v in build_model(ModelConfig(arch="llama", n_layer=2, n_embd=768,
                                                                   vocab_size=256), "meta").state_dict().items()}
    assert lla["blocks.1.att.wq.weight"] == (768, 768) and lla["blocks.1.ffn.w1.weight"] == (2048, 768)
    assert lla["blocks.1.ffn.w2.weight"] == (768, 2048) and "blocks.1.att.ln_x.weight" not in lla


def test_flops_formula() -> None:
    cfg = ModelConfig(arch="llama", n_layer=24, n_embd=2048, vocab_size=65536, ctx_len=2048)
    n_nonemb = param_count(cfg) - 65536 * 2048 - 2 * 2 * 2048 - 24 * 4 * 2048  # minus emb and LayerNorms
    assert matmul_params(cfg) == n_nonemb
    assert flops_per_token(cfg) == 6 * n_nonemb + 12 * 2048 * 2048 * 24
    gf = ModelConfig(arch="goldfinch", n_layer=24, n_embd=2048, vocab_size=65536, ctx_len=2048)
    fc2 = ModelConfig(arch="finch_c2", n_layer=24, n_embd=2048, vocab_size=65536, ctx_len=2048)
    # C2 counts W_v twice; WKV and attention terms scale with their layer counts
    assert flops_per_token(fc2) - 6 * matmul_params(fc2) == 18 * 2048 * 64 * 24
    assert flops_per_token(gf) - 6 * matmul_params(gf) == 18 * 2048 * 64 * 16 + 12 * 2048 * 2048 * 8
    assert matmul_params(fc2) > param_count(fc2) - 65536 * 2048  # the re-applied W_v
    assert flops_per_token(gf, seq_len=4096) > flops_per_token(gf)


def test_meta_build_has_no_storage() -> None:
    model = build_model(ModelConfig(arch="goldfinch", n_layer=24, n_embd=2048), device="meta")
    assert all(p.device == torch.device("meta") for p in model.parameters())


def _group(name: str, p: torch.Tensor) -> str:
    """Spec §8.4 rules (first match), as the trainer applies them by name."""
    if "_w1" in name or "_w2" in name:
        return "1x"
    if "time_mix" in name or "time_maa" in name:
        return "1x"
    if "time_decay" in name:
        return "2x"
    if "time_faaaa" in name or name.endswith(".bias"):
        return "1x"
    if len(p.squeeze().shape) >= 2:
        return "decay"
    return "1x"


def test_parameter_names_fit_optimizer_groups_spec_12_8() -> None:
    model = build_model(ModelConfig(arch="goldfinch", n_layer=6, n_embd=128, vocab_size=256), "meta")
    groups = {n: _group(n, p) for n, p in model.named_parameters()}
    assert groups["blocks.0.att.time_decay"] == "2x" and groups["blocks.0.att.time_decay_w1"] == "1x"
    assert groups["blocks.5.att.time_maa_kv_w2"] == "1x" and groups["blocks.5.att.time_key_w1"] == "1x"
    assert groups["w_kv_cache_a.weight"] == groups["w_kv_cache_b.weight"] == "decay"
    assert groups["emb.weight"] == groups["head.weight"] == groups["blocks.5.att.query.weight"] == "decay"
    assert groups["blocks.3.att.ln_x.weight"] == "1x" and groups["blocks.0.ln0.bias"] == "1x"
    assert {n for n, g in groups.items() if g == "2x"} == {f"blocks.{i}.att.time_decay" for i in range(4)}
    # every decayed tensor is a matrix (no vector or LoRA factor slips into weight decay)
    assert all(p.dim() == 2 and not n.endswith(("_w1", "_w2")) for n, p in model.named_parameters()
               if groups[n] == "decay")
