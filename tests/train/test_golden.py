"""The real model and data: golden per-step losses of recipes/debug_cpu.yaml (within a CPU-drift tolerance,
see tests/train/golden.py), a check that the tolerance still catches a small real change, and a fast
exact-resume smoke test through `python -m gf_train train`.

Regenerate the golden file after an intended numerical change with `.venv/bin/python -m tests.train.update_golden`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gf_train.config.loader import load
from tests.train.conftest import launch, losses, metrics, ok
from tests.train.golden import RECIPE, data_overrides, load_golden, mismatches, run_recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.train.golden_data import make_corpus

    return make_corpus(tmp_path_factory.mktemp("golden"), seq_len=64)


@pytest.mark.slow
@pytest.mark.dist
def test_golden_debug_cpu(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    got = run_recipe(corpus, run)
    val = [r for r in metrics(run) if "val_loss" in r]
    assert [r["step"] for r in val] == [20, 40] and val[-1]["val_bpb"] > 0
    want = load_golden()
    assert sorted(got, key=int) == sorted(want, key=int)
    assert not (bad := mismatches(got, want)), "\n".join(bad)


@pytest.mark.slow
@pytest.mark.dist
def test_golden_catches_lr_change(corpus: Path, tmp_path: Path) -> None:
    """lr x 1.01 for 10 steps (moves step 10 by ~1.3e-3 relative) must fail the golden comparison, while
    the unchanged steps 1-2 (before the lr difference reaches the loss) still pass it."""
    lr = load([RECIPE], []).optim.lr
    got = run_recipe(corpus, tmp_path / "run", f"optim.lr={lr * 1.01!r}", flags=("--stop-at-step", "10"))
    assert sorted(got, key=int) == [str(s) for s in range(1, 11)]
    bad = mismatches(got, load_golden())
    assert bad and all(int(line.split()[1].rstrip(":")) >= 3 for line in bad), bad
    assert "step 10:" in "\n".join(bad)
    assert not mismatches({k: got[k] for k in ("1", "2")}, load_golden())


@pytest.mark.slow
def test_real_model_exact_resume(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    over = (*data_overrides(corpus), "log.every_steps=1", "schedule.max_steps=4", "checkpoint.every_steps=null",
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
    # so export refuses to ship another tokenizer with these weights, before any work
    from gf_train.cli import main as cli
    from tests._bpe import save_bpe_tokenizer

    out = tmp_path / "export"
    other = str(save_bpe_tokenizer(tmp_path / "tokenizer.json", ["gold finch"] * 4, vocab_size=270))
    assert cli(["export", "--checkpoint", str(a), "--out", str(out), "--tokenizer", other]) == 1
    assert not out.exists() and "trained with rwkv_world" in capsys.readouterr().err
