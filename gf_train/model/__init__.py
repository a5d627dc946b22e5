"""GoldFinch, Finch-C2, Finch (RWKV-6 x060) and Llama-like language models (spec §1-§10).

Public API::

    from gf_train.model import build_model, GoldFinchLM
    model = build_model(cfg)                       # initialised per spec §7.2-7.3
    loss = model(input_ids, targets)               # or logits = model(input_ids)
    logits, cache = model.prefill(prompt)          # linear-time pre-fill (§10.2)
    logits, cache = model.decode(next_ids, cache)  # one token (§10.3)
    out = model.generate(prompt, 32, temperature=0.8, top_p=0.9, seed=0)

See ``README.md`` in this folder for the readings chosen where the spec (§13) is ambiguous.
"""

from __future__ import annotations

import torch

from gf_train.config.model import ModelConfig
from gf_train.model.cache import LayerState, ModelCache
from gf_train.model.common import layer_kinds
from gf_train.model.goldfinch import Block, GoldFinchLM
from gf_train.model.init import init_model


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> GoldFinchLM:
    """Construct a model for ``cfg`` on ``device`` (default CPU) and initialise it per spec §7.

    ``device="meta"`` allocates nothing (parameter counting for the 1.5B configs); no init then.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    with dev:
        model = GoldFinchLM(cfg)
    if dev.type != "meta":
        init_model(model)
    return model


__all__ = ["build_model", "GoldFinchLM", "Block", "ModelCache", "LayerState", "layer_kinds", "init_model"]
