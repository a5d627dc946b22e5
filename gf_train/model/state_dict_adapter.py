"""Checkpoint key layout adapters: GoldFinch-paper (``recursal/GoldFinch-paper``) and RWKV-LM x060.

Our parameter names *are* the reference names (spec §7.1), so both directions are the identity on
keys and values; the adapters strip wrapper prefixes (``module.``, ``_forward_module.``), check the
key set and every shape against ``cfg`` (ValueError naming the culprits), and handle ``time_faaaa``,
which is dead weight in Finch-C2 with ``use_v2`` (§13.8): a checkpoint without it is accepted and gets
the §7.2 init value. ``infer_config_from_reference`` recovers the architecture fields from the shapes.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from gf_train.config.model import ModelConfig

_PREFIXES = ("_forward_module.", "module.", "model.")


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of ``build_model(cfg)`` (built on the meta device)."""
    from gf_train.model import build_model

    return {n: tuple(p.shape) for n, p in build_model(cfg, device="meta").state_dict().items()}


def _strip(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def _check(sd: dict[str, Tensor], cfg: ModelConfig) -> None:
    want = expected_shapes(cfg)
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    if missing or unexpected:
        raise ValueError(f"state dict does not match {cfg.arch} L{cfg.n_layer} C{cfg.n_embd}: "
                         f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                         f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    bad = [f"{k}: {tuple(sd[k].shape)} != {s}" for k, s in want.items() if tuple(sd[k].shape) != s]
    if bad:
        raise ValueError("state dict shape mismatch: " + "; ".join(bad[:8]))


def from_reference(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """A reference checkpoint (GoldFinch-paper layout, or RWKV-LM x060 for ``arch="finch"``) -> our
    state dict, loadable with ``model.load_state_dict(..., strict=True)``. Tensors are not copied."""
    from gf_train.model.init import faaaa_init

    out = _strip(sd)
    for name, shape in expected_shapes(cfg).items():
        if name.endswith("att.time_faaaa") and name not in out:
            layer = int(name.split(".")[1])
            like = next(iter(out.values()))
            out[name] = faaaa_init(layer, cfg.n_layer, shape[0], shape[1]).to(like.dtype)
    _check(out, cfg)
    return out


def to_reference(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict -> the reference layout (identical names and shapes; checked)."""
    out = _strip(sd)
    _check(out, cfg)
    return dict(out)


def _gold_inv_ratio(n_layer: int, g: int) -> tuple[int, int | None]:
    """(gold_inv_ratio, gold_layers): a ρ reproducing g if one exists, else the explicit count."""
    for rho in range(1, 4 * n_layer + 2):
        if (n_layer * (rho - 1)) // rho == g:
            return rho, None
    return 3, n_layer - g


def infer_config_from_reference(sd: dict[str, Tensor], **overrides: object) -> ModelConfig:
    """Architecture fields from a reference state dict; ``overrides`` (ctx_len, rope, backends, ...)
    are passed to ``ModelConfig`` too. RoPE, use_v2 and use_one_minus_w cannot be seen in the weights."""
    sd = _strip(sd)
    if "emb.weight" not in sd:
        raise ValueError("not a GoldFinch/RWKV/Llama reference state dict: no emb.weight")
    V, C = sd["emb.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    L = max(layers) + 1
    kw: dict[str, object] = {"n_layer": L, "n_embd": C, "vocab_size": V}
    if "blocks.0.att.wq.weight" in sd:
        kw["arch"] = "llama"
        kw["dim_ffn"] = sd["blocks.0.ffn.w1.weight"].shape[0]
    else:
        faaaa = sd.get("blocks.0.att.time_faaaa")
        if faaaa is not None:
            kw["head_size"] = faaaa.shape[1]
        kw["dim_ffn"] = sd["blocks.0.ffn.key.weight"].shape[0]
        if "blocks.0.att.gate.weight" in sd:
            kw["arch"] = "finch"
        elif "w_kv_cache_a.weight" in sd:
            kw["arch"] = "goldfinch"
            g = min(i for i in range(L) if f"blocks.{i}.att.query.weight" in sd)
            kw["gold_inv_ratio"], gold_layers = _gold_inv_ratio(L, g)
            if gold_layers is not None:
                kw["gold_layers"] = gold_layers
            c = sd["w_kv_cache_a.weight"].shape[0]
            if C // (C // c) != c:
                raise ValueError(f"compressed width {c} is not floor(C/r) for any integer r (C={C})")
            kw["kv_compression"] = C // c
        else:
            kw["arch"] = "finch_c2"
    kw.update(overrides)
    return ModelConfig(**kw)  # type: ignore[arg-type]


def load_reference(model: torch.nn.Module, sd: dict[str, Tensor]) -> None:
    """Convenience: adapt ``sd`` with ``model.cfg`` and load it strictly."""
    model.load_state_dict(from_reference(sd, model.cfg), strict=True)
