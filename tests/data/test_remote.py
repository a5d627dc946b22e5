"""Datasets on S3 against a real S3-compatible server (moto's server mode on 127.0.0.1, started by the
`s3_endpoint` fixture of tests/data/conftest.py): tokenize --out s3://..., the rerun no-op, unfinished
uploads, one-line errors before any work, and training from s3:// with 2 ranks under a `data.cache_limit`,
exact resume and export. Skipped (with the reason) only when the server cannot start."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from data_helpers import s3_env, write_jsonl

from gf_train.cli.data import tokenize_script
from gf_train.data import read_manifest, remote
from gf_train.data.tokenize import tokenize_corpus
from gf_train.distributed.info import free_port

REPO = Path(__file__).resolve().parents[2]


def objects(bucket: str, prefix: str) -> dict[str, tuple[str, object]]:
    """key (relative to prefix) -> (ETag, LastModified)."""
    c, out = remote.client(), {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1:]] = (o["ETag"], o["LastModified"])
    return out


def get(bucket: str, key: str) -> bytes:
    return remote.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def run_main(argv: list[str]) -> int:
    return tokenize_script(argv + ["--no-progress"])


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _stable(manifest: bytes) -> dict:
    m = json.loads(manifest)
    m.pop("created")
    return m


def test_tokenize_to_s3_rerun_noop_refusal_overwrite(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    inp = write_jsonl(tmp_path / "c.jsonl", docs[:300])
    uri, stage = f"s3://{s3}/corpora/docs", tmp_path / "stage"
    args = ["--input", str(inp), "--tokenizer", str(bpe_json), "--val-fraction", "0.1", "--stage-dir", str(stage)]
    tokenize_corpus([str(inp)], tmp_path / "local", str(bpe_json), 32, val_fraction=0.1, progress=False,
                       log=lambda s: 0)
    assert run_main([*args, "--out", uri, "--seq-len", "32"]) == 0
    # the same bytes as a local run, under the prefix; nothing left in the staging folder
    want = local_files(tmp_path / "local")
    got = objects(s3, "corpora/docs")
    assert set(got) == set(want) and {"manifest.json", "train/index.json", "val/index.json"} <= set(got)
    for key, data in want.items():
        if key != "manifest.json":
            assert get(s3, f"corpora/docs/{key}") == data, key
    assert _stable(get(s3, "corpora/docs/manifest.json")) == _stable(want["manifest.json"])
    assert not any(stage.iterdir())
    assert read_manifest(f"{uri}/train")["_path"] == f"{uri}/manifest.json"
    # rerun: a no-op decided against the remote, nothing rewritten
    capsys.readouterr()
    assert run_main([*args, "--out", uri, "--seq-len", "32"]) == 0
    assert f"{uri} already holds this dataset" in capsys.readouterr().out
    assert objects(s3, "corpora/docs") == got
    # other arguments: refused without --overwrite (one line naming the URI and the fix), nothing touched
    assert run_main([*args, "--out", uri, "--seq-len", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and uri in err and "--overwrite" in err and str(stage) not in err
    assert objects(s3, "corpora/docs") == got
    # --overwrite: the new dataset, no object of the old one left
    assert run_main([*args, "--out", uri, "--seq-len", "16", "--overwrite"]) == 0
    tokenize_corpus([str(inp)], tmp_path / "local16", str(bpe_json), 16, val_fraction=0.1, progress=False,
                       log=lambda s: 0)
    assert set(objects(s3, "corpora/docs")) == set(local_files(tmp_path / "local16"))
    assert json.loads(get(s3, "corpora/docs/manifest.json"))["seq_len"] == 16
    assert read_manifest(f"{uri}/train")["seq_len"] == 16  # the process's manifest cache was dropped


def test_unfinished_upload_never_looks_finished(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from gf_train.config.data import DataConfig, StreamConfig
    from gf_train.data import build_loader

    inp = write_jsonl(tmp_path / "c.jsonl", docs[:200])
    local, uri = tmp_path / "local", f"s3://{s3}/ds"
    tokenize_corpus([str(inp)], local, str(bpe_json), 32, val_fraction=0.1, progress=False, log=lambda s: 0)
    shard = next((local / "val").rglob("shard.*"))  # a file that vanishes mid-upload
    shard.unlink()
    shard.symlink_to(tmp_path / "missing")
    with pytest.raises(OSError):
        remote.upload_dataset(local, uri, log=lambda s: 0)
    left = objects(s3, "ds")
    assert remote.MARKER in left and "manifest.json" not in left and "train/index.json" in left
    with pytest.raises(FileNotFoundError, match="did not finish"):
        read_manifest(f"{uri}/train")
    cfg = DataConfig(train=[StreamConfig(path=f"{uri}/train")], cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="did not finish"):
        build_loader(cfg, "train", seq_len=32, micro_batch=2, global_batch=2, world_size=1, rank=0)
    # the same command again replaces the unfinished upload without --overwrite
    capsys.readouterr()
    args = ["--input", str(inp), "--tokenizer", str(bpe_json), "--val-fraction", "0.1", "--seq-len", "32"]
    assert run_main([*args, "--out", uri, "--stage-dir", str(tmp_path / "stage")]) == 0
    assert "unfinished upload" in capsys.readouterr().out
    done = objects(s3, "ds")
    assert remote.MARKER not in done and "manifest.json" in done
    assert read_manifest(f"{uri}/train")["splits"]["train"]["samples"] > 0
    # a prefix holding other things (no manifest, no marker) is never replaced without --overwrite
    remote.client().put_object(Bucket=s3, Key="notes/readme.txt", Body=b"keep me")
    assert run_main([*args, "--out", f"s3://{s3}/notes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a gf-train dataset" in err and "--overwrite" in err
    assert get(s3, "notes/readme.txt") == b"keep me"


@pytest.mark.parametrize("case", ["no credentials", "no bucket", "endpoint down"])
def test_one_line_errors_before_any_work(case: str, s3: str, tmp_path: Path, docs: list[str],
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    inp = write_jsonl(tmp_path / "c.jsonl", docs[:50])
    uri, stage, endpoint = f"s3://{s3}/ds", tmp_path / "stage", os.environ[remote.ENDPOINT_ENV]
    remote.client().put_object(Bucket=s3, Key="ds/manifest.json", Body=b"{}")  # (private) for the read checks
    if case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        want_write, want_read = "no AWS credentials found", "no AWS credentials found and the bucket is not public"
    elif case == "no bucket":
        uri = f"s3://{s3}-missing/ds"
        want_write = want_read = f"bucket '{s3}-missing' does not exist"
    else:
        monkeypatch.setenv(remote.ENDPOINT_ENV, f"http://127.0.0.1:{free_port()}")
        want_write = want_read = "cannot reach"
    t = time.monotonic()
    assert run_main(["--input", str(inp), "--out", uri, "--seq-len", "32", "--stage-dir", str(stage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and want_write in err and uri in err, err
    assert not stage.exists()  # no work started: nothing built locally
    with pytest.raises(ValueError, match=want_read) as e:  # the trainer's and exporter's manifest reads
        read_manifest(f"{uri}/train")
    assert "\n" not in str(e.value)
    assert time.monotonic() - t < 30
    import boto3

    c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1")
    assert [o["Key"] for o in c.list_objects_v2(Bucket=s3)["Contents"]] == ["ds/manifest.json"]  # nothing written
    assert c.get_object(Bucket=s3, Key="ds/manifest.json")["Body"].read() == b"{}"


@pytest.mark.slow
@pytest.mark.dist
def test_train_from_s3_two_ranks_exact_resume_and_export(s3: str, s3_endpoint: str, tmp_path: Path,
                                                         docs: list[str], bpe_json: Path) -> None:
    from tests.train.conftest import launch, losses, metrics, ok

    inp = write_jsonl(tmp_path / "c.jsonl", docs)
    uri = f"s3://{s3}/bpe32"
    # small shards and a cache limit below the split's size: shards are evicted while 2 ranks read them
    remote.tokenize_to_remote(tokenize_corpus, [str(inp)], uri, str(bpe_json), 32, val_fraction=0.1, shard_bytes=6_000,
                          stage_dir=tmp_path / "stage", progress=False, log=lambda s: 0)
    index = json.loads(get(s3, "bpe32/train/index.json"))
    limit = 5 * max(s["raw_data"]["bytes"] + s["zip_data"]["bytes"] for s in index["shards"])
    assert sum(s["raw_data"]["bytes"] for s in index["shards"]) > 2 * limit
    cache = tmp_path / "cache"
    over = (f"data.train=[{{path: {uri}/train}}]", f"data.val=[{{path: {uri}/val}}]", f"data.cache_dir={cache}",
            f"data.cache_limit={limit}",
            "model.vocab_size=768", "model.tokenizer=null", "model.ctx_len=32", "model.n_layer=2", "model.n_embd=32",
            "schedule.max_steps=4", "schedule.warmup_steps=2", "checkpoint.every_steps=null", "eval.every_steps=4",
            "eval.max_tokens=256", "log.every_steps=1", "log.progress_bar=false")
    env: dict[str, str | None] = dict(s3_env(s3_endpoint))
    recipe = REPO / "recipes" / "debug_cpu.yaml"
    a, b = tmp_path / "a", tmp_path / "b"
    ok(launch(a, *over, nproc=2, fake=False, config=recipe, env=env, timeout=600))
    ok(launch(b, "--stop-at-step", "2", *over, nproc=2, fake=False, config=recipe, env=env, timeout=600))
    ok(launch(b, *over, nproc=2, fake=False, config=recipe, env=env, timeout=600))
    assert len(losses(a)) == 4 and losses(a) == losses(b)  # exact: same machine, same data order
    assert [r["step"] for r in metrics(b) if "val_loss" in r] == [4]
    # the shards came from the server into the cache (keyed by the manifest), for both splits, each held to
    # the limit: some train shards were evicted
    for split in ("train", "val"):
        idx = list(cache.glob(f"s3/{s3}/bpe32/*/{split}/index.json"))
        assert len(idx) == 1 and json.loads(idx[0].read_text())["shards"], split
        held = [p for p in idx[0].parent.rglob("shard.*") if p.is_file()]
        assert held and sum(p.stat().st_size for p in held) <= limit, split
    assert len(list(idx[0].parent.parent.joinpath("train").rglob("shard.*"))) < len(index["shards"])
    # export reads the run's data summary and tokenizer from the remote manifest
    from gf_train.cli import main as cli

    out = tmp_path / f"export_{tmp_path.name}"
    assert cli(["export", "--checkpoint", str(b), "--out", str(out), "--dtype", "fp32"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    tokens = read_manifest(uri)["splits"]["train"]["tokens"]
    assert f"`{uri}/train`: {tokens:,} tokens" in (out / "README.md").read_text()


def test_uri_rules_without_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gf_train.config.data import StreamConfig

    with pytest.raises(ValueError, match="only s3:// URIs.*S3_ENDPOINT_URL"):
        read_manifest("gs://bucket/ds/train")
    with pytest.raises(ValueError, match="data.cache_dir"):
        StreamConfig(path="s3://bucket/ds/train", remote="s3://bucket/other")
    # the local mirror of a split is keyed by the manifest: a re-uploaded dataset never meets stale shards
    a = remote.cache_dir("s3://bucket/ds/train", '{"fingerprint": "a"}', tmp_path)
    b = remote.cache_dir("s3://bucket/ds/train", '{"fingerprint": "b"}', tmp_path)
    assert a.name == b.name == "train" and a.parent != b.parent and a.parent.parent == tmp_path / "s3/bucket/ds"
    inp = write_jsonl(tmp_path / "c.jsonl", ["some text"])
    assert run_main(["--input", str(inp), "--out", "s3://bucket", "--seq-len", "8"]) == 2
    assert "give a prefix inside the bucket" in capsys.readouterr().err
