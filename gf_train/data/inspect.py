"""`inspect_dataset`: a tokenized dataset's manifest and its first samples decoded, as text.

Owns `inspect_dataset` (returns the text `data_prep/inspect.py DIR` / `gf-train data inspect DIR` print;
their flags are `gf_train.cli.data`) and `read_samples`.
Samples are read with mosaicml-streaming's `StreamingDataset` (the trainer's reader), unshuffled.
"""

from __future__ import annotations

import json
from pathlib import Path

from gf_train.data.manifest import read_manifest
from gf_train.data.tokenizers import load_tokenizer


def read_samples(split_dir: str | Path, indices: list[int]) -> list[list[int]]:
    """Token ids of samples `indices` of one MDS split folder (random access through StreamingDataset)."""
    from gf_train.data.compat import ensure_torchvision

    ensure_torchvision()
    from streaming import StreamingDataset

    ds = StreamingDataset(local=str(split_dir), shuffle=False, batch_size=1)
    return [ds[i]["tokens"].astype("int64").tolist() for i in indices if i < ds.num_samples]


def inspect_dataset(path: str | Path, split: str = "train", samples: int = 2, chars: int = 400) -> str:
    m = read_manifest(path)
    root = Path(m["_path"]).parent
    lines = [json.dumps({k: v for k, v in m.items() if not k.startswith("_")}, indent=2)]
    if samples > 0:
        if split not in m["splits"]:
            raise ValueError(f"{root} has no {split!r} split (splits: {', '.join(m['splits'])})")
        tok = load_tokenizer(m["tokenizer"]["spec"], m["tokenizer"]["eos_id"])
        for i, ids in enumerate(read_samples(root / split, list(range(samples)))):
            text = tok.decode(ids)
            n_eos = sum(1 for t in ids if t == tok.eos_id)
            lines.append(f"--- {split} sample {i}: {len(ids)} tokens, {n_eos} EOS ---")
            lines.append(text[:chars] + (" [...]" if len(text) > chars else ""))
    return "\n".join(lines)
