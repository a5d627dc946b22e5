"""Model card (README.md), LICENSE and generation_config.json of an export folder.

Owner: `gf_train.export`. The card is `gf_train/assets/model_card.md` filled with `string.Template`:
architecture, parameter count, tokens trained, data manifest summary, final train/val loss, license
and how to load.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "assets"
LICENSE_FILE = ASSETS / "LICENSE-Apache-2.0.txt"
CARD_TEMPLATE = ASSETS / "model_card.md"


@dataclass
class CardInfo:
    name: str
    model: dict[str, Any]  # gf-train ModelConfig as a dict
    n_params: int
    dtype: str
    tokenizer: str
    step: int | None = None
    tokens: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    source: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)  # one dict per dataset split summary


def _num(x: float | int | None, fmt: str = "{:,}") -> str:
    return "unknown" if x is None else fmt.format(x)


def _layer_plan(m: dict[str, Any]) -> str:
    n, arch = int(m["n_layer"]), m["arch"]
    if arch != "goldfinch":
        return f"all {arch}"
    rho = int(m.get("gold_inv_ratio", 3))
    g = (n * (rho - 1)) // rho
    return f"Finch-C2 layers 0-{g - 1}, GOLD attention layers {g}-{n - 1}"


def render_card(info: CardInfo, load_path: str = "path/to/this/folder") -> str:
    m = info.model
    rows = ""
    if m["arch"] == "goldfinch":
        c = int(m["n_embd"]) // int(m.get("kv_compression", 16))
        rows = (f"| key-cache compression | {m.get('kv_compression', 16)}x (c = {c} numbers + 1 token id per "
                f"position, shared by all GOLD layers; a Llama of this size keeps "
                f"{2 * int(m['n_layer']) * int(m['n_embd'])}) |\n"
                f"| positional encoding in GOLD | {'RoPE' if m.get('rope') else 'none (NoPE)'} |\n")
    data = "\n".join(
        f"- `{d.get('path', '?')}`: {_num(d.get('tokens'))} tokens, {_num(d.get('bytes'))} UTF-8 bytes"
        + (f", tokenizer {d['tokenizer']}" if d.get("tokenizer") else "") for d in info.data
    ) or "- (no manifest found)"
    return Template(CARD_TEMPLATE.read_text()).substitute(
        name=info.name, arch=m["arch"], arch_title={"goldfinch": "GoldFinch", "finch": "Finch (RWKV-6)",
                                                      "finch_c2": "Finch-C2", "llama": "Llama-like"}[m["arch"]],
        n_layer=m["n_layer"], layer_plan=_layer_plan(m), n_embd=m["n_embd"], head_size=m["head_size"],
        vocab_size=m["vocab_size"], tokenizer=info.tokenizer, ctx_len=m["ctx_len"], n_params=_num(info.n_params),
        arch_rows=rows, step=_num(info.step), tokens=_num(info.tokens),
        train_loss=_num(info.train_loss, "{:.4f}"), val_loss=_num(info.val_loss, "{:.4f}"),
        source=info.source or "unknown", data_summary=data, load_path=load_path, dtype=info.dtype)


def write_card_and_license(out_dir: str | Path, info: CardInfo) -> list[str]:
    out = Path(out_dir)
    (out / "README.md").write_text(render_card(info))
    shutil.copyfile(LICENSE_FILE, out / "LICENSE")
    return ["README.md", "LICENSE"]


def write_generation_config(out_dir: str | Path, eos_id: int | None) -> str:
    # no max_length: with it, a plain generate(max_new_tokens=...) warns that both are set
    cfg: dict[str, Any] = {"_from_model_config": False, "do_sample": True, "temperature": 1.0, "top_p": 0.85}
    if eos_id is not None:
        cfg.update(eos_token_id=eos_id, bos_token_id=eos_id, pad_token_id=eos_id)
    (Path(out_dir) / "generation_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return "generation_config.json"
