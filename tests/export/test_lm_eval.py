"""lm-evaluation-harness on an export (issue 15): a local ``generate_until`` task and a local
loglikelihood (multiple-choice) task give the same per-document results at ``--batch_size 4`` as at
``--batch_size 1`` (left-padded batched generation, right-padded loglikelihood batches).

lm_eval runs in a consumer venv (like test_hf_other_transformers.py's) that sees this environment's
packages and installs ``lm_eval`` from the package registry; the test skips when that install fails.
Tiny model, eight documents per task.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from consumer_venv import build_consumer_venv
from export_helpers import inputs_for, random_model, tiny_config, unique_dir

from gf_train.export.hf_dir import write_export

pytestmark = pytest.mark.slow

DOCS = [{"question": q, "answer": a, "choices": [a, "blue", "seven"], "label": 0} for q, a in [
    ("The goldfinch sings", "loudly"), ("Two and two make", "four"), ("Paris is in", "France"),
    ("The sky is", "blue"), ("A cat says", "meow"), ("Ice is", "cold"), ("One more", "time"),
    ("The end of the story is near and the long prompt goes on for a while before it", "stops")]]

TASKS = {
    "gf_gen": """task: gf_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
""",
    "gf_ll": """task: gf_ll
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
""",
}


@pytest.fixture(scope="module")
def lm_eval_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    py, res = build_consumer_venv(tmp_path_factory.mktemp("lmeval") / "venv", "lm_eval", timeout=1200)
    if res.returncode != 0:
        pytest.skip(f"lm_eval cannot be installed here: {res.stderr.strip().splitlines()[-1:]}")
    return py


def _run(py: Path, export: Path, tasks: Path, out: Path, batch: int) -> dict[str, list[dict]]:
    cmd = [str(py), "-m", "lm_eval", "--model", "hf", "--model_args",
           f"pretrained={export},trust_remote_code=True,dtype=float32", "--tasks", "gf_gen,gf_ll",
           "--include_path", str(tasks), "--batch_size", str(batch), "--device", "cpu",
           "--output_path", str(out), "--log_samples"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=out.parent,
                         env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                              "PATH": "/usr/bin:/bin", "HOME": str(out.parent)})
    assert res.returncode == 0, res.stderr[-6000:]
    samples: dict[str, list[dict]] = {}
    for f in out.rglob("samples_*.jsonl"):
        task = f.name.split("_", 1)[1].rsplit("_", 1)[0]
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        samples[task] = sorted(rows, key=lambda r: r["doc_id"])
    return samples


def test_lm_eval_batch_4_equals_batch_1(lm_eval_python: Path, tmp_path: Path) -> None:
    from gf_train.data.tokenizers import load_tokenizer

    export = unique_dir(tmp_path, "gflmeval")
    write_export(inputs_for(random_model(tiny_config(n_layer=4)), load_tokenizer("rwkv_world")), export)
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, text in TASKS.items():
        (tasks / f"{name}.yaml").write_text(text.format(data=data))
    one = _run(lm_eval_python, export, tasks, tmp_path / "b1", 1)
    four = _run(lm_eval_python, export, tasks, tmp_path / "b4", 4)
    assert set(one) == set(four) == {"gf_gen", "gf_ll"}
    for task in one:
        assert len(one[task]) == len(four[task]) == len(DOCS)
    # generate_until: the same text per document (greedy, left-padded batches of 4)
    gen1 = [r["resps"] for r in one["gf_gen"]]
    assert gen1 == [r["resps"] for r in four["gf_gen"]]
    assert any(g[0][0] for g in gen1)  # something was generated
    # loglikelihood: the same log-probabilities (fp32 round-off) and the same accuracy
    for a, b in zip(one["gf_ll"], four["gf_ll"]):
        la = [float(x[0][0]) for x in a["resps"]]
        lb = [float(x[0][0]) for x in b["resps"]]
        assert max(abs(x - y) for x, y in zip(la, lb)) <= 1e-4 * max(1.0, max(abs(x) for x in la))
        assert a["acc"] == b["acc"]
