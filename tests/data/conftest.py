"""Fixtures for the data tests: a realistic small corpus (stdlib docstrings + non-ASCII text), a BPE
tokenizer trained in-process, and helpers to read a prepared dataset back."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

MODULES = ["json", "collections", "argparse", "pathlib", "textwrap", "string", "functools", "itertools",
           "email.message", "http.client", "logging", "csv", "decimal", "fractions", "heapq", "shutil",
           "subprocess", "tarfile", "zipfile", "unittest.case", "difflib", "calendar", "datetime", "random"]
EXTRA = ["Grüße aus Zürich: naïve café, crème brûlée.", "日本語のテキストも含めます。東京は大きい都市です。",
         "Emoji and symbols: 🙂 🚀 ∑ ∞ → ≤ ≥", "Ελληνικά κείμενα και русский текст в одном документе."]


def corpus_docs(n: int | None = None) -> list[str]:
    seen: set[str] = set()
    docs: list[str] = []
    for name in MODULES:
        mod = importlib.import_module(name)
        for _, obj in inspect.getmembers(mod):
            d = inspect.getdoc(obj)
            if d and len(d) > 40 and d not in seen:
                seen.add(d)
                docs.append(d)
    for i, e in enumerate(EXTRA):
        docs.insert(7 * i + 3, e)
    return docs[:n] if n else docs


@pytest.fixture(scope="session")
def docs() -> list[str]:
    return corpus_docs(600)


@pytest.fixture(scope="session")
def bpe_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_docs(), trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    return path


def read_split(root: Path, split: str) -> np.ndarray:
    """All samples of a split, in stored order, as one flat int64 token stream (via StreamingDataset)."""
    from gf_train.data.inspect import read_samples

    n = json.loads((root / "manifest.json").read_text())["splits"][split]["samples"]
    return np.asarray(read_samples(root / split, list(range(n))), np.int64).reshape(-1)


def expected_stream(tok, docs: list[str]) -> np.ndarray:
    ids: list[int] = []
    for d in docs:
        ids += tok.encode(d) + [tok.eos_id]
    return np.asarray(ids, np.int64)


def is_val(text: str, fraction: float) -> bool:
    import xxhash

    return xxhash.xxh3_64_intdigest(text.encode()) < int(fraction * 2.0**64)
