"""Write a Hugging Face-loadable export folder from gf-train weights, atomically.

Owner: `gf_train.export`. Used by `gf-train export` (from a training checkpoint) and `gf-train convert`
(from reference state dicts). A folder holds:

    config.json                  HF config (model_type goldfinch, auto_map -> the files below, gf_model)
    configuration_goldfinch.py   HF config class        } copied from gf_train/export/hf_remote/
    modeling_goldfinch.py        HF causal-LM wrapper   }
    gf_*.py                      gf-train's model + kernel source, flattened (gf_train.export.bundle)
    model.safetensors            weights under `model.` (or shards + model.safetensors.index.json)
    tokenizer files              rwkv vocab + tokenization_rwkv_world.py, or tokenizer.json
    generation_config.json, README.md (model card), LICENSE (Apache-2.0), training_config.yaml

Everything is written into a hidden temp folder next to the destination and renamed into place at the
end, so a failure leaves nothing behind (and an existing export is only replaced with --overwrite).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gf_train.config.model import ModelConfig
from gf_train.export.bundle import bundle_model_code
from gf_train.export.card import CardInfo, write_card_and_license, write_generation_config
from gf_train.export.safetensors_io import DEFAULT_MAX_SHARD_BYTES, save_state_dict

HF_REMOTE = Path(__file__).resolve().parent / "hf_remote"
WEIGHT_PREFIX = "model."
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HF_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
TRAINING_CONFIG = "training_config.yaml"


@dataclass
class ExportInputs:
    """What an export needs; `state_dict` uses gf-train's own parameter names."""

    state_dict: dict[str, torch.Tensor]
    model: ModelConfig
    card: CardInfo
    tokenizer: Any | None = None  # gf_train.data.tokenizers.Tokenizer
    training_config_yaml: str | None = None


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(DTYPES)} (e.g. --dtype bf16)")
    return DTYPES[name]


def check_destination(out: Path, overwrite: bool) -> None:
    """Fail before any work if `out` cannot receive an export."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output directory {out} is not empty; pass --overwrite to replace it or choose another --out")


def check_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """Keys and shapes must be exactly those of build_model(cfg) (checked on the meta device)."""
    from gf_train.model import build_model

    ref = build_model(dataclasses.replace(cfg, wkv_backend="torch"), device="meta").state_dict()
    missing, extra = sorted(set(ref) - set(state)), sorted(set(state) - set(ref))
    if missing or extra:
        raise ValueError(f"the weights do not match a {cfg.arch} model of this config: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}; is the checkpoint from this architecture?")
    bad = [k for k in ref if tuple(ref[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"weight {k} has shape {tuple(state[k].shape)}, the config expects {tuple(ref[k].shape)}")


def hf_config(cfg: ModelConfig, dtype: torch.dtype, eos_id: int | None) -> dict[str, Any]:
    import transformers

    gf_model = dataclasses.asdict(cfg)
    gf_model["wkv_backend"] = "torch"
    out: dict[str, Any] = {
        "model_type": "goldfinch",
        "architectures": ["GoldFinchForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_goldfinch.GoldFinchConfig",
                     "AutoModelForCausalLM": "modeling_goldfinch.GoldFinchForCausalLM"},
        "gf_model": gf_model,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "max_position_embeddings": cfg.ctx_len,
        "tie_word_embeddings": False, "use_cache": True,
        "torch_dtype": HF_DTYPE_NAMES[dtype], "transformers_version": transformers.__version__,
    }
    if eos_id is not None:
        out.update(eos_token_id=eos_id, bos_token_id=eos_id)
    return out


def write_tokenizer_files(tok: Any, out: Path) -> list[str]:
    """rwkv_world: the vocab file + our tokenizer class; HF: tokenizer.json via PreTrainedTokenizerFast.
    Both pad on the left with the EOS token and return input_ids + attention_mask only."""
    written = [p.name for p in tok.save(out)]
    eos = tok.decode([tok.eos_id]) if tok.name != "rwkv_world" else "<|endoftext|>"
    # left padding with the EOS id as pad: batched generate / pipelines / lm-eval pad on the left, and
    # no token_type_ids (the model takes none) for every tokenizer kind
    cfg: dict[str, Any] = {"model_max_length": 1_000_000_000_000, "clean_up_tokenization_spaces": False,
                           "eos_token": eos, "bos_token": eos, "pad_token": eos, "padding_side": "left",
                           "model_input_names": ["input_ids", "attention_mask"]}
    if tok.name == "rwkv_world":
        shutil.copyfile(HF_REMOTE / "tokenization_rwkv_world.py", out / "tokenization_rwkv_world.py")
        written.append("tokenization_rwkv_world.py")
        cfg.update(tokenizer_class="RWKVWorldTokenizer",
                   auto_map={"AutoTokenizer": ["tokenization_rwkv_world.RWKVWorldTokenizer", None]})
    else:
        cfg.update(tokenizer_class="PreTrainedTokenizerFast")
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps({"eos_token": eos, "bos_token": eos, "pad_token": eos},
                                                                      indent=2) + "\n")
    return [*written, "tokenizer_config.json", "special_tokens_map.json"]


def write_export(inputs: ExportInputs, out_dir: str | Path, dtype: str = "fp32", overwrite: bool = False,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write the export folder atomically; returns its path. Raises ValueError on bad inputs."""
    out = Path(out_dir).resolve()
    torch_dtype = parse_dtype(dtype)
    check_destination(out, overwrite)
    check_state_dict(inputs.state_dict, inputs.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        state = {WEIGHT_PREFIX + k: v.detach().to(torch_dtype) if v.is_floating_point() else v.detach()
                 for k, v in inputs.state_dict.items()}
        save_state_dict(state, tmp, max_shard_bytes)
        del state
        bundle_model_code(tmp, HF_REMOTE / "modeling_goldfinch.py")
        shutil.copyfile(HF_REMOTE / "configuration_goldfinch.py", tmp / "configuration_goldfinch.py")
        eos_id = inputs.tokenizer.eos_id if inputs.tokenizer is not None else None
        (tmp / "config.json").write_text(json.dumps(hf_config(inputs.model, torch_dtype, eos_id), indent=2) + "\n")
        if inputs.tokenizer is not None:
            write_tokenizer_files(inputs.tokenizer, tmp)
        write_generation_config(tmp, eos_id)
        card = dataclasses.replace(inputs.card, dtype=dtype, model=dataclasses.asdict(inputs.model))
        write_card_and_license(tmp, card)
        if inputs.training_config_yaml is not None:
            (tmp / TRAINING_CONFIG).write_text(inputs.training_config_yaml)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
