"""Initialisation exactly per spec §7.2 (layer-dependent mixing/decay vectors, LoRA factors) and §7.3
(name-based matrix rules of the reference ``generate_init_weight``).

§7.2, with global layer l, r0 = l/(L-1), r1 = 1 - l/L, d_i = i/C:
  μ "plain" = 1 - d^r1, μ "half" = 1 - d^(0.5·r1), μ "value" = 1 - (d^r1 + 0.3·r0);
  time_decay_n = -6 + 5·(n/(A-1))^(0.7+1.3·r0); time_faaaa_n = r0·(1 - n/(A-1)) + 0.1·(((n+1) mod 3) - 1);
  every ``*_w1`` = 0, every ``*_w2`` ~ U(-0.01, 0.01).
§7.3, by parameter name (first match): LayerNorms / ``time_*`` / ``*_w1`` / ``*_w2`` keep the above
(``ln_x.weight`` = ((l+1)/L)^0.7); emb ~ U(-1e-4, 1e-4); head orthogonal, gain 0.5·sqrt(V/C) if V > C
else 0.5; ``.att.output.``, ``.ffn.value.``, ``.ffn.receptance.`` zero; ``.att.key.``, ``.att.gate.``
orthogonal gain 0.1; every other matrix orthogonal gain 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# μ families per time-mix type (name -> "plain" | "half" | "value")
_MU = {
    "finch_c2": {"time_maa_x": "plain", "time_maa_r": "half", "time_maa_k": "plain", "time_maa_v": "value",
                 "time_maa_w": "plain", "time_maa_v2": "value"},
    "finch": {"time_maa_x": "plain", "time_maa_w": "plain", "time_maa_k": "plain", "time_maa_v": "value",
              "time_maa_r": "half", "time_maa_g": "half"},
    "gold": {"time_maa_x": "plain", "time_maa_q": "half", "time_maa_v_cache": "plain", "time_maa_k": "plain",
             "time_maa_v": "value"},
}
_ZERO = (".att.output.", ".ffn.value.", ".ffn.receptance.")
_SMALL = (".att.key.", ".att.gate.")


def mu_init(kind: str, layer_id: int, n_layer: int, n_embd: int) -> Tensor:
    """One μ vector [1, 1, C] of family ``kind`` ("plain", "half", "value")."""
    r0 = layer_id / (n_layer - 1)
    r1 = 1.0 - layer_id / n_layer
    d = torch.arange(n_embd, dtype=torch.float64) / n_embd
    if kind == "plain":
        mu = 1.0 - d.pow(r1)
    elif kind == "half":
        mu = 1.0 - d.pow(0.5 * r1)
    elif kind == "value":
        mu = 1.0 - (d.pow(r1) + 0.3 * r0)
    else:
        raise ValueError(f"unknown μ family {kind!r}")
    return mu.view(1, 1, n_embd)


def decay_init(layer_id: int, n_layer: int, dim_att: int) -> Tensor:
    r0 = layer_id / (n_layer - 1)
    n = torch.arange(dim_att, dtype=torch.float64)
    return (-6.0 + 5.0 * (n / (dim_att - 1)).pow(0.7 + 1.3 * r0)).view(1, 1, dim_att)


def faaaa_init(layer_id: int, n_layer: int, n_head: int, head_size: int) -> Tensor:
    r0 = layer_id / (n_layer - 1)
    A = n_head * head_size
    n = torch.arange(A, dtype=torch.float64)
    zigzag = 0.1 * (torch.remainder(n + 1, 3) - 1)
    return (r0 * (1.0 - n / (A - 1)) + zigzag).view(n_head, head_size)


def _init_time_params(mod: nn.Module, kind: str, layer_id: int, n_layer: int) -> None:
    for name, p in mod.named_parameters(recurse=False):
        if name.endswith("_w1"):
            p.zero_()
        elif name.endswith("_w2"):
            p.uniform_(-0.01, 0.01)
        elif name == "time_decay":
            p.copy_(decay_init(layer_id, n_layer, p.shape[-1]))
        elif name == "time_faaaa":
            p.copy_(faaaa_init(layer_id, n_layer, p.shape[0], p.shape[1]))
        elif name.startswith("time_maa_"):
            p.copy_(mu_init(_MU[kind][name], layer_id, n_layer, p.shape[-1]))


def head_gain(vocab_size: int, n_embd: int) -> float:
    return 0.5 * math.sqrt(vocab_size / n_embd) if vocab_size > n_embd else 0.5


@torch.no_grad()
def init_model(model: nn.Module) -> None:
    """Initialise a freshly built ``GoldFinchLM`` in place (uses the global torch RNG)."""
    cfg = model.cfg
    L = cfg.n_layer
    for block in model.blocks:
        if block.kind != "llama":
            _init_time_params(block.att, block.kind, block.layer_id, L)
            for name in ("time_maa_k", "time_maa_r"):  # channel mix: both "plain"
                getattr(block.ffn, name).copy_(mu_init("plain", block.layer_id, L, cfg.n_embd))
    for n, p in model.named_parameters():
        if "ln_" in n or ".ln" in n or "time_" in n or n.endswith(("_w1", "_w2")):
            if "ln_x" in n and n.endswith(".weight"):
                p.fill_(((1 + int(n.split(".")[1])) / L) ** 0.7)
            elif isinstance(p, nn.Parameter) and (".ln" in n or "ln_" in n):
                p.fill_(1.0 if n.endswith(".weight") else 0.0)
        elif n == "emb.weight":
            p.uniform_(-1e-4, 1e-4)
        elif n == "head.weight":
            nn.init.orthogonal_(p, gain=head_gain(cfg.vocab_size, cfg.n_embd))
        elif p.dim() > 2:
            continue
        elif any(z in n for z in _ZERO):
            p.zero_()
        else:
            nn.init.orthogonal_(p, gain=0.1 if any(s in n for s in _SMALL) else 1.0)
