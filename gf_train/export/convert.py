"""`gf-train convert`: released GoldFinch-paper / RWKV-LM x060 state dicts -> a gf-train export folder.

Owner: `gf_train.export`. Reads the reference `.pth` with `torch.load(weights_only=True)` (plain tensors
only, no code runs), infers the architecture from the shapes and adapts the keys with the model's own
`gf_train.model.state_dict_adapter`, then writes the same folder as `gf-train export` (safetensors +
HF config + code + model card). The result loads with `AutoModelForCausalLM`, `gf-train generate/eval`,
and continues pretraining with `gf-train train --init-from DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gf_train.export.card import CardInfo
from gf_train.export.hf_dir import ExportInputs, check_destination, parse_dtype, write_export

SOURCES = ("goldfinch-paper", "rwkv-lm")
NESTED_KEYS = ("state_dict", "module", "model")


def read_reference(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"reference checkpoint {p} does not exist; pass the .pth file of a released model")
    try:
        sd: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, non-tensor objects refused by weights_only
        raise ValueError(f"{p} is not a plain state dict readable with torch.load(weights_only=True): {e}") from e
    for key in NESTED_KEYS:  # Lightning / DeepSpeed wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict) and "emb.weight" not in sd:
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{p} does not hold a flat {{name: tensor}} state dict")
    return sd


def convert_reference(source: str, checkpoint: str | Path, out: str | Path, overrides: dict[str, Any] | None = None,
                      dtype: str = "fp32", tokenizer: str | None = "rwkv_world", overwrite: bool = False) -> Path:
    """Convert a reference checkpoint into an export folder at `out`; returns its path."""
    from gf_train.model.flops import param_count
    from gf_train.model.state_dict_adapter import from_reference, infer_config_from_reference

    if source not in SOURCES:
        raise ValueError(f"--from {source!r} is not one of {SOURCES}")
    parse_dtype(dtype)
    out_path = Path(out).resolve()
    check_destination(out_path, overwrite)
    ref = read_reference(checkpoint)
    cfg = infer_config_from_reference(ref, **(overrides or {}))
    if source == "rwkv-lm" and cfg.arch != "finch":
        raise ValueError(f"{checkpoint} looks like a {cfg.arch} model, not an RWKV-LM x060 Finch (no att.gate); "
                         "use --from goldfinch-paper")
    state = {k: v.float() if v.is_floating_point() else v for k, v in from_reference(ref, cfg).items()}
    tok = None
    if tokenizer:
        from gf_train.data.tokenizers import load_tokenizer

        tok = load_tokenizer(tokenizer)
        cfg.tokenizer, cfg.vocab_hash = tok.name, tok.vocab_hash  # the export's gf_model records it
    card = CardInfo(name=f"{Path(checkpoint).stem} ({source}, converted)", model={}, n_params=param_count(cfg),
                    dtype=dtype, tokenizer=tok.name if tok is not None else "none",
                    source=f"converted from {source} checkpoint {Path(checkpoint).name}")
    return write_export(ExportInputs(state, cfg, card, tok), out_path, dtype=dtype, overwrite=overwrite)
