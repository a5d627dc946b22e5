"""`gf-train export` from a real trainer checkpoint, its bad inputs, `eval` against a direct computation, `plot`."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from export_helpers import inputs_for, random_model, tiny_config, unique_dir

from gf_train.cli import main as cli
from gf_train.data.tokenize import tokenize_corpus
from gf_train.export.export import export_checkpoint
from gf_train.export.load import load_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 steps of the real trainer + real GoldFinch (fake loader), ZeRO-2, checkpoints at steps 2 and 4."""
    from gf_train.distributed.info import free_port, launch_free_env

    run = tmp_path_factory.mktemp("ckpt") / "run"
    env = launch_free_env()
    env.update(PYTHONPATH=str(REPO), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", RANK="0", WORLD_SIZE="1",
               LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    res = subprocess.run([sys.executable, str(HERE / "ckpt_launcher.py"), "--config", str(HERE / "ckpt_tiny.yaml"),
                          "--run-dir", str(run)], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return run


def _nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_export_round_trip(run_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = unique_dir(tmp_path, "gfckpt")
    assert cli(["export", "--checkpoint", str(run_dir), "--out", str(out), "--dtype", "fp32"]) == 0
    ref = load_model(run_dir / "checkpoints" / "step_00000004").model  # consolidated by zero_to_fp32 too
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        assert (hf(ids).logits - ref(ids)).abs().max().item() <= 1e-5
        # the weights are the trained ones, not a fresh init
        assert not torch.equal(ref.blocks[0].att.output.weight, torch.zeros_like(ref.blocks[0].att.output.weight))
    got = hf.generate(ids[:1, :4], max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(got, ref.generate(ids[:1, :4], 5, temperature=0))
    card = (out / "README.md").read_text()
    assert "step 4" in card and "| tokens trained | 256 |" in card and "94,048" in card
    assert "run_name: export_tiny" in (out / "training_config.yaml").read_text()
    assert (out / "LICENSE").is_file()


def test_export_older_step_and_default_bf16(run_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    out = export_checkpoint(run_dir / "checkpoints" / "step_00000002", tmp_path / "e2")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.head.weight").dtype == torch.bfloat16
    assert "step 2" in (out / "README.md").read_text()


def test_bad_inputs_leave_nothing(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    # missing checkpoint
    assert cli(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    _nothing_left(out)
    # incomplete checkpoint (interrupted save: no COMPLETE marker)
    broken = tmp_path / "run2" / "checkpoints" / "step_00000004"
    shutil.copytree(run_dir / "checkpoints" / "step_00000004", broken)
    (broken / "COMPLETE").unlink()
    assert cli(["export", "--checkpoint", str(broken), "--out", str(out)]) == 1
    assert "incomplete" in capsys.readouterr().err
    assert cli(["export", "--checkpoint", str(broken.parents[1]), "--out", str(out)]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err
    _nothing_left(out)
    # unknown dtype: refused by the command line (the writer's own check stays for library callers)
    with pytest.raises(SystemExit) as e:
        cli(["export", "--checkpoint", str(run_dir), "--out", str(out), "--dtype", "int4"])
    assert e.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        export_checkpoint(run_dir, out, dtype="int4")
    _nothing_left(out)
    # non-empty output without --overwrite: untouched; with --overwrite: replaced
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli(["export", "--checkpoint", str(run_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert cli(["export", "--checkpoint", str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run2"]


def test_plot_written(run_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "m.png"
    assert cli(["plot", str(run_dir), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_eval_matches_direct_computation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gf_train.data import read_manifest
    from gf_train.data.tokenize import tokenize_corpus
    from gf_train.export.hf_dir import write_export

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": (math.__doc__ or "") + f" document {i}. " + str(F.__doc__)[:400]})
                            + "\n" for i in range(12)))
    data = tmp_path / "data"
    tokenize_corpus([str(docs)], data, "rwkv_world", 16, val_docs=4)
    model = random_model(tiny_config())
    exp = write_export(inputs_for(model), tmp_path / "exp")
    assert cli(["eval", "--model", str(exp), "--data", str(data), "--json", "--batch-size", "3"]) == 0
    got = json.loads(capsys.readouterr().out)

    from streaming import LocalDataset

    ds = LocalDataset(local=str(data / "val"))
    rows = torch.stack([torch.as_tensor(ds[i]["tokens"].astype("int64")) for i in range(len(ds))])
    with torch.no_grad():
        nll = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())
    split = read_manifest(data)["splits"]["val"]
    bpb = nll.item() / math.log(2) * split["tokens"] / split["utf8_bytes"]
    assert got["samples"] == len(ds) and got["tokens"] == rows[:, 1:].numel()
    assert got["loss"] == pytest.approx(nll.item(), rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nll.item()), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(bpb, rel=1e-5)


def test_generate_cli_reports_speed_and_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gf_train.data.tokenizers import load_tokenizer
    from gf_train.export.hf_dir import write_export

    model = random_model(tiny_config(n_layer=6, n_embd=64))
    exp = write_export(inputs_for(model, load_tokenizer("rwkv_world")), tmp_path / "exp")
    assert cli(["generate", "--model", str(exp), "--prompt", "The GoldFinch sings", "--max-new-tokens", "5",
                "--seed", "3", "--temperature", "0.8", "--top-k", "50"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("The GoldFinch sings") and len(cap.out) > len("The GoldFinch sings\n")
    assert "prefill:" in cap.err and "decode:" in cap.err and "tokens/s" in cap.err
    cache_line = next(line for line in cap.err.splitlines() if line.startswith("cache (kv mode):"))
    assert "gold_kv" in cache_line and "token_ids" not in cache_line
    assert "a Llama of the same width and depth (L=6, C=64)" in cap.err
    # several prompts (repeatable --prompt and --prompts-file) as one left-padded batch, compressed cache
    pf = tmp_path / "prompts.txt"
    pf.write_text("A much longer third prompt for the batch\n\nfour\n")
    argv = ["generate", "--model", str(exp), "--prompt", "The GoldFinch sings", "--prompt", "Hi",
            "--prompts-file", str(pf), "--max-new-tokens", "4", "--temperature", "0", "--cache-mode", "compressed"]
    assert cli(argv) == 0
    cap = capsys.readouterr()
    blocks = cap.out.rstrip("\n").split("\n\n")
    prompts = ["The GoldFinch sings", "Hi", "A much longer third prompt for the batch", "four"]
    assert len(blocks) == 4 and all(b.startswith(p) for b, p in zip(blocks, prompts))
    assert "cache (compressed mode):" in cap.err and "key_cache" in cap.err and "4 prompts" in cap.err
    assert "compressed 20 B, kv 1,024 B, Llama 3,072 B" in cap.err  # c=4 fp32 + int32 id; 2 GOLD layers
    for p, b in zip(prompts, blocks):  # each row as if alone
        assert cli(argv[:3] + ["--prompt", p] + argv[9:]) == 0
        assert capsys.readouterr().out.rstrip("\n") == b


@pytest.mark.parametrize("flags, msg", [
    (["--temperature", "-1"], "temperature must be >= 0"), (["--top-p", "2"], "top_p must be in (0, 1]"),
    (["--top-k", "-3"], "top_k must be >= 0"), (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
    (["--prompt", ""], "--prompt is empty"),
])
def test_generate_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                                            msg: str) -> None:
    from gf_train.data.tokenizers import load_tokenizer
    from gf_train.export.hf_dir import write_export

    exp = write_export(inputs_for(random_model(tiny_config()), load_tokenizer("rwkv_world")), tmp_path / "exp")
    assert cli(["generate", "--model", str(exp), "--prompt", "x", *flags]) != 0
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_generate_help_shows_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli(["generate", "--help"])
    out = capsys.readouterr().out
    assert "(default: 0.85)" in out and "(default: 64)" in out and "--prompts-file" in out


@pytest.mark.parametrize("fault", ["flip", "truncate", "incomplete"])
def test_export_eval_generate_refuse_damaged_checkpoints(run_dir: Path, tmp_path: Path, fault: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A damaged or incomplete checkpoint: one line on stderr (naming the file), exit 1, nothing written."""
    step = tmp_path / "run2" / "checkpoints" / "step_00000004"
    shutil.copytree(run_dir / "checkpoints" / "step_00000004", step)
    part = step / "ds" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    data = part.read_bytes()
    if fault == "flip":
        part.write_bytes(data[:500] + bytes([data[500] ^ 1]) + data[501:])
        want = "zero_pp_rank_0_mp_rank_00_optim_states.pt: xxh3_64 checksum"
    elif fault == "truncate":
        part.write_bytes(data[:-1])
        want = "zero_pp_rank_0_mp_rank_00_optim_states.pt: size"
    else:
        (step / "COMPLETE").unlink()
        want = "is incomplete"
    out = tmp_path / "out"
    docs = tmp_path / "docs.jsonl"  # real data, so that eval's data checks (made first) pass
    docs.write_text("".join(json.dumps({"text": f"Document {i} about gold finches."}) + "\n" for i in range(40)))
    tokenize_corpus([str(docs)], tmp_path / "data", "rwkv_world", 8, val_fraction=0.5, progress=False,
                    log=lambda s: 0)
    for argv in (["export", "--checkpoint", str(step), "--out", str(out)],
                 ["export", "--checkpoint", str(step.parents[1]), "--out", str(out)],
                 ["eval", "--model", str(step), "--data", str(tmp_path / "data")],
                 ["generate", "--model", str(step), "--prompt", "The", "--tokenizer", "rwkv_world"]):
        assert cli(argv) == 1, argv
        cap = capsys.readouterr()
        err = cap.err.strip()
        expect = "holds no complete checkpoint" if fault == "incomplete" and argv[2] == str(step.parents[1]) else want
        assert expect in err and err.startswith("gf-train: error:") and len(err.splitlines()) == 1, (argv, err)
        assert cap.out == ""
        _nothing_left(out)
