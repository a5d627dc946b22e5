"""The README's first command, end to end with fewer steps: corpus -> tokenize -> train on 2 CPU ranks ->
stop + resume -> export -> eval vs unigram entropy -> sample -> plot (marker `slow`, about 2-3 minutes)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from gf_train.distributed.info import launch_free_env
from tests._procs import run_group

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.dist
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    env = launch_free_env()
    res = run_group([sys.executable, "-m", "gf_train.quickstart", "--out", str(out), "--steps", "60",
                     "--corpus-mb", "1.5", "--max-new-tokens", "12"], cwd=REPO, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    # real text, tokenized by the user-facing script, split into train and val
    first = json.loads((out / "corpus" / "stdlib_docs.jsonl").read_text().splitlines()[0])
    assert "argparse" in first["text"] and len(first["text"]) > 1000
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 200_000 and manifest["splits"]["val"]["tokens"] > 0
    # stopped midway, then resumed to the end; both launches were torchrun with 2 ranks
    log = (out / "quickstart.log").read_text()
    assert log.count("torch.distributed.run --nproc_per_node 2") == 2 and "--stop-at-step 30" in log
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert max(steps) == 60 and 30 in steps
    # one number for one model and set: the printed validation loss (gf_train.evaluate on the export) is the
    # trainer's last val_loss (gf_train.evaluate on the engine, 2 ranks), on the whole val split, named as such
    printed = re.search(r"validation loss (\d+\.\d{3}) nats/token on the whole val split \(", res.stdout)
    assert printed, res.stdout[-3000:]
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val] == [30, 60] and f"{val[-1]['val_loss']:.3f}" == printed.group(1)
    assert abs(summary["val_loss"] - val[-1]["val_loss"]) < 1e-4
    assert val[-1]["val_tokens"] == manifest["splits"]["val"]["samples"] * manifest["seq_len"]
    assert "validation set: the whole val split" in log
    # the console line and the plot show the loss averaged over each logging interval
    train_rows = [r for r in rows if "loss" in r]
    assert all("loss_avg" in r and r["grad_norm"] is not None for r in train_rows)
    assert (out / "run" / "checkpoints" / "step_00000060" / "COMPLETE").is_file()
    # the model learned something: validation loss clearly under the corpus's unigram entropy
    assert summary["val_loss"] < summary["unigram_entropy"] - 0.3, summary
    assert "unigram entropy" in res.stdout and "validation loss" in res.stdout
    # export, sample and plot are where the summary says
    export = Path(summary["export"])
    assert (export / "model.safetensors").is_file() and (export / "LICENSE").is_file()
    assert "---- sample ----\nThe json module" in res.stdout and "tokens/s" in res.stdout
    assert Path(summary["plot"]).read_bytes()[:4] == b"\x89PNG"
    for key in ("corpus", "data", "run", "export", "plot"):
        assert summary[key] in res.stdout


@pytest.mark.slow
def test_corpus_is_stable_and_holds_no_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pydoc renders module globals (os.environ!) and object addresses: the corpus must hold neither, so that a
    user's secrets never reach a trained (and published) model and two runs build the same bytes."""
    from gf_train.quickstart import build_corpus

    monkeypatch.setenv("GF_TEST_SECRET_TOKEN", "s3cr3t-value-8d1f")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    build_corpus(a, 3_000_000)
    import typing

    for obj in vars(typing).values():  # what other code does to a process: creates classes' __annotations__,
        getattr(obj, "__annotations__", None)  # which pydoc then shows (the corpus is rendered in a fresh one)
    build_corpus(b, 3_000_000)
    text = a.read_text()
    assert a.read_bytes() == b.read_bytes()
    assert '"module": "os"' in text  # the module whose DATA section lists the environment was rendered
    assert "s3cr3t-value-8d1f" not in text and "GF_TEST_SECRET_TOKEN" not in text
    assert sys.prefix not in text and sys.base_prefix not in text  # no install paths (FILE sections)
