"""Helpers of the data tests (imported by name: `from data_helpers import ...`; a module named
`conftest` is ambiguous once several test folders are collected): a realistic small corpus (stdlib
docstrings + non-ASCII text), reading a prepared dataset back, and the S3 test server's environment."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import numpy as np

from gf_train.data import remote as rm

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


def s3_env(endpoint: str) -> dict[str, str]:
    """No user AWS config (it would change credentials or region), test credentials, the server."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_EC2_METADATA_DISABLED": "true", rm.ENDPOINT_ENV: endpoint}
