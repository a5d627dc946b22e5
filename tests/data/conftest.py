"""Fixtures for the data tests: the corpus, a BPE tokenizer trained in-process, and an S3-compatible server
(moto). Plain helpers live in data_helpers.py."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_helpers import corpus_docs, s3_env

from gf_train.data import remote as rm
from gf_train.distributed.info import free_port


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
