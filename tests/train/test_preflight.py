"""Fail before work: every check the config and the manifests allow runs before the model is built, DeepSpeed
starts or the run dir is written (gf_train.train.preflight), with one line naming the culprit and the fix;
tokenizer identity between data, model config, resumed checkpoint and --init-from weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gf_train.config import dump, load
from gf_train.train.preflight import preflight
from tests.train.conftest import REPO

RECIPE = REPO / "recipes" / "debug_cpu.yaml"
TEXT = ("Validation data must be honest about what it measures. The quick brown fox jumps over the lazy dog. "
        "Tokenizers map text to ids; two tokenizers map the same text to different ids. ")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """rwkv_world at seq_len 64 and 32, and a 300-entry BPE tokenizer at seq_len 64."""
    from gf_train.data.tokenize import tokenize_corpus
    from tests._bpe import save_bpe_tokenizer

    root = tmp_path_factory.mktemp("preflight")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"{TEXT * 3} document {i}."}) + "\n" for i in range(60)))
    save_bpe_tokenizer(root / "tokenizer.json", [TEXT] * 20)
    out = {}
    for name, spec, seq in (("rwkv", "rwkv_world", 64), ("rwkv32", "rwkv_world", 32),
                            ("bpe", str(root / "tokenizer.json"), 64)):
        out[name] = root / name
        tokenize_corpus([str(docs)], out[name], spec, seq, val_docs=8, progress=False, log=lambda s: 0)
    return out


def _cfg(train: Path, val: Path | None = None, *over: str):
    data = [f"data.train=[{{path: {train}}}]", f"data.val=[{{path: {val or train.parent / 'val'}}}]"]
    return load([RECIPE], [*data, *over])


def test_good_data_passes_and_fills_the_tokenizer(datasets: dict[str, Path], tmp_path: Path) -> None:
    cfg = _cfg(datasets["rwkv"] / "train", None, "model.tokenizer=null")
    tid = preflight(cfg, tmp_path / "run")
    manifest = json.loads((datasets["rwkv"] / "manifest.json").read_text())
    assert tid is not None and (tid.name, tid.vocab_hash) == ("rwkv_world", manifest["tokenizer"]["vocab_hash"])
    assert (cfg.model.tokenizer, cfg.model.vocab_hash) == ("rwkv_world", manifest["tokenizer"]["vocab_hash"])
    assert f"vocab_hash: {tid.vocab_hash}" in dump(cfg)  # config.yaml, checkpoints and exports record it
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["missing_train", "missing_val", "no_manifest", "vocab", "seq_len", "tokenizer",
                                  "mixed"])
def test_bad_data_is_refused_before_work(datasets: dict[str, Path], tmp_path: Path, case: str) -> None:
    rwkv, bpe = datasets["rwkv"], datasets["bpe"]
    (tmp_path / "empty").mkdir()
    cfg, match = {
        "missing_train": (_cfg(tmp_path / "nope" / "train"), r"data.train\[0\].path .*nope/train does not exist; fix"),
        "missing_val": (_cfg(rwkv / "train", tmp_path / "nope"), r"data.val\[0\].path .*nope does not exist"),
        "no_manifest": (_cfg(tmp_path / "empty"), r"data.train\[0\].path .*empty: no manifest.json"),
        "vocab": (_cfg(rwkv / "train", None, "model.vocab_size=1000", "model.tokenizer=null"),
                  r"vocab_size 65536\) but the model has vocab_size 1000; set model.vocab_size >= 65536"),
        "seq_len": (_cfg(datasets["rwkv32"] / "train"),
                    r"the data has seq_len 32 but model.ctx_len is 64; set model.ctx_len=32 or re-tokenize"),
        "tokenizer": (_cfg(bpe / "train"), r"tokenized with hf:tokenizer.json \(vocab_hash \w+\) but model.tokenizer "
                                           r"is rwkv_world; use data tokenized with the model's tokenizer"),
        "mixed": (_cfg(rwkv / "train", bpe / "val", "model.tokenizer=null"),
                  r"differs from .*; all streams of a run must use one tokenizer"),
    }[case]
    with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
        preflight(cfg, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def _fake_source(folder: Path, cfg, tokenizer: str, vocab_hash: str, export: bool) -> Path:
    """A checkpoint step dir (config.yaml + COMPLETE) or an export folder (config.json) recording a tokenizer."""
    folder.mkdir(parents=True)
    if export:
        gf_model = {"tokenizer": tokenizer, "vocab_hash": vocab_hash}
        (folder / "config.json").write_text(json.dumps({"gf_model": gf_model}))
    else:
        cfg.model.tokenizer, cfg.model.vocab_hash = tokenizer, vocab_hash
        (folder / "config.yaml").write_text(dump(cfg))
        (folder / "COMPLETE").write_text("ok\n")
    return folder


def test_resume_and_init_from_another_tokenizer(datasets: dict[str, Path], tmp_path: Path) -> None:
    rwkv = datasets["rwkv"] / "train"
    run = tmp_path / "run"
    other = _cfg(rwkv)
    _fake_source(run / "checkpoints" / "step_00000004", other, "hf:tokenizer.json", "0123456789abcdef", export=False)
    with pytest.raises(ValueError, match=r"checkpoint .*step_00000004 was trained with tokenizer hf:tokenizer.json "
                                         r"\(vocab_hash 0123456789abcdef\) but this run's data uses rwkv_world"):
        preflight(_cfg(rwkv), run)
    same = _fake_source(tmp_path / "same" / "checkpoints" / "step_00000002", _cfg(rwkv), "rwkv_world",
                        preflight(_cfg(rwkv), tmp_path / "x").vocab_hash, export=False)  # type: ignore[union-attr]
    preflight(_cfg(rwkv), same.parents[1])  # resuming the same tokenizer is fine
    exp = _fake_source(tmp_path / "exp", other, "hf:tokenizer.json", "0123456789abcdef", export=True)
    with pytest.raises(ValueError, match=r"--init-from .*exp was trained with tokenizer hf:tokenizer.json .*set "
                                         r"data.allow_new_tokenizer=true"):
        preflight(_cfg(rwkv), tmp_path / "new", init_from=exp)
    # the documented override: continued pretraining with a new tokenizer
    tid = preflight(_cfg(rwkv, None, "data.allow_new_tokenizer=true"), tmp_path / "new", init_from=exp)
    assert tid is not None and tid.name == "rwkv_world"
    with pytest.raises(FileNotFoundError, match="--init-from .*nowhere does not exist"):
        preflight(_cfg(rwkv), tmp_path / "new", init_from=tmp_path / "nowhere")


@pytest.mark.slow
def test_cli_exits_before_any_work(datasets: dict[str, Path], tmp_path: Path) -> None:
    """Through `gf-train train`: exit 1, the error is one line naming the culprit and the fix, no run dir (no
    config.yaml left behind), and it comes before the model is built (no parameter count logged)."""
    for name, data, match in (("bpe", datasets["bpe"], "but model.tokenizer is rwkv_world"),
                              ("ctx", datasets["rwkv32"], "set model.ctx_len=32"),
                              ("missing", tmp_path / "nope", "does not exist")):
        run = tmp_path / f"run_{name}"
        res = subprocess.run([sys.executable, "-m", "gf_train", "train", "--config", str(RECIPE), "--run-dir", str(run),
                              f"data.train=[{{path: {data / 'train'}}}]", f"data.val=[{{path: {data / 'val'}}}]"],
                             cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO)})
        assert res.returncode == 1, res.stderr[-3000:]
        errors = [line for line in res.stderr.splitlines() if line.startswith("gf-train: error:")]
        assert len(errors) == 1 and match in errors[0], res.stderr[-3000:]
        assert "parameters" not in res.stderr and not run.exists()
