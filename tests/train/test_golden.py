"""The real model and data: golden per-step losses of recipes/debug_cpu.yaml (compared with `==`) and a
fast exact-resume smoke test through `python -m gf_train train`.

Regenerate the golden file (after an intended numerical change) with
`GF_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/train/test_golden.py -m slow` and commit
tests/assets/golden_debug_cpu.json. Golden values are tied to this CPU/torch build (float summation order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.train.conftest import REPO, launch, losses, metrics, ok

RECIPE = REPO / "recipes" / "debug_cpu.yaml"
GOLDEN = REPO / "tests" / "assets" / "golden_debug_cpu.json"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.train.golden_data import make_corpus

    return make_corpus(tmp_path_factory.mktemp("golden"), seq_len=64)


def _data(corpus: Path) -> tuple[str, str]:
    return f"data.train=[{{path: {corpus / 'train'}}}]", f"data.val=[{{path: {corpus / 'val'}}}]"


@pytest.mark.slow
@pytest.mark.dist
def test_golden_debug_cpu(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(launch(run, *_data(corpus), "log.every_steps=1", "log.progress_bar=false", nproc=2, fake=False,
              config=RECIPE, timeout=900))
    got = {str(k): v for k, v in losses(run).items()}
    val = [r for r in metrics(run) if "val_loss" in r]
    assert [r["step"] for r in val] == [20, 40] and val[-1]["val_bpb"] > 0
    if os.environ.get("GF_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps({"recipe": "recipes/debug_cpu.yaml", "nproc": 2, "losses": got}, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())["losses"]
    assert got == want


def test_real_model_exact_resume(corpus: Path, tmp_path: Path) -> None:
    over = (*_data(corpus), "log.every_steps=1", "schedule.max_steps=4", "checkpoint.every_steps=null",
            "eval.every_steps=null", "model.n_layer=2", "dist.zero_stage=1")
    a, b = tmp_path / "a", tmp_path / "b"
    ok(launch(a, *over, fake=False, config=RECIPE))
    ok(launch(b, "--stop-at-step", "2", *over, fake=False, config=RECIPE))
    ok(launch(b, *over, fake=False, config=RECIPE))
    assert len(losses(a)) == 4 and losses(a) == losses(b)
    assert any("val_bpb" in r for r in metrics(a))
    # the run records its tokenizer (from the data manifest): config.yaml, hence every checkpoint and export
    vocab_hash = json.loads((corpus / "manifest.json").read_text())["tokenizer"]["vocab_hash"]
    for saved in (a / "config.yaml", a / "checkpoints" / "step_00000004" / "config.yaml"):
        assert "tokenizer: rwkv_world" in saved.read_text() and f"vocab_hash: {vocab_hash}" in saved.read_text()
