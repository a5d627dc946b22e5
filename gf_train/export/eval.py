"""Loss, perplexity and bits per byte of a model on a tokenized (MDS) dataset split.

Owner: `gf_train.export`. Reads every sample of the split in order (`streaming.LocalDataset`, no
shuffling, no shared-memory machinery): a sample is `seq_len + 1` tokens, inputs the first `seq_len`,
targets the last. Loss is the mean cross entropy in nats per predicted token; bits per byte converts it
with the manifest's UTF-8 bytes per token of that split (`gf_train.data.bits_per_byte`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class EvalResult:
    loss: float
    perplexity: float
    bits_per_byte: float | None
    tokens: int
    samples: int
    split: str


def resolve_split(data: str | Path, split: str = "val") -> tuple[Path, str]:
    """A dataset root (with train/ and val/) or a split folder -> (split folder, split name)."""
    p = Path(data)
    if (p / "index.json").is_file():
        return p, p.name
    if (p / split / "index.json").is_file():
        return p / split, split
    raise ValueError(f"{p} is not a tokenized dataset (no index.json in it or in {p / split}); "
                     "pass the --out folder of data_prep/tokenize.py or one of its split folders")


def iter_batches(split_dir: Path, batch_size: int, max_samples: int | None = None):
    from gf_train.data.compat import ensure_torchvision

    ensure_torchvision()
    from streaming import LocalDataset

    ds = LocalDataset(local=str(split_dir))
    n = len(ds) if max_samples is None else min(len(ds), max_samples)
    for start in range(0, n, batch_size):
        rows = [torch.as_tensor(ds[i]["tokens"].astype("int64")) for i in range(start, min(n, start + batch_size))]
        yield torch.stack(rows)


@torch.no_grad()
def evaluate(model: Any, data: str | Path, split: str = "val", batch_size: int = 8,
             max_samples: int | None = None) -> EvalResult:
    from gf_train.data import bits_per_byte, read_manifest

    split_dir, split_name = resolve_split(data, split)
    total, count, samples = 0.0, 0, 0
    vocab = model.cfg.vocab_size
    for batch in iter_batches(split_dir, batch_size, max_samples):
        if int(batch.max()) >= vocab:
            raise ValueError(f"{split_dir} holds token id {int(batch.max())} >= the model's vocab_size {vocab}; "
                             "was it tokenized with this model's tokenizer?")
        logits = model(batch[:, :-1])
        total += float(F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum"))
        count += batch[:, 1:].numel()
        samples += batch.shape[0]
    if count == 0:
        raise ValueError(f"{split_dir} has no samples to evaluate")
    loss = total / count
    try:
        bpb: float | None = bits_per_byte(loss, read_manifest(split_dir), split_name)
    except (FileNotFoundError, KeyError, ValueError):
        bpb = None
    return EvalResult(loss, math.exp(loss), bpb, count, samples, split_name)
