"""An export loads and generates under the other major version of transformers too (4.x and 5.x differ:
meta-device model construction, `past_key_values` renamed `cache`, default cache creation).

The suite's own environment pins one transformers; this test builds a second, bare consumer environment
(a venv that sees this one's torch and numpy but has the other transformers major of its own, and no
gf-train) and checks there what `test_hf_export.py` checks here: logits parity, generation with our
compressed cache, beam search, the tokenizer. Needs the package registry (like the set-up itself).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from consumer_venv import build_consumer_venv
from export_helpers import SAMPLE_TEXT, inputs_for, random_model, tiny_config, unique_dir

from gf_train.export.hf_dir import write_export

pytestmark = pytest.mark.slow
OTHER = "transformers>=5,<6" if transformers.__version__.startswith("4.") else "transformers>=4.44,<5"


@pytest.fixture(scope="module")
def consumer_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    py, res = build_consumer_venv(tmp_path_factory.mktemp("consumer") / "venv", OTHER, timeout=900)
    assert res.returncode == 0, f"pip install {OTHER} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return py


def test_export_under_the_other_transformers(consumer_python: Path, tmp_path: Path) -> None:
    from gf_train.data.tokenizers import load_tokenizer

    tok = load_tokenizer("rwkv_world")
    model = random_model(tiny_config())
    src = unique_dir(tmp_path, "gfother")
    write_export(inputs_for(model, tok), src, dtype="fp32")
    ids = torch.randint(1, 65530, (2, 24), generator=torch.Generator().manual_seed(1))
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"ids": ids.tolist(), "prompt_len": 9, "text": SAMPLE_TEXT}))
    out = tmp_path / "got"
    out.mkdir()
    res = subprocess.run([str(consumer_python), str(Path(__file__).with_name("_consumer_check.py")), str(src),
                          str(case), str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-6000:]
    info = json.loads((out / "info.json").read_text())
    assert info["transformers"].split(".")[0] != transformers.__version__.split(".")[0], info
    assert not info["gf_train_importable"]  # the export stands alone
    with torch.no_grad():
        ref = model(ids).float().numpy()
    assert np.abs(np.load(out / "logits.npy") - ref).max() <= 1e-5
    prompt = ids[:1, :9]
    assert np.array_equal(np.load(out / "greedy.npy"), model.generate(prompt, 6, temperature=0).numpy())
    assert info["beams_equal_uncached"] and info["tokenizer_round_trip"] and info["padded_batch_equals_alone"]
    assert info["tokenizer_ids"] == tok.encode(SAMPLE_TEXT)
