"""`gf-train convert` on synthetic reference state dicts (spec §7.1 layout), and `gf-train plot` edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_helpers import random_model, tiny_config, unique_dir

from gf_train.cli import main as cli
from gf_train.export.load import load_model


def _reference_pth(tmp_path: Path, arch: str, wrap: bool = True) -> tuple[torch.nn.Module, Path]:
    """A state dict as the reference repos save it: bf16, Lightning's `_forward_module.` prefix."""
    model = random_model(tiny_config(arch=arch, vocab_size=65536, n_layer=6, n_embd=64))
    model = model.to(torch.bfloat16).float()  # the values a bf16 checkpoint can hold
    sd = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    if arch == "goldfinch":  # names and shapes of spec §7.1 (C = 64, c = C/16 = 4, first GOLD layer g = 4)
        assert sd["w_kv_cache_b.weight"].shape == (64, 68)
        assert sd["blocks.4.att.time_maa_kv_w2"].shape == (2, 32, 64)
        assert sd["blocks.0.att.time_maa_w1"].shape == (64, 160)
        assert "blocks.0.ln0.weight" in sd and "blocks.3.att.time_faaaa" in sd
    if arch == "finch":
        assert "blocks.0.att.gate.weight" in sd
    if wrap:
        sd = {"_forward_module." + k: v for k, v in sd.items()}
    path = tmp_path / f"{arch}.pth"
    torch.save(sd, path)
    return model, path


@pytest.mark.parametrize("source,arch", [("goldfinch-paper", "goldfinch"), ("rwkv-lm", "finch")])
def test_convert_logits_equal(tmp_path: Path, source: str, arch: str) -> None:
    from transformers import AutoModelForCausalLM

    model, pth = _reference_pth(tmp_path, arch)
    out = unique_dir(tmp_path, f"gfconv{arch}")
    assert cli(["convert", "--from", source, str(pth), "--out", str(out), "--set", "ctx_len=1024"]) == 0
    loaded = load_model(out)
    assert loaded.config.arch == arch and loaded.config.ctx_len == 1024 and loaded.config.n_layer == 6
    assert loaded.tokenizer_spec == "rwkv_world"
    gf_model = json.loads((out / "config.json").read_text())["gf_model"]
    assert gf_model["tokenizer"] == "rwkv_world" and gf_model["vocab_hash"]  # eval/generate compare with it
    ids = torch.randint(0, 65536, (2, 20))
    with torch.no_grad():
        want = model(ids)
        assert torch.equal(loaded.model(ids), want)
        hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()
        assert (hf(ids).logits - want).abs().max().item() <= 1e-5
    assert "converted from " + source in (out / "README.md").read_text()


def test_convert_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, gold = _reference_pth(tmp_path, "goldfinch", wrap=False)
    out = tmp_path / "out"
    assert cli(["convert", "--from", "rwkv-lm", str(gold), "--out", str(out)]) == 1
    assert "use --from goldfinch-paper" in capsys.readouterr().err
    assert cli(["convert", "--from", "goldfinch-paper", str(tmp_path / "missing.pth"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    torch.save({"emb.weight": torch.zeros(3, 4), "x": {"nested": object()}}, tmp_path / "pickled.pth")
    assert cli(["convert", "--from", "goldfinch-paper", str(tmp_path / "pickled.pth"), "--out", str(out)]) == 1
    assert "weights_only" in capsys.readouterr().err
    assert not out.exists()


def test_plot_skips_torn_lines_and_missing_series(tmp_path: Path) -> None:
    from gf_train.train.plot import plot_metrics, read_metrics, series

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 5.0 - 0.1 * s, "lr": 1e-3, "tokens_per_s": 100.0 + s, "mfu": None} for s in range(1, 9)]
    rows.append({"step": 8, "val_loss": 4.5})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 9, "lo')
    assert len(read_metrics(run)) == 9
    assert series(read_metrics(run), "mfu") == ([], [])
    assert series(read_metrics(run), "val_loss") == ([8.0], [4.5])
    png = plot_metrics(run)
    assert png == run / "metrics.png" and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_metrics(tmp_path / "empty")


def test_plot_names_the_averaged_loss_and_the_val_set() -> None:
    from gf_train.train.plot import _label

    rows = [{"step": 5, "loss_avg": 3.0, "loss": 2.9}, {"step": 5, "val_loss": 3.1, "val_samples": 7,
                                                          "val_split_samples": 7}]
    assert _label(rows, "loss_avg").startswith("train loss (mean over each logging interval")
    assert _label(rows, "val_loss") == "val_loss (whole val split, 7 samples)"
    rows.append({"step": 10, "val_loss": 3.0, "val_samples": 64, "val_split_samples": 5000})
    assert _label(rows, "val_loss") == "val_loss (fixed random 64 of 5,000 val samples)"
    assert _label([{"step": 1, "val_loss": 2.0}], "val_loss") == "val_loss"
