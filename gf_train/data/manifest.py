"""The dataset manifest (`manifest.json` next to the `train/` and `val/` MDS folders) and checks on it.

Owns `read_manifest`, `check_vocab` and `bits_per_byte`. Layout written by `gf_train.data.tokenize`:

    <out>/manifest.json     tokenizer {name, spec, vocab_size, eos_id, vocab_hash}, seq_len, sample_tokens,
                            dtype, splits {train|val: docs, empty_docs, tokens, samples, remainder_tokens,
                            utf8_bytes}, skipped_records (+ examples), invalid_unicode (the text policy:
                            error | skip | replace), replaced_records (+ examples), inputs [{path, size, mtime_ns,
                            xxh3_128, skipped_records}], tool + tool_version, fingerprint, created
    <out>/train/index.json  MDS (zstd), column `tokens`: ndarray:<dtype>:<seq_len + 1>
    <out>/val/index.json

A dataset on object storage (`s3://bucket/prefix`, see `gf_train.data.remote`) has the same layout;
`read_manifest` reads its manifest from there (`_path` is then the manifest's URI).

Vocab rule: the tokenizer's vocab_size must be <= the model's vocab_size (a larger model embedding is
fine and common: rounded-up vocabularies); larger is an error, and so is mixing streams made with
different tokenizers (different vocab_hash).

Bits per byte: `tokens` counts every stored token (EOS included) and `utf8_bytes` the documents' UTF-8
bytes, so a mean loss L (nats/token) over a split is L / ln 2 * tokens / utf8_bytes bits per byte.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = "gf-train-mds"
FORMAT_VERSION = 1


def manifest_path(path: str | Path) -> Path:
    """The manifest for a dataset root, one of its split folders, or the manifest file itself."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for cand in (p / MANIFEST_NAME, p.parent / MANIFEST_NAME):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no {MANIFEST_NAME} in {p} or {p.parent}; is this the output of data_prep/tokenize.py?")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load and validate a manifest (from the dataset root, a split folder, or the file; local or s3://)."""
    if isinstance(path, str) and "://" in path:
        from gf_train.data.remote import is_remote, read_manifest_text

        if is_remote(path):
            text, uri = read_manifest_text(path)
            return _parse(text, uri)
    mp = manifest_path(path)
    return _parse(mp.read_text(encoding="utf-8"), str(mp))


def _parse(text: str, mp: str) -> dict[str, Any]:
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{mp}:{e.lineno}: invalid JSON ({e.msg}); re-run data_prep/tokenize.py") from e
    if m.get("format") != FORMAT:
        raise ValueError(f"{mp}: not a gf-train dataset manifest (format={m.get('format')!r})")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{mp}: format_version {m['format_version']} is newer than this gf-train "
                         f"({FORMAT_VERSION}); upgrade gf-train")
    m["_path"] = mp
    return m


def _manifests(source: Any) -> list[dict[str, Any]]:
    if isinstance(source, Mapping):
        return [dict(source)]
    if isinstance(source, (str, Path)):
        return [read_manifest(source)]
    if hasattr(source, "train") and hasattr(source, "val"):  # DataConfig
        out = []
        for s in list(source.train) + list(source.val):
            try:
                out.append(read_manifest(s.path))
            except FileNotFoundError:
                if s.remote is None:
                    raise
                # remote stream whose local cache is not there yet: nothing to check locally
        return out
    if isinstance(source, Iterable):
        return [m for s in source for m in _manifests(s)]
    raise TypeError(f"check_vocab: cannot read manifests from {type(source).__name__}")


def check_vocab(source: Any, model_vocab_size: int) -> dict[str, Any]:
    """Raise ValueError unless every manifest's tokenizer fits the model (vocab_size <= model's) and all agree.

    `source`: a manifest dict, a path, a DataConfig, or an iterable of those. Returns the first manifest.
    """
    ms = _manifests(source)
    if not ms:
        raise ValueError("check_vocab: no dataset manifests found (data.train is empty?)")
    first = ms[0]
    for m in ms:
        tok, where = m["tokenizer"], m.get("_path", "manifest")
        if int(tok["vocab_size"]) > model_vocab_size:
            raise ValueError(
                f"{where}: the data was tokenized with {tok['name']} (vocab_size {tok['vocab_size']}) but the model "
                f"has vocab_size {model_vocab_size}; set model.vocab_size >= {tok['vocab_size']} or re-tokenize "
                "with the model's tokenizer")
        if tok["vocab_hash"] != first["tokenizer"]["vocab_hash"]:
            raise ValueError(
                f"{where}: tokenizer {tok['name']} (vocab_hash {tok['vocab_hash']}) differs from "
                f"{first.get('_path')}'s {first['tokenizer']['name']} ({first['tokenizer']['vocab_hash']}); "
                "all streams of a run must use one tokenizer")
        if int(m["seq_len"]) != int(first["seq_len"]):
            raise ValueError(f"{where}: seq_len {m['seq_len']} differs from {first.get('_path')}'s {first['seq_len']}")
    return first


def bytes_per_token(manifest: Mapping[str, Any], split: str = "val") -> float:
    s = manifest["splits"][split]
    return float(s["utf8_bytes"]) / max(1, int(s["tokens"]))


def bits_per_byte(loss_nats_per_token: float, manifest: Mapping[str, Any], split: str = "val") -> float:
    """Convert a mean cross-entropy (nats per token) on `split` to bits per UTF-8 byte."""
    return loss_nats_per_token / math.log(2) / bytes_per_token(manifest, split)


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    path = Path(out_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({k: v for k, v in manifest.items() if not k.startswith("_")}, indent=2) + "\n")
    tmp.replace(path)
    return path
