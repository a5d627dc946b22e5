"""The GPU-job code paths that also run on CPU: `dist.compile` (DeepSpeed engine.compile, inductor) and
`dist.offload_optimizer` (ZeRO-Offload with DeepSpeedCPUAdam, a JIT-built C++ op), through the real model,
data and `python -m gf_train train`: same losses as the plain run, and bit-exact resume.

Cost (CI, 2 cores): every process on the compiled path compiles its graphs with inductor (the first in a
test cold; the FX graph cache in the test's TMPDIR serves the second). So each path runs two processes:
4 steps straight, saving at step 2, and a second run resumed from that step-2 checkpoint; the plain run is
shared by both paths."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.train.conftest import REPO, launch, losses, ok

RECIPE = REPO / "recipes" / "debug_cpu.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.train.golden_data import make_corpus

    return make_corpus(tmp_path_factory.mktemp("paths"), seq_len=64)


def _over(corpus: Path, *extra: str) -> tuple[str, ...]:
    return (f"data.train=[{{path: {corpus / 'train'}}}]", f"data.val=[{{path: {corpus / 'val'}}}]",
            "log.every_steps=1", "log.progress_bar=false", "schedule.max_steps=4", "checkpoint.every_steps=null",
            "eval.every_steps=null", *extra)


@pytest.fixture(scope="module")
def plain_losses(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """The plain run (no compile, no offload), the reference of both paths."""
    plain = tmp_path_factory.mktemp("plain") / "run"
    ok(launch(plain, *_over(corpus), fake=False, config=RECIPE, timeout=900))
    return losses(plain)


def _close(a: dict[int, float], b: dict[int, float], rel: float) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=rel) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["compile", "offload"])
def test_gpu_paths_on_cpu_match_plain_run_and_resume_exactly(corpus: Path, plain_losses: dict[int, float],
                                                             tmp_path: Path, path: str) -> None:
    extra = ("dist.compile=true",) if path == "compile" else ("dist.offload_optimizer=true", "dist.zero_stage=2")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # 4 steps, a checkpoint at step 2 (and 4); saving mid-run does not change the losses (== plain below)
    res = ok(launch(straight, *_over(corpus, *extra, "checkpoint.every_steps=2"), fake=False, config=RECIPE,
                    timeout=900))
    want = "inductor compiles the model" if path == "compile" else "optimizer: DeepSpeedCPUAdam (ZeRO-Offload)"
    assert want in res.stdout + res.stderr
    # a new process (another run dir) from the step-2 checkpoint: steps 3 and 4 again
    step2 = straight / "checkpoints" / "step_00000002"
    res = ok(launch(resumed, "--resume-from", str(step2), *_over(corpus, *extra), fake=False, config=RECIPE,
                    timeout=900))
    assert want in res.stdout + res.stderr and "resuming from " + str(step2) in res.stdout + res.stderr
    ls, lr = losses(straight), losses(resumed)
    assert len(ls) == 4 and lr == {k: ls[k] for k in (3, 4)}  # bit-exact resume on this path
    # other kernels (inductor) / another AdamW (DeepSpeed's C++ one, ~1e-7 apart per step): the same training
    assert _close(ls, plain_losses, 1e-4), (ls, plain_losses)
