"""Which tokenizer a model or a dataset was made with, and the refusal when the two differ.

A tokenizer's identity is its name and `vocab_hash` (`gf_train.data.tokenizers`: equal hashes <=> equal ids).
Two identities match when their hashes are equal (or, when one has no hash, their names are). Where it is
recorded:

* the run config, `model.tokenizer` / `model.vocab_hash`: null means "the data's", filled in from the data
  manifests when training starts (`gf_train.train.preflight`), so the run dir's and every checkpoint's
  config.yaml and every export's config.json (`gf_model`) carry it;
* a checkpoint's client state, key `tokenizer` ({name, vocab_hash}; written by the checkpoint code);
* an export folder: `gf_model`, else the tokenizer files it ships;
* a dataset: its manifest's `tokenizer`.

`gf-train train` refuses data whose tokenizer differs from `model.tokenizer`/`vocab_hash`, from the
checkpoint it resumes, or (unless `data.allow_new_tokenizer=true`, the documented override for continued
pretraining with a new tokenizer) from the `--init-from` weights; `gf-train eval` refuses data tokenized
with another tokenizer than the model's, and `gf-train generate` a `--tokenizer` that is not the model's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TokenizerId:
    name: str
    vocab_hash: str | None = None

    def __str__(self) -> str:
        return self.name + (f" (vocab_hash {self.vocab_hash})" if self.vocab_hash else "")

    def matches(self, other: TokenizerId) -> bool:
        if self.vocab_hash and other.vocab_hash:
            return self.vocab_hash == other.vocab_hash
        return self.name == other.name


def from_dict(d: Any) -> TokenizerId | None:
    """{name, vocab_hash} (a manifest's `tokenizer`, a checkpoint's client state `tokenizer`) or None."""
    if isinstance(d, Mapping) and (d.get("name") or d.get("vocab_hash")):
        return TokenizerId(str(d.get("name") or "unknown"), d.get("vocab_hash") or None)
    return None


def of_manifest(manifest: Mapping[str, Any]) -> TokenizerId | None:
    return from_dict(manifest.get("tokenizer"))


def of_model_config(model: Any) -> TokenizerId | None:
    """From a ModelConfig or its dict (`gf_model`): None when it records no tokenizer."""
    get = model.get if isinstance(model, Mapping) else lambda k: getattr(model, k, None)
    return from_dict({"name": get("tokenizer"), "vocab_hash": get("vocab_hash")})


def of_tokenizer_spec(spec: str) -> TokenizerId:
    from gf_train.data.tokenizers import load_tokenizer

    tok = load_tokenizer(spec)
    return TokenizerId(tok.name, tok.vocab_hash)


def _newest_step_dir(path: Path) -> Path | None:
    """The checkpoint step dir `path` names (gf_train.checkpoint's resolver, without verifying files)."""
    from gf_train.checkpoint import locate

    try:
        return locate(path)
    except ValueError:
        return None


def of_model(path: str | Path) -> TokenizerId | None:
    """The tokenizer of an export folder (or a .safetensors file in one) or a checkpoint (step dir, run dir);
    None when it records none."""
    from gf_train.data.manifest import read_manifest

    p = Path(path).expanduser()
    folder = p.parent if p.is_file() else p
    cfg_json = folder / "config.json"
    if cfg_json.is_file():
        try:
            gf_model = json.loads(cfg_json.read_text()).get("gf_model")
        except ValueError:
            gf_model = None
        if isinstance(gf_model, dict):
            own = of_model_config(gf_model)
            if own is not None and own.vocab_hash:
                return own
            # the files `Tokenizer.save` ships (what gf_train.export.load gives `generate`)
            if (folder / "rwkv_vocab_v20230424.txt").is_file():
                return of_tokenizer_spec("rwkv_world")
            if (folder / "tokenizer.json").is_file():
                return of_tokenizer_spec(str(folder / "tokenizer.json"))
            return own
    step_dir = _newest_step_dir(folder)
    if step_dir is None:
        return None
    from gf_train.checkpoint.state import read_run_config, tokenizer_of

    cfg = read_run_config(step_dir)
    own = of_model_config(cfg.model)
    if own is not None:
        return own
    found = from_dict(tokenizer_of(step_dir))
    if found is not None:
        return found
    for stream in cfg.data.train:  # checkpoints written before the config recorded the tokenizer
        try:
            return of_manifest(read_manifest(stream.path))
        except (FileNotFoundError, ValueError):
            continue
    return None


def check_data_tokenizer(model_path: str | Path, data: str | Path) -> None:
    """`gf-train eval`: ValueError when the data (a dataset root or split folder) was tokenized with another
    tokenizer than the model's. Nothing to compare (no manifest, no recorded tokenizer): no error."""
    from gf_train.data.manifest import read_manifest

    try:
        data_id = of_manifest(read_manifest(data))
    except FileNotFoundError:
        return
    model_id = of_model(model_path)
    if data_id is None or model_id is None or model_id.matches(data_id):
        return
    raise ValueError(f"--data {data} was tokenized with {data_id} but the model {model_path} was trained with "
                     f"{model_id}; evaluate on data tokenized with the model's tokenizer (data_prep/tokenize.py "
                     f"--tokenizer {model_id.name})")


def check_prompt_tokenizer(model_path: str | Path, spec: str) -> None:
    """`gf-train generate|export --tokenizer SPEC`: ValueError when SPEC is not the model's recorded tokenizer."""
    model_id = of_model(model_path)
    given = of_tokenizer_spec(spec)
    if model_id is not None and not model_id.matches(given):
        raise ValueError(f"--tokenizer {spec} is {given} but the model {model_path} was trained with {model_id}; "
                         "drop --tokenizer to use the model's own")
