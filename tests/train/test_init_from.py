"""`--init-from`: a model-only warm start from a `gf-train export` folder (single file or sharded with an
index) or from a checkpoint step dir. The new run starts at step 0 with a fresh optimizer and schedule but
the loaded weights; an architecture field that differs between the weights' config and the run's config is
a clear error naming the field.

The source is a real (tiny) GoldFinch trained for 4 steps by the real trainer on the fake loader
(tests/train/fakes.py with GF_TRAIN_FAKES_REAL_MODEL=1, config tests/export/ckpt_tiny.yaml, ZeRO-2), so both
the export and the zero_to_fp32 consolidation paths are exercised on genuine DeepSpeed checkpoints.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gf_train.config import load
from tests.train.conftest import REPO, launch, losses, metrics, ok

CFG = REPO / "tests" / "export" / "ckpt_tiny.yaml"
REAL = {"GF_TRAIN_FAKES_REAL_MODEL": "1"}
NEW_RUN = ("schedule.max_steps=3", "checkpoint.every_steps=null", "eval.every_steps=null")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from gf_train.cli import main as cli

    root = tmp_path_factory.mktemp("init_from")
    run = root / "src"
    ok(launch(run, config=CFG, env=REAL))
    step = run / "checkpoints" / "step_00000004"
    assert (step / "COMPLETE").is_file()
    single, sharded = root / "export", root / "export_sharded"
    assert cli(["export", "--checkpoint", str(step), "--out", str(single), "--dtype", "fp32"]) == 0
    assert cli(["export", "--checkpoint", str(step), "--out", str(sharded), "--dtype", "fp32",
                "--max-shard-size", "20KB"]) == 0
    assert (single / "model.safetensors").is_file() and (single / "config.json").is_file()
    assert (sharded / "model.safetensors.index.json").is_file() and len(list(sharded.glob("*.safetensors"))) > 1
    return {"run": run, "step": step, "export": single, "sharded": sharded}


def _exported(export: Path) -> dict[str, torch.Tensor]:
    from gf_train.export.safetensors_io import load_state_dict

    return {k.removeprefix("model."): v for k, v in load_state_dict(export).items()}


def _fresh_model(cfg_model):
    from gf_train.model import build_model

    torch.manual_seed(12345)  # some init other than the source's
    return build_model(cfg_model)


@pytest.mark.parametrize("which", ["export", "sharded", "step"])
def test_warm_start_loads_exactly_the_exported_weights(source: dict[str, Path], which: str) -> None:
    from gf_train.train.resume import warm_start

    cfg = load([str(CFG)])
    model = _fresh_model(cfg.model)
    want = _exported(source["export"])  # fp32 export of step 4 (zero_to_fp32 of the ZeRO-2 checkpoint)
    assert not all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    warm_start(model, source[which], cfg.model)
    got = model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want), [k for k in want if not torch.equal(got[k], want[k])]


def _first_step_loss(cfg, export: Path) -> float:
    """The trainer's step-1 loss with the exported weights: the mean over the 2 micro-batches of global
    step 0 of the fake loader (1 rank), accumulated in float64 like the loop does."""
    from gf_train.train.resume import warm_start
    from tests.train.fakes import FakeLoader

    model = _fresh_model(cfg.model)
    warm_start(model, export, cfg.model)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the trainer ran with OMP_NUM_THREADS=1: same summation order
    try:
        loader = iter(FakeLoader("train", cfg.model.ctx_len, 2, 4, 1, 0))
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for _ in range(2):
                x, y = next(loader)
                total += model(x, y).detach().double()
    finally:
        torch.set_num_threads(threads)
    return float(total) / 2


@pytest.mark.slow
def test_init_from_export_and_step_dir_start_fresh(source: dict[str, Path], tmp_path: Path) -> None:
    fresh, from_export, from_step = tmp_path / "fresh", tmp_path / "exp", tmp_path / "step"
    ok(launch(fresh, *NEW_RUN, config=CFG, env=REAL))
    res = ok(launch(from_export, "--init-from", str(source["export"]), *NEW_RUN, config=CFG, env=REAL))
    assert f"warm start from {source['export']}" in res.stdout + res.stderr
    assert "resuming" not in res.stdout + res.stderr
    ok(launch(from_step, "--init-from", str(source["step"]), *NEW_RUN, config=CFG, env=REAL))
    f, e, s = metrics(fresh), metrics(from_export), metrics(from_step)
    le, lf = losses(from_export), losses(fresh)
    # step 0 with a fresh schedule (same lr and token count per step as a fresh run), loaded weights
    assert sorted(le) == [1, 2, 3]
    assert [(r["step"], r["lr"], r["tokens"]) for r in e if "loss" in r] == \
        [(r["step"], r["lr"], r["tokens"]) for r in f if "loss" in r]
    assert le == losses(from_step)  # the export and the consolidated checkpoint are the same weights
    assert [r["step"] for r in s if "loss" in r] == [1, 2, 3]
    assert le[1] != lf[1]
    # the first loss is the source's final weights on the first batch, exactly
    assert le[1] == _first_step_loss(load([str(CFG)]), source["export"])
    # a fresh optimizer: the source run's lr at its step 1 is what the warm start uses, not the source's last
    src = [r for r in metrics(source["run"]) if "loss" in r]
    assert e[0]["lr"] == src[0]["lr"] != src[-1]["lr"]


def test_init_from_architecture_mismatch_names_the_field(source: dict[str, Path], tmp_path: Path) -> None:
    from gf_train.train.resume import warm_start

    cfg = load([str(CFG)], ["model.n_layer=2"])
    for which in ("export", "sharded", "step"):
        with pytest.raises(ValueError, match=r"model\.n_layer is 3 in the weights' config .* but 2"):
            warm_start(_fresh_model(cfg.model), source[which], cfg.model)
    # through the trainer: exit 1 with the message, no run started
    res = launch(tmp_path / "bad", "--init-from", str(source["step"]), "model.n_embd=64", *NEW_RUN, config=CFG,
                 env=REAL)
    assert res.returncode != 0
    assert "model.n_embd is 32 in the weights' config" in res.stdout + res.stderr
    assert not (tmp_path / "bad" / "metrics.jsonl").exists() or not losses(tmp_path / "bad")
    # a bare .safetensors file (no config next to it) still fails on the first mismatching tensor's shape
    cfg64 = dataclasses.replace(load([str(CFG)]).model, n_embd=64)
    bare = tmp_path / "bare.safetensors"
    (tmp_path / "bare.safetensors").write_bytes((source["export"] / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"tensor \S+ has shape"):
        warm_start(_fresh_model(cfg64), bare, cfg64)
