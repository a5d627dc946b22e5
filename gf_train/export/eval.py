"""Loss, perplexity and bits per byte of a model on a tokenized (MDS) dataset split.

Owner: `gf_train.export`. Reads every sample of the split in its natural order with the data package's
loader (`gf_train.data.build_loader`, one sample per micro-batch so no tail is dropped): a sample is
`seq_len + 1` tokens, inputs the first `seq_len`, targets the last `seq_len`. Loss is the mean cross
entropy in nats per predicted token; bits per byte converts it with the manifest's UTF-8 bytes per
token of that split (`gf_train.data.bits_per_byte`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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


def iter_batches(split_dir: Path, batch_size: int, max_samples: int | None = None) -> Iterator[torch.Tensor]:
    """[b, seq_len + 1] token rows in the split's natural order, through the data package's own loader."""
    from gf_train.config.data import DataConfig, StreamConfig
    from gf_train.data import build_loader, read_manifest

    seq_len = int(read_manifest(split_dir)["seq_len"])
    loader = build_loader(DataConfig(val=[StreamConfig(path=str(split_dir))], shuffle=False), "val",
                          seq_len=seq_len, micro_batch=1, global_batch=1, world_size=1, rank=0)
    rows: list[torch.Tensor] = []
    for x, y in loader.iter(max_samples):
        rows.append(torch.cat([x, y[:, -1:]], dim=1))
        if len(rows) == batch_size:
            yield torch.cat(rows)
            rows = []
    if rows:
        yield torch.cat(rows)


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
