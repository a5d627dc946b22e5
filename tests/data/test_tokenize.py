"""data_prep/tokenize.py: round trip, every input format, workers, bad inputs, rerun/overwrite, manifest."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import expected_stream, is_val, read_split, write_jsonl

from gf_train.cli.data import tokenize_script
from gf_train.data import pack
from gf_train.data.readers import DataPrepError
from gf_train.data.tokenize import tokenize_corpus
from gf_train.data.tokenizers import load_tokenizer

REPO = Path(__file__).resolve().parents[2]


def run_main(argv: list[str]) -> int:
    return tokenize_script(argv + ["--no-progress"])


def check_roundtrip(out: Path, tok, docs: list[str], val_fraction: float) -> None:
    m = json.loads((out / "manifest.json").read_text())
    for split in m["splits"]:
        want_docs = [d for d in docs if d and is_val(d, val_fraction) == (split == "val")]
        want = expected_stream(tok, want_docs)
        got = read_split(out, split)
        s = m["splits"][split]
        assert len(got) == s["samples"] * (m["seq_len"] + 1)
        assert s["tokens"] == len(want) and s["docs"] == len(want_docs)
        assert len(want) - len(got) == s["remainder_tokens"] < m["seq_len"] + 1  # only the tail is dropped
        np.testing.assert_array_equal(got, want[: len(got)])
        # decode: documents joined by EOS come back (the last one is cut by the final remainder)
        cuts = np.flatnonzero(got == tok.eos_id)
        pieces = np.split(got, cuts + 1)
        decoded = [tok.decode(p[:-1].tolist()) for p in pieces[:-1]]
        assert decoded == want_docs[: len(decoded)]
        # the documents not decoded (the one cut, then whole ones) lie in the final remainder
        assert sum(len(tok.encode(d)) + 1 for d in want_docs[len(decoded) + 1:]) <= s["remainder_tokens"]


@pytest.mark.parametrize("spec", ["rwkv_world", "bpe"])
def test_roundtrip_and_manifest(tmp_path: Path, docs: list[str], bpe_json: Path, spec: str) -> None:
    spec = str(bpe_json) if spec == "bpe" else spec
    inp = write_jsonl(tmp_path / "c.jsonl", docs[:300] + [""])
    m = tokenize_corpus([str(inp)], tmp_path / "out", spec, 32, val_fraction=0.1, progress=False, log=lambda s: 0)
    tok = load_tokenizer(spec)
    check_roundtrip(tmp_path / "out", tok, docs[:300], 0.1)
    assert m["status"] == "written" and m["empty_docs"] == 1 and m["skipped_records"] == 0
    assert m["tokenizer"]["vocab_size"] == tok.vocab_size and m["dtype"] == "uint16"
    assert m["tokenizer"]["vocab_hash"] == tok.vocab_hash and m["seq_len"] == 32
    assert m["inputs"][0]["size"] == inp.stat().st_size and len(m["inputs"][0]["xxh3_128"]) == 32
    assert m["splits"]["val"]["samples"] > 0 and m["splits"]["train"]["utf8_bytes"] > 0
    assert not list(tmp_path.glob(".out.tmp-*"))
    saved = tok.save(tmp_path / "tok")
    assert saved[0].name == ("rwkv_vocab_v20230424.txt" if spec == "rwkv_world" else "tokenizer.json")


def test_every_input_format_same_documents(tmp_path: Path, docs: list[str], bpe_json: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    d = docs[:120]
    lines = "".join(json.dumps({"body": t}) + "\n" for t in d).encode()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(lines)
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "in" / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    pq.write_table(pa.table({"body": d}), tmp_path / "in" / "d.parquet", row_group_size=50)
    txt = tmp_path / "txt"
    txt.mkdir()
    for i, t in enumerate(d):
        (txt / f"{i:04d}.txt").write_text(t, encoding="utf-8")
    datasets.Dataset.from_dict({"body": d}).save_to_disk(str(tmp_path / "hf"))
    tok = load_tokenizer(str(bpe_json))
    for name, inp in [("jsonl", "in/a.jsonl"), ("gz", "in/b.jsonl.gz"), ("zst", "in/c.jsonl.zst"),
                      ("parquet", "in/d.parquet"), ("txt", "txt"), ("hf", "hf")]:
        out = tmp_path / f"out_{name}"
        m = tokenize_corpus([str(tmp_path / inp)], out, str(bpe_json), 16, text_field="body", progress=False,
                               log=lambda s: 0)
        assert m["splits"]["train"]["docs"] == len(d), name
        n = m["splits"]["train"]["samples"] * 17
        np.testing.assert_array_equal(read_split(out, "train"), expected_stream(tok, d)[:n], err_msg=name)
    # a folder and a glob: all four files in sorted order
    m = tokenize_corpus([str(tmp_path / "in" / "*.json*"), str(tmp_path / "in" / "d.parquet")], tmp_path / "g",
                           str(bpe_json), 16, text_field="body", progress=False, log=lambda s: 0)
    assert m["splits"]["train"]["docs"] == 4 * len(d) and len(m["inputs"]) == 4


@pytest.mark.parametrize("split_kw", [{"val_docs": 20}, {"val_fraction": 0.1, "shard_bytes": 8_000}],
                         ids=["val_docs", "val_fraction-pipelined"])
def test_workers_and_units_give_identical_shards(tmp_path: Path, docs: list[str], split_kw: dict,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """val_docs: pass 2 after pass 1. val_fraction with small shards: most shards are written while pass 1 is still
    running (as soon as their units are done); the result must not depend on that or on the worker count."""
    calls: list[str] = []
    for name in ("tokenize_unit", "write_shards"):
        fn = getattr(pack, name)
        monkeypatch.setattr(pack, name, lambda *a, _fn=fn, _name=name: calls.append(_name) or _fn(*a))
    inp = write_jsonl(tmp_path / "c.jsonl", docs)
    kw = dict(progress=False, log=lambda s: 0, part_samples=200, chunk_bytes=50_000, **split_kw)
    m1 = tokenize_corpus([str(inp)], tmp_path / "w1", "rwkv_world", 48, workers=1, **kw)  # jobs run in this process
    monkeypatch.undo()
    m2 = tokenize_corpus([str(inp)], tmp_path / "w2", "rwkv_world", 48, workers=2, **kw)
    assert m1["splits"] == m2["splits"]
    last_unit = len(calls) - calls[::-1].index("tokenize_unit") - 1
    if "val_docs" in split_kw:
        assert m1["splits"]["val"]["docs"] == 20 and "write_shards" not in calls[:last_unit]
    else:
        assert len(json.loads((tmp_path / "w2" / "train" / "index.json").read_text())["shards"]) > 10
        assert calls[:last_unit].count("write_shards") > 5  # pipelined: shards written before pass 1 ended
    assert len(list((tmp_path / "w1" / "train").glob("part.*"))) > 1  # several parts merged into one index
    files1 = sorted(p.relative_to(tmp_path / "w1") for p in (tmp_path / "w1").rglob("*") if p.is_file())
    files2 = sorted(p.relative_to(tmp_path / "w2") for p in (tmp_path / "w2").rglob("*") if p.is_file())
    assert files1 == files2
    for f in files1:
        if f.name != "manifest.json":
            assert (tmp_path / "w1" / f).read_bytes() == (tmp_path / "w2" / f).read_bytes(), f
    # byte-range units of one file give the same stream as one unit
    m3 = tokenize_corpus([str(inp)], tmp_path / "w3", "rwkv_world", 48, progress=False, log=lambda s: 0,
                            **split_kw)
    np.testing.assert_array_equal(read_split(tmp_path / "w1", "train"), read_split(tmp_path / "w3", "train"))
    assert m3["splits"] == m1["splits"]
    if "val_fraction" in split_kw:  # (reading leaves decompressed .mds files next to the shards)
        check_roundtrip(tmp_path / "w2", load_tokenizer("rwkv_world"), docs, 0.1)


def _bad_inputs(tmp: Path) -> list[tuple[str, list[str], str]]:
    good = json.dumps({"text": "hello world " * 20})
    (tmp / "badjson.jsonl").write_text(f"{good}\n{good}\n{{\"text\": \"oops\"\n{good}\n")
    (tmp / "nofield.jsonl").write_text(f"{good}\n{json.dumps({'body': 'x'})}\n")
    (tmp / "utf8.jsonl").write_bytes(f"{good}\n{good}\n".encode() + b'{"text": "caf\xe9"}\n')
    (tmp / "surrogate.jsonl").write_text(f"{good}\n" + '{"text": "lone \\ud800 surrogate"}\n')
    (tmp / "bad.txt").write_bytes(b"caf\xe9 au lait")
    (tmp / "empty.jsonl").write_bytes(b"")
    (tmp / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    return [
        ("malformed", ["--input", str(tmp / "badjson.jsonl")], "badjson.jsonl:3: malformed JSON"),
        ("missing_field", ["--input", str(tmp / "nofield.jsonl")], "nofield.jsonl:2: missing text field 'text'"),
        ("utf8", ["--input", str(tmp / "utf8.jsonl")], "utf8.jsonl:3: invalid UTF-8"),
        ("surrogate", ["--input", str(tmp / "surrogate.jsonl")],
         "surrogate.jsonl:2: invalid Unicode (lone surrogate U+D800 at character 5); fix the record, pass "
         "--skip-bad-records to skip it, or --replace-invalid-unicode"),
        ("txt_utf8", ["--input", str(tmp / "bad.txt")], "bad.txt:1: invalid UTF-8"),
        ("empty", ["--input", str(tmp / "empty.jsonl")], "empty.jsonl is empty"),
        ("missing", ["--input", str(tmp / "nope.jsonl")], "nope.jsonl does not exist"),
        ("glob", ["--input", str(tmp / "zzz*.jsonl")], "matches no files"),
        ("parquet", ["--input", str(tmp / "broken.parquet")], "cannot read parquet file"),
        ("tokenizer", ["--input", str(tmp / "badjson.jsonl"), "--tokenizer", str(tmp / "no_tok.json")],
         "no_tok.json' does not exist"),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_inputs_fail_clearly_and_leave_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   workers: int) -> None:
    """With 2 workers the record errors are raised in a pool worker and must reach the user the same way."""
    for name, argv, msg in _bad_inputs(tmp_path):
        out = tmp_path / f"out_{name}"
        rc = run_main(argv + ["--out", str(out), "--seq-len", "8", "--workers", str(workers)])
        err = capsys.readouterr().err
        assert rc == 2, name
        assert msg in err and err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert not out.exists() and not list(tmp_path.glob(f".out_{name}.tmp-*")), name


@pytest.mark.parametrize("workers", [1, 2])
def test_skip_bad_records_counts(tmp_path: Path, workers: int) -> None:
    _bad_inputs(tmp_path)
    ins = [str(tmp_path / f) for f in ("badjson.jsonl", "nofield.jsonl", "utf8.jsonl")]
    m = tokenize_corpus(ins, tmp_path / "o", "rwkv_world", 8, skip_bad_records=True, progress=False,
                           log=lambda s: 0, workers=workers)
    assert m["skipped_records"] == 3 and m["splits"]["train"]["docs"] == 6
    assert [i["skipped_records"] for i in m["inputs"]] == [1, 1, 1]
    assert any("badjson.jsonl:3" in e for e in m["skipped_examples"])


@pytest.mark.parametrize("workers", [1, 2])
def test_invalid_unicode_policy(tmp_path: Path, workers: int) -> None:
    """Lone surrogates and undecodable bytes: a counted skip, or U+FFFD under --replace-invalid-unicode; the
    manifest records which policy ran."""
    _bad_inputs(tmp_path)
    ins = [str(tmp_path / f) for f in ("surrogate.jsonl", "utf8.jsonl", "bad.txt")]
    m = tokenize_corpus(ins, tmp_path / "skip", "rwkv_world", 4, skip_bad_records=True, progress=False,
                           log=lambda s: 0, workers=workers)
    assert m["invalid_unicode"] == "skip" and m["replaced_records"] == 0
    assert m["skipped_records"] == 3 and m["splits"]["train"]["docs"] == 3
    assert [i["skipped_records"] for i in m["inputs"]] == [1, 1, 1]
    m = tokenize_corpus(ins, tmp_path / "repl", "rwkv_world", 1, replace_invalid_unicode=True, progress=False,
                           log=lambda s: 0, workers=workers)
    assert m["invalid_unicode"] == "replace" and m["skipped_records"] == 0 and m["replaced_records"] == 3
    assert m["splits"]["train"]["docs"] == 6 and any("surrogate.jsonl:2" in e for e in m["replaced_examples"])
    assert json.loads((tmp_path / "repl" / "manifest.json").read_text())["invalid_unicode"] == "replace"
    tok = load_tokenizer("rwkv_world")
    stream = read_split(tmp_path / "repl", "train")
    text = tok.decode([int(t) for t in stream if t != tok.eos_id])
    assert "lone \ufffd surrogate" in text and "caf\ufffd au la" in text and text.count("caf\ufffd") == 2
    plain = tokenize_corpus([ins[1]], tmp_path / "plain", "rwkv_world", 4, skip_bad_records=True, progress=False,
                               log=lambda s: 0)
    assert plain["invalid_unicode"] == "skip" and plain["fingerprint"] != m["fingerprint"]


def test_replace_invalid_unicode_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bad_inputs(tmp_path)
    out = tmp_path / "o"
    assert run_main(["--input", str(tmp_path / "surrogate.jsonl"), "--out", str(out), "--seq-len", "2",
                     "--replace-invalid-unicode"]) == 0
    assert "invalid Unicode replaced by U+FFFD: 1" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert (m["invalid_unicode"], m["replaced_records"], m["skipped_records"]) == ("replace", 1, 0)


@pytest.mark.slow
def test_script_rerun_noop_overwrite(tmp_path: Path, docs: list[str]) -> None:
    inp = write_jsonl(tmp_path / "c.jsonl", docs[:200])
    out = tmp_path / "ds"
    cmd = [sys.executable, str(REPO / "data_prep" / "tokenize.py"), "--input", str(inp), "--out", str(out),
           "--seq-len", "32", "--val-fraction", "0.05", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO / "data_prep")
    assert r.returncode == 0, r.stderr
    assert "train:" in r.stdout and "final tokens dropped" in r.stdout
    before = (out / "manifest.json").read_text()
    again = tokenize_corpus([str(inp)], out, "rwkv_world", 32, val_fraction=0.05, progress=False, log=lambda s: 0)
    assert again["status"] == "noop" and (out / "manifest.json").read_text() == before
    with pytest.raises(DataPrepError, match="pass --overwrite"):
        tokenize_corpus([str(inp)], out, "rwkv_world", 64, progress=False, log=lambda s: 0)
    m = tokenize_corpus([str(inp)], out, "rwkv_world", 64, overwrite=True, progress=False, log=lambda s: 0)
    assert m["status"] == "written" and json.loads((out / "manifest.json").read_text())["seq_len"] == 64
    assert "val" not in m["splits"] and not (out / "val").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "ds"]
    r = subprocess.run([sys.executable, str(REPO / "data_prep" / "inspect.py"), str(out / "train"), "--samples", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"seq_len": 64' in r.stdout and "--- train sample 0: 65 tokens" in r.stdout


def test_crash_leaves_no_finished_output(tmp_path: Path, docs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    inp = write_jsonl(tmp_path / "c.jsonl", docs[:100])

    def boom(*a: object, **k: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(pack, "merge_parts", boom)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus([str(inp)], tmp_path / "ds", "rwkv_world", 16, progress=False, log=lambda s: 0)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.tmp-*"))


def test_flag_errors(tmp_path: Path, docs: list[str]) -> None:
    inp = str(write_jsonl(tmp_path / "c.jsonl", docs[:20]))
    with pytest.raises(DataPrepError, match="fewer than one sample"):
        tokenize_corpus([inp], tmp_path / "o", "rwkv_world", 100_000, progress=False, log=lambda s: 0)
    with pytest.raises(DataPrepError, match="val-fraction"):
        tokenize_corpus([inp], tmp_path / "o", "rwkv_world", 8, val_fraction=1.5, progress=False)
    with pytest.raises(DataPrepError, match="not a single rwkv_world token|outside"):
        tokenize_corpus([inp], tmp_path / "o", "rwkv_world", 8, eos=70000, progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("seq_len,shard_bytes,part_samples", [(48, 20_000, 150), (300, 1 << 26, None), (40, 50, 30)])
def test_shards_are_mdswriter_bytes(tmp_path: Path, docs: list[str], seq_len: int, shard_bytes: int,
                                    part_samples: int | None) -> None:
    """pack.write_shards builds shards itself: each part must be byte for byte what MDSWriter writes for its samples
    (the last case has samples larger than a shard: the MDSWriter fallback, with its empty first shard)."""
    from gf_train.data.compat import ensure_torchvision

    ensure_torchvision()
    from streaming import MDSWriter

    inp = write_jsonl(tmp_path / "c.jsonl", docs[:150])
    tokenize_corpus([str(inp)], tmp_path / "ds", "rwkv_world", seq_len, progress=False, log=lambda s: 0,
                       shard_bytes=shard_bytes, part_samples=part_samples)
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    flat = read_split(tmp_path / "ds", "train").astype(m["dtype"]).reshape(-1, seq_len + 1)
    index = json.loads((tmp_path / "ds" / "train" / "index.json").read_text())
    parts = sorted((tmp_path / "ds" / "train").glob("part.*"))
    assert len(parts) >= 2 or part_samples is None
    row = 0
    for part in parts:
        n = sum(s["samples"] for s in index["shards"] if s["zip_data"]["basename"].startswith(part.name + "/"))
        ref = tmp_path / "ref" / part.name
        with MDSWriter(out=str(ref), columns={"tokens": f"ndarray:{m['dtype']}:{seq_len + 1}"}, compression="zstd",
                       size_limit=shard_bytes) as w:
            for r in flat[row: row + n]:
                w.write({"tokens": r})
        row += n
        ours = sorted(p.name for p in part.glob("*.zstd"))  # (reading decompressed the raw .mds next to them)
        assert ours and ours == sorted(p.name for p in ref.iterdir() if p.name != "index.json")
        for name in ours:
            assert (part / name).read_bytes() == (ref / name).read_bytes(), (part.name, name)
        want = json.loads((ref / "index.json").read_text())["shards"]
        got = [s for s in index["shards"] if s["zip_data"]["basename"].startswith(part.name + "/")]
        for s in got:
            for k in ("raw_data", "zip_data"):
                s[k]["basename"] = s[k]["basename"].split("/", 1)[1]
        assert got == want
    assert row == len(flat)


def test_jsonl_parsing_matches_json(tmp_path: Path) -> None:
    """orjson is only a fast path: lines it rejects or reads differently get json's result and json's errors."""
    from gf_train.data.readers import _text_of, _text_of_json

    lines = [b'{"text": "a", "text": "b"}', b'\xef\xbb\xbf{"text": "bom"}', b'{"text": "\\ud800 lone"}',
             b'{"text": "x", "n": NaN}', b'{"text": 123456789012345678901234567890}', b'{"text": "caf\xe9"}',
             b'{"text": "\\ud83d\\ude00 \\u0000"}', b'["text"]', b'{"body": "x"}', b'{"text": "a"} x',
             b'{"text": 1e400}']
    for line in lines:
        try:
            want: object = _text_of_json(line, "text")
        except ValueError as e:
            want = ("error", str(e))
        try:
            got: object = _text_of(line, "text")
        except ValueError as e:
            got = ("error", str(e))
        assert got == want, line
