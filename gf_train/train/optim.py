"""AdamW parameter groups of the GoldFinch/RWKV recipe (spec §8.4): first matching rule by name wins.

Owner: `gf_train.train`. Each group carries `lr_scale` (the lr multiplier: the trainer sets
`lr = schedule(step) * lr_scale`), `weight_decay` and `group_name`. Every trainable parameter lands
in exactly one group (checked). Empty groups are dropped (ZeRO dislikes them).

| rule (first match)                                       | lr x | decay |
| name contains `_w1` or `_w2` (LoRA factors)               | 1    | 0     |
| `time_mix` / `time_maa` (mixing vectors)                  | 1    | 0     |
| `time_decay`                                              | 2    | 0     |
| `time_faaaa`                                              | 1    | 0     |
| `time_first` (RWKV-5)                                     | 3    | 0     |
| ends with `.bias`                                         | 1    | 0     |
| >= 2 non-singleton dims and weight_decay > 0              | 1    | wd    |
| everything else (LayerNorm weights, ...)                  | 1    | 0     |

With `optim.layerwise_lr=false` every multiplier is 1. With `optim.decay_kv_cache_proj=false` the
GoldFinch key-cache projections `w_kv_cache_a` / `w_kv_cache_b` get no decay (the paper's text; the
reference code decays them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gf_train.config.train import OptimConfig

KV_CACHE_PROJ = ("w_kv_cache_a.", "w_kv_cache_b.")


def classify(name: str, shape: tuple[int, ...], cfg: OptimConfig) -> tuple[str, float, float]:
    """(group name, lr multiplier, weight decay) of one parameter."""
    if "_w1" in name or "_w2" in name:
        rule, mult, wd = "lora", 1.0, 0.0
    elif "time_mix" in name or "time_maa" in name:
        rule, mult, wd = "time_mix", 1.0, 0.0
    elif "time_decay" in name:
        rule, mult, wd = "time_decay", 2.0, 0.0
    elif "time_faaaa" in name:
        rule, mult, wd = "time_faaaa", 1.0, 0.0
    elif "time_first" in name:
        rule, mult, wd = "time_first", 3.0, 0.0
    elif name.endswith(".bias"):
        rule, mult, wd = "bias", 1.0, 0.0
    elif sum(1 for s in shape if s > 1) >= 2 and cfg.weight_decay > 0:
        rule, mult, wd = "decay", 1.0, cfg.weight_decay
        if not cfg.decay_kv_cache_proj and any(name.startswith(p) or f".{p}" in name for p in KV_CACHE_PROJ):
            rule, wd = "kv_cache_proj", 0.0
    else:
        rule, mult, wd = "no_decay", 1.0, 0.0
    if not cfg.layerwise_lr:
        mult = 1.0
    return rule, mult, wd


def param_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]], cfg: OptimConfig
                 ) -> list[dict[str, Any]]:
    """Optimizer groups for the trainable parameters, keyed by (lr multiplier, weight decay)."""
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    seen: set[int] = set()
    count = 0
    for name, p in named_params:
        if not p.requires_grad:
            continue
        if id(p) in seen:  # tied weights: one entry only
            continue
        seen.add(id(p))
        count += 1
        rule, mult, wd = classify(name, tuple(p.shape), cfg)
        g = groups.setdefault((mult, wd), {"params": [], "names": [], "lr_scale": mult, "weight_decay": wd,
                                           "group_name": f"lr{mult:g}x_wd{wd:g}"})
        g["params"].append(p)
        g["names"].append(name)
    out = [g for _, g in sorted(groups.items()) if g["params"]]
    assert sum(len(g["params"]) for g in out) == count, "a parameter is in no group or in two"
    return out


def strip_names(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups without the `names` lists (kept out of optimizer state dicts)."""
    return [{k: v for k, v in g.items() if k != "names"} for g in groups]


def describe(groups: list[dict[str, Any]]) -> str:
    """One line per group: multiplier, decay, number of tensors and elements (for the start-up log)."""
    lines = []
    for g in groups:
        n = sum(p.numel() for p in g["params"])
        lines.append(f"  {g['group_name']}: {len(g['params'])} tensors, {n:,} params")
    return "\n".join(lines)
