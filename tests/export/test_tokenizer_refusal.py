"""`gf-train eval` refuses data tokenized with another tokenizer than the export's, `gf-train generate` a
`--tokenizer` that is not the model's; both before the model is loaded, with one line naming both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_helpers import inputs_for, random_model, tiny_config, unique_dir

from gf_train.cli import main as cli
from tests._bpe import save_bpe_tokenizer

TEXT = "Two tokenizers map the same text to different ids, so a loss on the wrong ids means nothing. "


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from gf_train.data.tokenize import tokenize_corpus
    from gf_train.data.tokenizers import load_tokenizer
    from gf_train.export.hf_dir import write_export

    root = tmp_path_factory.mktemp("tokref")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"{TEXT * 4} {i}"}) + "\n" for i in range(16)))
    save_bpe_tokenizer(root / "tokenizer.json", [TEXT] * 10)
    for name, spec in (("rwkv", "rwkv_world"), ("bpe", str(root / "tokenizer.json"))):
        tokenize_corpus([str(docs)], root / name, spec, 16, val_docs=4, progress=False, log=lambda s: 0)
    model = random_model(tiny_config(ctx_len=16))
    exp = write_export(inputs_for(model, load_tokenizer("rwkv_world")), unique_dir(root, "tokref"))
    return {"export": exp, "rwkv": root / "rwkv", "bpe": root / "bpe", "bpe_json": root / "tokenizer.json"}


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("gf-train: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_eval_refuses_data_of_another_tokenizer(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert cli(["eval", "--model", str(setup["export"]), "--data", str(setup["bpe"])]) == 1
    line = _one_error(capsys.readouterr().err)
    assert "was tokenized with hf:tokenizer.json (vocab_hash" in line and "trained with rwkv_world" in line
    assert "data_prep/tokenize.py --tokenizer rwkv_world" in line
    assert cli(["eval", "--model", str(setup["export"]), "--data", str(setup["rwkv"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["set"].startswith("the whole val split") and out["samples"] > 0


def test_eval_uses_the_recorded_hash(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An export whose gf_model records a vocab_hash is compared by it (rwkv_world data, other hash: refused)."""
    import shutil

    exp = unique_dir(tmp_path, "hashed")
    shutil.copytree(setup["export"], exp)
    cfg = json.loads((exp / "config.json").read_text())
    cfg["gf_model"].update(tokenizer="rwkv_world", vocab_hash="ffffffffffffffff")
    (exp / "config.json").write_text(json.dumps(cfg))
    assert cli(["eval", "--model", str(exp), "--data", str(setup["rwkv"])]) == 1
    assert "trained with rwkv_world (vocab_hash ffffffffffffffff)" in _one_error(capsys.readouterr().err)


def test_generate_refuses_another_tokenizer(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert cli(["generate", "--model", str(setup["export"]), "--prompt", "Two", "--tokenizer",
                str(setup["bpe_json"]), "--max-new-tokens", "2"]) == 1
    line = _one_error(capsys.readouterr().err)
    assert "is hf:tokenizer.json" in line and "trained with rwkv_world" in line and "drop --tokenizer" in line
    assert cli(["generate", "--model", str(setup["export"]), "--prompt", "Two", "--tokenizer", "rwkv_world",
                "--max-new-tokens", "2", "--seed", "0"]) == 0
