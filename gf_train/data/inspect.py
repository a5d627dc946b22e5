"""`data_prep/inspect.py DIR` / `gf-train data inspect DIR`: print a dataset's manifest and decode samples.

Owns `inspect_dataset` (returns the text it prints, for tests) and the `add_arguments`/`main` pair.
Samples are read with mosaicml-streaming's `StreamingDataset` (the trainer's reader), unshuffled.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="dataset folder (output of data_prep/tokenize.py) or one of its splits")
    p.add_argument("--split", default="train", help="split to decode samples from (default train)")
    p.add_argument("--samples", type=int, default=2, help="samples to decode (default 2)")
    p.add_argument("--chars", type=int, default=400, help="characters shown per sample (default 400)")


def main(args: argparse.Namespace) -> int:
    try:
        print(inspect_dataset(args.dir, args.split, args.samples, args.chars))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
