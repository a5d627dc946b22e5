"""Layer plan, parameter counts (spec §7.4, §12.1-2), state-dict inventory (§7.1) and FLOPs accounting."""

from __future__ import annotations

import pytest
import torch
from _model_testing import tiny_cfg
from _spec_params import SPEC_7_4

from gf_train.config.model import ModelConfig
from gf_train.config.train import OptimConfig
from gf_train.model import build_model, layer_kinds
from gf_train.model.flops import flops_per_token, matmul_params, param_count
from gf_train.train.optim import classify


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


@pytest.mark.parametrize("kw,expected", SPEC_7_4, ids=[f"{k['arch']}-L{k['n_layer']}-{v}" for k, v in SPEC_7_4])
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


def test_parameter_names_fit_optimizer_groups_spec_12_8() -> None:
    """The model's parameter names meet the trainer's §8.4 rules (`optim.classify`) where the spec says."""
    model = build_model(ModelConfig(arch="goldfinch", n_layer=6, n_embd=128, vocab_size=256), "meta")
    cfg = OptimConfig()
    rule = {n: classify(n, tuple(p.shape), cfg)[0] for n, p in model.named_parameters()}
    mult = {n: classify(n, tuple(p.shape), cfg)[1] for n, p in model.named_parameters()}
    assert rule["blocks.0.att.time_decay"] == "time_decay" and mult["blocks.0.att.time_decay"] == 2.0
    assert rule["blocks.0.att.time_decay_w1"] == "lora" and mult["blocks.0.att.time_decay_w1"] == 1.0
    assert rule["blocks.5.att.time_maa_kv_w2"] == rule["blocks.5.att.time_key_w1"] == "lora"
    assert rule["blocks.5.att.time_maa_v_cache"] == rule["blocks.0.att.time_maa_w"] == "time_mix"
    assert rule["blocks.0.att.time_faaaa"] == "time_faaaa" and rule["blocks.0.ln0.bias"] == "bias"
    assert rule["w_kv_cache_a.weight"] == rule["w_kv_cache_b.weight"] == "decay"  # the reference code's choice
    assert rule["emb.weight"] == rule["head.weight"] == rule["blocks.5.att.query.weight"] == "decay"
    assert rule["blocks.3.att.ln_x.weight"] == "no_decay"
    assert {n for n, m in mult.items() if m != 1.0} == {f"blocks.{i}.att.time_decay" for i in range(4)}
    # every decayed tensor is a matrix (no vector or LoRA factor slips into weight decay)
    assert all(p.dim() == 2 and not n.endswith(("_w1", "_w2")) for n, p in model.named_parameters()
               if rule[n] == "decay")
