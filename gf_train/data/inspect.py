"""`inspect_dataset`: a tokenized dataset's manifest and its first samples decoded, as text.

Owns `inspect_dataset` (returns the text `data_prep/inspect.py DIR` / `gf-train data inspect DIR` print;
their flags are `gf_train.cli.data`) and `read_samples`.
Samples are read with mosaicml-streaming's `StreamingDataset` (the trainer's reader), unshuffled. A dataset
on s3:// is read as training reads it: manifest from the store (one-line errors for credentials, bucket and
endpoint), shards mirrored under `cache_dir` (`data.cache_dir`, see `gf_train.data.remote`).
"""

from __future__ import annotations

import json
from pathlib import Path

from gf_train.data.manifest import read_manifest
from gf_train.data.tokenizers import load_tokenizer


def read_samples(split_dir: str | Path, indices: list[int]) -> list[list[int]]:
    """Token ids of samples `indices` of one MDS split folder (random access through StreamingDataset)."""
    from gf_train.data.compat import open_dataset, release_shm

    ds = open_dataset(local=str(split_dir), shuffle=False, batch_size=1)
    try:
        return [ds[i]["tokens"].astype("int64").tolist() for i in indices if i < ds.num_samples]
    finally:
        release_shm(ds)


def _remote_samples(split_uri: str, seq_len: int, indices: list[int], cache_dir: str | None) -> list[list[int]]:
    from gf_train.data.loader import open_split

    with open_split([split_uri], seq_len, cache_dir=cache_dir) as source:
        return [source.sample(i).astype("int64").tolist() for i in indices if i < source.num_samples]


def inspect_dataset(path: str | Path, split: str = "train", samples: int = 2, chars: int = 400,
                    cache_dir: str | None = None) -> str:
    """The manifest and the first `samples` samples of `split` decoded. `path`: a dataset root, one of its split
    folders, local or s3:// (mirrored under `cache_dir`, default `data.cache_dir`'s)."""
    from gf_train.data.remote import is_remote

    m = read_manifest(str(path) if is_remote(str(path)) else path)
    remote = is_remote(str(m["_path"]))
    root = str(m["_path"]).rsplit("/", 1)[0] if remote else Path(m["_path"]).parent
    lines = [json.dumps({k: v for k, v in m.items() if not k.startswith("_")}, indent=2)]
    if samples > 0:
        if split not in m["splits"]:
            raise ValueError(f"{root} has no {split!r} split (splits: {', '.join(m['splits'])})")
        tok = load_tokenizer(m["tokenizer"]["spec"], m["tokenizer"]["eos_id"])
        want = list(range(samples))
        rows = (_remote_samples(f"{root}/{split}", int(m["seq_len"]), want, cache_dir) if remote
                else read_samples(Path(root) / split, want))
        for i, ids in enumerate(rows):
            text = tok.decode(ids)
            n_eos = sum(1 for t in ids if t == tok.eos_id)
            lines.append(f"--- {split} sample {i}: {len(ids)} tokens, {n_eos} EOS ---")
            lines.append(text[:chars] + (" [...]" if len(text) > chars else ""))
    return "\n".join(lines)
