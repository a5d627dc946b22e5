"""The deepspeed launcher (`deepspeed --num_gpus N --master_port P SCRIPT ...`) runs the trainer exactly like
torchrun: on CPU it spawns N processes with RANK / LOCAL_RANK / WORLD_SIZE / MASTER_* set (and a harmless
CUDA_VISIBLE_DEVICES), the trainer reads them through `gf_train.distributed.info`, and the per-step losses equal a
torchrun run of the same config (`==`).

How to launch `gf-train train` with it: the launcher runs a *script path* with `python -u` (or `--module M`
for `python -m M`) and, unless `--no_local_rank` is given, inserts `--local_rank=N` as the script's first
argument. `gf-train train` accepts (and ignores) `--local_rank` (LOCAL_RANK in the environment carries it),
but for the `gf-train` console script / `--module gf_train` the flag lands *before* the `train` subcommand,
where the top-level parser rejects it: use `deepspeed --no_local_rank ... .venv/bin/gf-train train ...`.

/dev/shm: DeepSpeed's CPU shm all-reduce (which leaves /dev/shm/deepspeed_allreduce_buffer_* behind under
this launcher) is switched off by `gf_train.distributed.engine.init_distributed`; the tests check nothing is left.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gf_train.distributed.info import free_port
from tests.train.conftest import REPO, launch, losses, metrics, ok

DEEPSPEED = str(Path(sys.executable).parent / "deepspeed")
SHM = Path("/dev/shm")


def _shm() -> set[str]:
    return {p.name for p in SHM.glob("deepspeed*")} if SHM.is_dir() else set()


def _deepspeed(*script: str, nproc: int = 2, no_local_rank: bool = False) -> list[str]:
    return [DEEPSPEED, "--num_gpus", str(nproc), "--master_port", str(free_port()),
            *(["--no_local_rank"] if no_local_rank else []), *script]


@pytest.mark.slow
@pytest.mark.dist
def test_deepspeed_launcher_matches_torchrun(tmp_path: Path) -> None:
    """tests/train/fakes.py (the trainer + fake model/loader) under the deepspeed launcher, which passes
    --local_rank=N, vs torchrun: same per-step losses, same exit, no shm leftovers."""
    before = _shm()
    ds, tr = tmp_path / "ds", tmp_path / "tr"
    res = ok(launch(ds, launcher=_deepspeed(str(REPO / "tests" / "train" / "fakes.py"))))
    assert "--local_rank=1" in res.stdout + res.stderr  # the flag really was passed (and accepted)
    ok(launch(tr, nproc=2))
    got, want = losses(ds), losses(tr)
    assert sorted(got) == list(range(1, 9)) and got == want
    assert [r["val_loss"] for r in metrics(ds) if "val_loss" in r] == \
        [r["val_loss"] for r in metrics(tr) if "val_loss" in r]
    assert (ds / "checkpoints" / "step_00000008" / "COMPLETE").is_file()
    assert sorted(p.name for p in (ds / "checkpoints" / "step_00000008").glob("rank_*.json")) == \
        ["rank_00000.json", "rank_00001.json"]  # two ranks really ran
    assert _shm() - before == set()


@pytest.mark.slow
@pytest.mark.dist
def test_deepspeed_launcher_gf_train_console_script(tmp_path: Path) -> None:
    """The real command: `deepspeed --no_local_rank .venv/bin/gf-train train` with the real model and data
    equals `torchrun -m gf_train train` step for step."""
    from tests.train.golden_data import make_corpus

    corpus = make_corpus(tmp_path / "corpus", seq_len=64)
    over = (f"data.train=[{{path: {corpus / 'train'}}}]", f"data.val=[{{path: {corpus / 'val'}}}]",
            "log.every_steps=1", "schedule.max_steps=3", "checkpoint.every_steps=null", "eval.every_steps=null",
            "model.n_layer=2", "dist.zero_stage=1")
    recipe = REPO / "recipes" / "debug_cpu.yaml"
    before = _shm()
    ds, tr = tmp_path / "ds", tmp_path / "tr"
    gf_train_script = str(Path(sys.executable).parent / "gf-train")
    ok(launch(ds, *over, config=None, launcher=_deepspeed(gf_train_script, "train", "--config", str(recipe),
                                                        no_local_rank=True), timeout=600))
    ok(launch(tr, *over, nproc=2, fake=False, config=recipe, timeout=600))
    got = losses(ds)
    assert sorted(got) == [1, 2, 3] and got == losses(tr)
    assert _shm() - before == set()
