"""`gf-train export`: a complete training checkpoint -> a Hugging Face-loadable, Apache-2.0 export folder.

Owner: `gf_train.export`. Finds and verifies the checkpoint with `gf_train.checkpoint.resolve` (a damaged
or incomplete one is a one-line error), gets its weights from `gf_train.checkpoint.load_weights` (DeepSpeed's
zero_to_fp32 API; ZeRO 0 handled), reads the resolved config, client state (tokenizer identity; older
checkpoints: the data manifests), data manifests and metrics for the model card, and hands everything to
`gf_train.export.hf_dir.write_export` (atomic). Every check that can fail runs before the first byte is
written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gf_train.export.card import CardInfo
from gf_train.export.hf_dir import ExportInputs, check_destination, parse_dtype, write_export
from gf_train.export.safetensors_io import DEFAULT_MAX_SHARD_BYTES


def find_checkpoint(path: str | Path, checksums: bool = True) -> Path:
    """A complete, verified step directory from RUN_DIR, RUN_DIR/checkpoints or a step directory."""
    from gf_train.checkpoint import resolve

    return resolve(path, checksums)


def last_losses(run_dir: Path, step: int | None) -> tuple[float | None, float | None]:
    """The last logged train loss and val loss at or before `step` (None when not logged)."""
    from gf_train.train.plot import read_metrics

    try:
        rows = read_metrics(run_dir)
    except FileNotFoundError:
        return None, None
    train = val = None
    for r in rows:
        if step is not None and r["step"] > step:
            continue
        for key in ("loss", "val_loss"):
            v = r.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                if key == "loss":
                    train = float(v)
                else:
                    val = float(v)
    return train, val


def data_summary(cfg: Any) -> tuple[list[dict[str, Any]], str | None]:
    """One line per data stream of the run (tokens, bytes from its manifest) and the tokenizer spec."""
    from gf_train.data import read_manifest

    out, spec = [], None
    for split, streams in (("train", cfg.data.train), ("val", cfg.data.val)):
        for s in streams:
            try:
                m = read_manifest(s.path)
            except (FileNotFoundError, ValueError):
                out.append({"path": s.path})
                continue
            part = m["splits"].get(Path(s.path).name) or m["splits"].get(split) or {}
            spec = spec or m["tokenizer"].get("spec") or m["tokenizer"].get("name")
            out.append({"path": s.path, "tokens": part.get("tokens"), "bytes": part.get("utf8_bytes"),
                        "tokenizer": m["tokenizer"].get("name")})
    return out, spec


def export_checkpoint(checkpoint: str | Path, out: str | Path, dtype: str = "bf16", overwrite: bool = False,
                      max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, tokenizer: str | None = None) -> Path:
    """Export the newest complete checkpoint under `checkpoint` (or that step directory) into `out`."""
    from gf_train.checkpoint import CONFIG, DS_TAG, load_weights
    from gf_train.checkpoint.state import read_client_state
    from gf_train.config import dump, loads
    from gf_train.model.flops import param_count

    parse_dtype(dtype)
    out_path = Path(out).resolve()
    check_destination(out_path, overwrite)
    step_dir = find_checkpoint(checkpoint)
    cfg_file = step_dir / CONFIG
    if not cfg_file.is_file() or not (step_dir / DS_TAG).is_dir():
        raise ValueError(f"checkpoint {step_dir} lacks config.yaml or its DeepSpeed folder {DS_TAG}/; "
                         "is it a gf-train checkpoint?")
    run_cfg = loads(cfg_file.read_text())
    client = read_client_state(step_dir)
    if tokenizer is not None:  # shipping another tokenizer than the weights were trained with: refused
        from gf_train.tokenizer_identity import check_prompt_tokenizer

        check_prompt_tokenizer(step_dir, tokenizer)
    state = load_weights(step_dir)
    data, manifest_spec = data_summary(run_cfg)
    tok = None
    stored = client.get("tokenizer") if isinstance(client.get("tokenizer"), dict) else None
    spec = tokenizer or (stored or {}).get("spec") or manifest_spec  # the checkpoint's own record first
    if spec is not None:
        from gf_train.data.tokenizers import load_tokenizer

        tok = load_tokenizer(spec)
    step = client.get("step")
    run_dir = step_dir.parent.parent
    train_loss, val_loss = last_losses(run_dir, step)
    card = CardInfo(name=f"{run_cfg.run_name} (step {step})", model={}, n_params=param_count(run_cfg.model),
                    dtype=dtype, tokenizer=tok.name if tok is not None else "none", step=step,
                    tokens=client.get("tokens"), train_loss=train_loss, val_loss=val_loss,
                    source=f"{step_dir}", data=data)
    inputs = ExportInputs(state_dict=state, model=run_cfg.model, card=card, tokenizer=tok,
                          training_config_yaml=dump(run_cfg))
    return write_export(inputs, out_path, dtype=dtype, overwrite=overwrite, max_shard_bytes=max_shard_bytes)
