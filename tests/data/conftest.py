"""Fixtures for the data tests: a realistic small corpus (stdlib docstrings + non-ASCII text), a BPE
tokenizer trained in-process, helpers to read a prepared dataset back, and an S3-compatible server (moto)."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gf_train.data import remote as rm
from gf_train.distributed.info import free_port

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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m moto.server` (a real S3-compatible server) on a free loopback port, for this session's tests;
    skips them with the reason only when it cannot start."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    port = free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"the S3 test server (moto) could not start: {log.read_text()[-500:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and endpoint for this process (and its children), and an empty bucket: its name."""
    env = s3_env(s3_endpoint)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"gf-{uuid.uuid4().hex[:12]}"
    rm.client().create_bucket(Bucket=bucket)
    return bucket


def s3_env(endpoint: str) -> dict[str, str]:
    """No user AWS config (it would change credentials or region), test credentials, the server."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_EC2_METADATA_DISABLED": "true", rm.ENDPOINT_ENV: endpoint}
