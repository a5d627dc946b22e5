"""Reading s3:// datasets outside training, and the local mirror's policy, against a real S3-compatible server
(the `s3` fixture of tests/data/conftest.py): `gf-train eval` and `gf-train data inspect` /
`data_prep/inspect.py` on s3:// give what they give on the same dataset tokenized locally, with the same
one-line errors before any work; `data.cache_limit` evicts shards while the samples (and a resumed order)
stay exactly those of the local dataset; `gf-train data cache-clean` removes mirrors and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_helpers import s3_env, write_jsonl

from gf_train.cli import main as cli
from gf_train.cli.data import inspect_script, tokenize_script
from gf_train.config.data import DataConfig, StreamConfig, parse_bytes
from gf_train.data import build_loader, open_split, read_manifest
from gf_train.data import remote as rm
from gf_train.data.tokenize import tokenize_corpus
from gf_train.distributed.info import free_port

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "debug_cpu.yaml"


def _tokenize_both(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path, name: str = "ds",
                   **kw: object) -> tuple[Path, str]:
    """The same corpus tokenized into a local folder and to s3://<bucket>/<name>; (local, uri)."""
    inp = write_jsonl(tmp_path / f"{name}.jsonl", docs)
    local, uri = tmp_path / f"local_{name}", f"s3://{s3}/{name}"
    args = dict(val_fraction=0.2, progress=False, log=lambda s: 0, **kw)
    tokenize_corpus([str(inp)], local, str(bpe_json), 32, **args)  # type: ignore[arg-type]
    rm.tokenize_to_remote(tokenize_corpus, [str(inp)], uri, str(bpe_json), 32, stage_dir=tmp_path / "stage",
                          **args)  # type: ignore[arg-type]
    return local, uri


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A tiny GoldFinch export with non-trivial weights (vocab 768 > the BPE's 700)."""
    from gf_train.export.hf_dir import write_export
    from tests.export.export_helpers import inputs_for, random_model, tiny_config

    model = random_model(tiny_config(vocab_size=768, ctx_len=32, n_layer=2))
    return write_export(inputs_for(model), tmp_path / f"export_{tmp_path.name}")


def _eval(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert cli(["eval", *argv, "--json", "--batch-size", "3"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_on_s3_equals_eval_on_the_local_dataset(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path,
                                                      export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local, uri = _tokenize_both(s3, tmp_path, docs[:80], bpe_json)
    cache = tmp_path / "cache"
    want = _eval(capsys, "--model", str(export), "--data", str(local))
    assert want["samples"] > 3 and want["bits_per_byte"] is not None
    # the same tokens, so the very same numbers (one machine: exact), from the root URI and a split URI
    assert _eval(capsys, "--model", str(export), "--data", uri, "--cache-dir", str(cache)) == want
    sub = ["--max-tokens", "96", "--seed", "3"]
    for split in ("val", "train"):
        got = _eval(capsys, "--model", str(export), "--data", f"{uri}/{split}/", "--cache-dir", str(cache), *sub)
        assert got["split"] == split and got["tokens"] == 96
        assert got == _eval(capsys, "--model", str(export), "--data", str(local), "--split", split, *sub)
    # the shards came into the cache through streaming, in the trainer's layout
    (mirror,) = cache.glob(f"s3/{s3}/ds/*/val")
    assert {p.name for p in mirror.iterdir()} >= {"index.json"} and any(mirror.rglob("shard.*.mds"))
    # a split the dataset does not have, a cache limit too small for the split: one line, before the model is
    # loaded (it does not exist)
    too_small = f"--cache-limit=1kb (1,024 bytes) is too small for --data {uri}/val"
    for args, want_err in ((["--split", "test"], "has no 'test' split"), (["--cache-limit", "1kb"], too_small)):
        assert cli(["eval", "--model", str(tmp_path / "no-model"), "--data", uri, *args]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and want_err in err, err


@pytest.mark.parametrize("case", ["no credentials", "no bucket", "endpoint down", "no dataset"])
def test_eval_and_inspect_fail_in_one_line_before_any_work(case: str, s3: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    uri, cache = f"s3://{s3}/ds", tmp_path / "cache"
    rm.client().put_object(Bucket=s3, Key="ds/manifest.json", Body=b"{}")  # private: only credentials read it
    if case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        want = "no AWS credentials found"
    elif case == "no bucket":
        uri, want = f"s3://{s3}-missing/ds", f"bucket '{s3}-missing' does not exist"
    elif case == "endpoint down":
        monkeypatch.setenv(rm.ENDPOINT_ENV, f"http://127.0.0.1:{free_port()}")
        want = "cannot reach"
    else:
        uri, want = f"s3://{s3}/elsewhere", "no manifest.json at"
    rm._manifest_cache.clear()
    # --model does not exist: an error about the data proves the data was checked first
    assert cli(["eval", "--model", str(tmp_path / "no-model"), "--data", uri, "--cache-dir", str(cache)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and want in err and "no-model" not in err, err
    assert inspect_script([f"{uri}/train", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and want in err, err
    # training: the same line from its checks before work (no run dir, no model)
    from gf_train.config import load
    from gf_train.train.preflight import preflight

    cfg = load([RECIPE], [f"data.train=[{{path: {uri}/train}}]", f"data.val=[{{path: {uri}/val}}]",
                          f"data.cache_dir={cache}", "data.cache_limit=1gb"])
    with pytest.raises((ValueError, FileNotFoundError), match=want) as e:
        preflight(cfg, tmp_path / "run")
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()
    assert not cache.exists()  # nothing downloaded, nothing created


def test_inspect_s3_dataset_as_local(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    local, uri = _tokenize_both(s3, tmp_path, docs[:120], bpe_json)
    cache = tmp_path / "cache"

    def inspect(argv: list[str], script: bool) -> str:
        capsys.readouterr()
        assert (inspect_script(argv) if script else cli(["data", "inspect", *argv])) == 0
        return capsys.readouterr().out

    def samples(text: str) -> str:  # the decoded samples (the manifests differ only in `created`)
        return text[text.index("--- train sample 0"):]

    want = inspect([str(local), "--samples", "3"], script=False)
    got = inspect([uri, "--samples", "3", "--cache-dir", str(cache)], script=False)
    assert samples(got) == samples(want) and got.count("--- train sample") == 3
    remote_manifest = json.loads(rm.client().get_object(Bucket=s3, Key="ds/manifest.json")["Body"].read())
    assert json.loads(got[:got.index("--- train sample 0")]) == remote_manifest
    got = inspect([f"{uri}/val", "--split", "val", "--samples", "2", "--cache-dir", str(cache)], script=True)
    assert samples(got.replace("val sample", "train sample")) == samples(
        inspect([str(local / "val"), "--split", "val", "--samples", "2"], script=True).replace("val sample",
                                                                                                "train sample"))
    assert len(list(cache.glob(f"s3/{s3}/ds/*/train/index.json"))) == 1
    # a mirror being read (here by this process; in use: a training job next to an eval on one node) cannot
    # be opened by a second reader: streaming refuses, we say how to avoid it in one line
    reader = open_split([f"{uri}/train"], 32, cache_dir=str(cache))
    with pytest.raises(ValueError, match="another job on this node reads the mirror .* --cache-dir") as e:
        open_split([f"{uri}/train"], 32, cache_dir=str(cache))
    assert "\n" not in str(e.value)
    with open_split([f"{uri}/train"], 32, cache_dir=str(tmp_path / "own")) as own:
        assert own.num_samples == reader.num_samples
    n = reader.num_samples
    reader.close()  # the mirror is free again
    with open_split([f"{uri}/train"], 32, cache_dir=str(cache)) as again:
        assert again.num_samples == n


def _mirror_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.rglob("shard.*") if p.is_file())


def test_cache_limit_evicts_and_keeps_samples_and_resume_exact(s3: str, tmp_path: Path, docs: list[str],
                                                               bpe_json: Path) -> None:
    local, uri = _tokenize_both(s3, tmp_path, docs, bpe_json, shard_bytes=6_000)
    index = json.loads((local / "train" / "index.json").read_text())
    shards = index["shards"]
    assert len(shards) >= 10
    largest = max(s["raw_data"]["bytes"] + s["zip_data"]["bytes"] for s in shards)
    limit = 5 * largest  # streaming wants >= 4x the largest shard (raw + zstd)
    total_raw = sum(s["raw_data"]["bytes"] for s in shards)
    assert total_raw > 2 * limit
    cache = tmp_path / "cache"
    n = read_manifest(local)["splits"]["train"]["samples"]
    # random access in stored order through the limited mirror: the local dataset's samples, within the limit
    src = open_split([f"{uri}/train"], 32, cache_dir=str(cache), cache_limit=str(limit))
    want = open_split([str(local / "train")], 32)
    peak = 0
    for i in range(n):
        assert np.array_equal(src.sample(i), want.sample(i)), i
        peak = max(peak, _mirror_bytes(cache))
    assert 0 < peak <= limit
    mirror = next(cache.glob(f"s3/{s3}/ds/*/train"))
    assert len(list(mirror.rglob("shard.*.mds"))) < len(shards)  # evicted: not every shard is on disk
    assert not list(mirror.rglob("shard.*.zstd"))  # keep_zip=False: one copy per shard
    assert len(list((local / "train").rglob("shard.*.zstd"))) >= len(shards)  # the local dataset is untouched
    src.close()
    want.close()

    # training order with a limit: a run stopped after 3 steps and resumed gives the uninterrupted batches
    def loader(path: str, limit: str | None) -> object:
        cfg = DataConfig(train=[StreamConfig(path=path)], cache_dir=str(cache), cache_limit=limit, shuffle_seed=9)
        return build_loader(cfg, "train", seq_len=32, micro_batch=2, global_batch=4, world_size=1, rank=0)

    def take(ld: object, k: int) -> list[np.ndarray]:
        out = []
        for x, _ in ld.iter():  # type: ignore[attr-defined]
            out.append(x.numpy())
            if len(out) == k:
                return out
        raise AssertionError("loader ended")

    ref_loader = loader(str(local / "train"), None)
    ref = take(ref_loader, 16)
    ref_loader.close()  # type: ignore[attr-defined]
    first = loader(f"{uri}/train", str(limit))
    head = take(first, 6)
    state = first.state_dict()  # type: ignore[attr-defined]
    first.close()  # type: ignore[attr-defined]
    second = loader(f"{uri}/train", str(limit))
    second.load_state_dict(state)  # type: ignore[attr-defined]
    tail = take(second, 10)
    assert all(np.array_equal(a, b) for a, b in zip(head + tail, ref, strict=True))
    assert _mirror_bytes(cache) <= limit
    second.close()  # type: ignore[attr-defined]


def test_cache_limit_rules() -> None:
    assert parse_bytes("20gb") == 20 << 30 and parse_bytes("1.5kb") == 1536 and parse_bytes(4096) == 4096
    assert parse_bytes("512 MB") == 512 << 20 and parse_bytes("100b") == 100
    for bad in ("lots", "-1gb", "0", "10 pb"):
        with pytest.raises(ValueError, match="data.cache_limit must be a positive size"):
            DataConfig(cache_limit=bad)
    # a limit on a split mixing local and remote streams would delete the local shards: refused
    with pytest.raises(ValueError, match="data.train mixes local and remote streams"):
        DataConfig(train=[StreamConfig(path="s3://b/ds/train"), StreamConfig(path="/data/x/train")],
                   cache_limit="10gb")
    DataConfig(train=[StreamConfig(path="s3://b/ds/train")], val=[StreamConfig(path="/data/x/val")],
               cache_limit="10gb")  # a local-only split just gets no limit


def test_cache_limit_too_small_is_one_line(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path) -> None:
    _, uri = _tokenize_both(s3, tmp_path, docs[:200], bpe_json)
    with pytest.raises(ValueError, match=r"data.cache_limit=2kb is too small for data.val .*raise it") as e:
        open_split([f"{uri}/val"], 32, cache_dir=str(tmp_path / "cache"), cache_limit="2kb")
    assert "\n" not in str(e.value)


def test_train_refuses_a_too_small_cache_limit_before_work(s3: str, s3_endpoint: str, tmp_path: Path,
                                                            docs: list[str], bpe_json: Path) -> None:
    import subprocess
    import sys

    from gf_train.config import load
    from gf_train.train.preflight import preflight

    local, uri = _tokenize_both(s3, tmp_path, docs[:200], bpe_json, shard_bytes=6_000)
    need = {split: 4 * max(s["raw_data"]["bytes"] + s["zip_data"]["bytes"]
                           for s in json.loads((local / split / "index.json").read_text())["shards"])
            for split in ("train", "val")}
    recipe = RECIPE
    over = [f"data.train=[{{path: {uri}/train}}]", f"data.val=[{{path: {uri}/val}}]", "model.vocab_size=768",
            "model.tokenizer=null", "model.ctx_len=32", f"data.cache_dir={tmp_path / 'cache'}"]
    run = tmp_path / "run"
    for split, n in need.items():
        with pytest.raises(ValueError, match=rf"data.cache_limit={n - 1} .*too small for data.{split}.*{n:,} bytes"):
            preflight(load([recipe], [*over, f"data.cache_limit={n - 1}"]), run)
        if n >= max(need.values()):
            preflight(load([recipe], [*over, f"data.cache_limit={n}"]), run)
    assert not run.exists() and not (tmp_path / "cache").exists()  # nothing written, nothing downloaded
    res = subprocess.run([sys.executable, "-m", "gf_train", "train", "--config", str(recipe), "--run-dir", str(run),
                          *over, "data.cache_limit=1kb"], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "DS_ACCELERATOR": "cpu", **s3_env(s3_endpoint)})
    errors = [line for line in res.stderr.splitlines() if line.startswith("gf-train: error:")]
    assert res.returncode == 1 and len(errors) == 1 and "data.cache_limit=1kb" in errors[0], res.stderr[-3000:]
    assert "parameters" not in res.stderr and not run.exists()


@pytest.mark.slow
def test_cache_clean_removes_mirrors_and_nothing_else(s3: str, tmp_path: Path, docs: list[str], bpe_json: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    inp = write_jsonl(tmp_path / "c.jsonl", docs[:150])
    uri_a, uri_b = f"s3://{s3}/a", f"s3://{s3}/team/b"

    def tokenize(uri: str, seq_len: int, *extra: str) -> None:
        assert tokenize_script(["--input", str(inp), "--out", uri, "--seq-len", str(seq_len), "--tokenizer",
                                str(bpe_json), "--val-fraction", "0.2", "--no-progress", "--stage-dir",
                                str(tmp_path / "stage"), *extra]) == 0

    def read(uri: str, seq_len: int) -> None:
        for split in ("train", "val"):
            with open_split([f"{uri}/{split}"], seq_len, cache_dir=str(cache)) as src:
                src.sample(src.num_samples - 1)

    tokenize(uri_a, 32)
    tokenize(uri_b, 32)
    read(uri_a, 32)
    read(uri_b, 32)
    tokenize(uri_a, 16, "--overwrite")  # a new version of a: its old mirror is stale
    read(uri_a, 16)
    mirrors = {(m.uri, m.digest) for m in _list(cache)}
    assert len(mirrors) == 3 and {u for u, _ in mirrors} == {uri_a, uri_b}
    (cache / "notes.txt").write_text("mine")  # not a mirror: never removed
    (cache / "s3" / s3 / "team" / "keep.bin").write_bytes(b"x")
    capsys.readouterr()
    assert cli(["data", "cache-clean", "--cache-dir", str(cache), "--dry-run"]) == 0
    assert "3 mirror(s)" in capsys.readouterr().out and len(_list(cache)) == 3
    # --stale: only a's old version goes (the store says which is current)
    assert cli(["data", "cache-clean", "--cache-dir", str(cache), "--stale"]) == 0
    left = _list(cache)
    assert len(left) == 2 and {m.uri for m in left} == {uri_a, uri_b}
    with open_split([f"{uri_a}/train"], 16, cache_dir=str(cache)) as src:  # the current mirror still serves
        assert src.num_samples == read_manifest(uri_a)["splits"]["train"]["samples"]
    # one dataset by URI (a split URI names its dataset): kept while a job (here: this process) reads it
    reader = open_split([f"{uri_b}/val"], 32, cache_dir=str(cache))
    capsys.readouterr()
    assert cli(["data", "cache-clean", f"{uri_b}/train", "--cache-dir", str(cache)]) == 0
    assert "a running job on this node reads it" in capsys.readouterr().out and len(_list(cache)) == 2
    assert reader.sample(0).shape == (33,)
    reader.close()
    assert cli(["data", "cache-clean", f"{uri_b}/train", "--cache-dir", str(cache)]) == 0
    assert [m.uri for m in _list(cache)] == [uri_a]
    # then everything
    assert cli(["data", "cache-clean", "--cache-dir", str(cache)]) == 0
    assert _list(cache) == [] and not (cache / "s3" / s3 / "a").exists()
    assert (cache / "notes.txt").read_text() == "mine" and (cache / "s3" / s3 / "team" / "keep.bin").is_file()
    # a local path is not a cached dataset: one line, exit 2
    assert cli(["data", "cache-clean", str(tmp_path), "--cache-dir", str(cache)]) == 2
    assert "not an s3:// URI" in capsys.readouterr().err
    # --stale cannot ask the store: nothing removed
    read(uri_a, 16)
    monkeypatch.setenv(rm.ENDPOINT_ENV, f"http://127.0.0.1:{free_port()}")
    rm._manifest_cache.clear()
    assert cli(["data", "cache-clean", "--cache-dir", str(cache), "--stale"]) == 2
    assert "cannot reach" in capsys.readouterr().err and len(_list(cache)) == 1
    shutil.rmtree(cache)


def _list(cache: Path) -> list:
    from gf_train.data.cache import list_mirrors

    return list_mirrors(cache)
