"""The one path from a checkpoint to model weights (fp32, wrapper prefixes stripped).

Owner: `gf_train.checkpoint`. ZeRO 1-3: DeepSpeed's zero_to_fp32 API (through
`gf_train.distributed.engine.fp32_state_dict`, the module that owns `import deepspeed`). ZeRO 0 has no
optimizer partitions for zero_to_fp32 to read: the weights are DeepSpeed's model file (`module`), and with
bf16 the fp32 master copies in that file (`optimizer.fp32_groups`), matched to names by the trainer's
`param_names` (client state). Used by `--init-from`, `export`, `eval` and `generate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gf_train.checkpoint.layout import DS_TAG
from gf_train.checkpoint.state import read_client_state

STRIP_PREFIXES = ("module.", "_orig_mod.", "_forward_module.")
STAGE0_MODEL_FILE = "mp_rank_00_model_states.pt"


def strip_wrappers(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the prefixes DeepSpeed / torch.compile wrappers add to parameter names."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for pre in STRIP_PREFIXES:
            if all(k.startswith(pre) for k in out):
                out = {k[len(pre):]: v for k, v in out.items()}
                changed = True
    return out


def _stage0_weights(step_dir: Path, param_names: list[list[str]] | None) -> dict[str, torch.Tensor]:
    # DeepSpeed's own (checksum-verified) file; it pickles non-tensor objects, hence weights_only=False.
    saved = torch.load(step_dir / DS_TAG / STAGE0_MODEL_FILE, map_location="cpu", weights_only=False)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in saved["module"].items()}
    opt = saved.get("optimizer")
    groups = opt.get("fp32_groups") if isinstance(opt, dict) else None
    if groups is not None and param_names is not None:  # bf16: the fp32 masters hold the exact weights
        keys = dict(zip(strip_wrappers(dict.fromkeys(sd)), sd, strict=True))  # model name -> saved key
        for names, tensors in zip(param_names, groups, strict=True):
            for name, t in zip(names, tensors, strict=True):
                assert sd[keys[name]].shape == t.shape, name
                sd[keys[name]] = t.float()
    return sd


def load_weights(step_dir: Path) -> dict[str, torch.Tensor]:
    """Consolidated fp32 weights of a (resolved, verified) step dir, names as in the model."""
    client = read_client_state(step_dir)
    if client.get("zero_stage") == 0 or not any((step_dir / DS_TAG).glob("*optim_states.pt")):
        return strip_wrappers(_stage0_weights(step_dir, client.get("param_names")))
    from gf_train.distributed.engine import fp32_state_dict

    return strip_wrappers(fp32_state_dict(step_dir, DS_TAG))
