"""The one path from a checkpoint to weights, for every ZeRO stage 0-3 with bf16 on and off: `gf-train
export`, `gf-train eval` and `--init-from` (warm_start) all read the same tensors, and for ZeRO >= 1 these are
exactly what DeepSpeed's own zero_to_fp32 gives without a tag (the step dir's `latest` file), both as the API
and as the `zero_to_fp32.py` script DeepSpeed copies into the step dir. A real (tiny) GoldFinch is trained for
2 steps by the real trainer on the fake loader (GF_TRAIN_FAKES_REAL_MODEL=1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gf_train.checkpoint import load_weights, strip_wrappers
from gf_train.cli import main as cli
from gf_train.config import load
from tests.train.conftest import REPO, launch, ok

pytestmark = [pytest.mark.slow]
CFG = REPO / "tests" / "export" / "ckpt_tiny.yaml"
MATRIX = [(stage, precision) for stage in (0, 1, 2, 3) for precision in ("fp32", "bf16")]
SCRIPT_CASES = {(2, "fp32"), (3, "bf16")}  # DeepSpeed's zero_to_fp32.py script (a subprocess each)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gf_train.data.tokenize import tokenize_corpus

    root = tmp_path_factory.mktemp("evaldata")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"GoldFinch document {i}: " + "the finch sings. " * 20}) + "\n"
                            for i in range(8)))
    tokenize_corpus([str(docs)], root / "data", "rwkv_world", 16, val_docs=3)
    return root / "data"


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b), set(a) ^ set(b)
    bad = [k for k in a if not torch.equal(a[k].float(), b[k].float())]
    assert not bad, bad


@pytest.mark.parametrize(("stage", "precision"), MATRIX)
def test_export_eval_init_from_every_stage(stage: int, precision: str, data: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    over = (f"dist.zero_stage={stage}", f"dist.precision={precision}", "model.vocab_size=65536",
            "schedule.max_steps=2", "checkpoint.every_steps=null", "eval.every_steps=null")
    run = tmp_path / "run"
    ok(launch(run, *over, config=CFG, env={"GF_TRAIN_FAKES_REAL_MODEL": "1"}))
    step = run / "checkpoints" / "step_00000002"
    assert (step / "latest").read_text() == "ds"
    weights = load_weights(step)
    assert all(v.dtype == torch.float32 for v in weights.values())
    if stage >= 1:  # DeepSpeed's own API, no tag: it reads `latest`
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        _equal(weights, strip_wrappers(dict(get_fp32_state_dict_from_zero_checkpoint(str(step)))))
    else:
        module = torch.load(step / "ds" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
        bf16_exact = all(torch.equal(v.float(), v.float().bfloat16().float()) for v in weights.values()
                         if v.is_floating_point())
        if precision == "bf16":  # the fp32 master weights, not the bf16 module copy
            assert not bf16_exact
            assert any(not torch.equal(weights[k], v.float()) for k, v in strip_wrappers(module).items())
        else:
            _equal(weights, strip_wrappers(module))
    if (stage, precision) in SCRIPT_CASES:  # python STEP/zero_to_fp32.py STEP OUT, as DeepSpeed documents it
        out = tmp_path / "z2f"
        res = subprocess.run([sys.executable, str(step / "zero_to_fp32.py"), str(step), str(out)],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        _equal(weights, strip_wrappers(torch.load(out / "pytorch_model.bin", weights_only=True)))
    # gf-train export (fp32): the same tensors
    from gf_train.export.safetensors_io import load_state_dict

    exp = tmp_path / f"export_{stage}_{precision}"
    assert cli(["export", "--checkpoint", str(run), "--out", str(exp), "--dtype", "fp32"]) == 0
    capsys.readouterr()
    _equal(weights, {k.removeprefix("model."): v for k, v in load_state_dict(exp).items()})
    # gf-train eval from the checkpoint == from the export
    results = []
    for model in (step, exp):
        assert cli(["eval", "--model", str(model), "--data", str(data), "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["loss"] == results[1]["loss"] and results[0]["samples"] > 0
    # --init-from the step dir
    from gf_train.model import build_model
    from gf_train.train.resume import warm_start

    cfg = load([str(CFG)], list(over))
    torch.manual_seed(1)
    model = build_model(cfg.model)
    warm_start(model, step, cfg.model)
    _equal(weights, model.state_dict())
