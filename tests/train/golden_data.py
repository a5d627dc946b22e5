"""A small deterministic text corpus tokenized into MDS (the debug recipe's data for golden-loss tests)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("the quick brown fox jumps over lazy dog gold finch rwkv state cache key value time decay token "
         "train model loss step data rank batch layer head width depth small large fast slow bird song tree "
         "river stone light dark north south east west one two three four five six seven eight nine ten").split()


def make_corpus(out: Path, seq_len: int = 64, docs: int = 1200, seed: int = 7) -> Path:
    """Write `out/docs.jsonl` and tokenize it (rwkv_world) into `out/data/{train,val}`; returns out/data."""
    from gf_train.data.tokenize import tokenize_corpus

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "docs.jsonl"
    with open(src, "w") as f:
        for i in range(docs):
            n = rng.randint(8, 60)
            text = " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + f". Doc {i}."
            f.write(json.dumps({"text": text}) + "\n")
    data = out / "data"
    tokenize_corpus([str(src)], data, "rwkv_world", seq_len, val_fraction=0.1, progress=False, log=lambda s: 0)
    return data
