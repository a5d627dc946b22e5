"""Export folder round trip: transformers loads it offline, logits equal gf-train's, generate() uses our cache."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from export_helpers import SAMPLE_TEXT, inputs_for, random_model, tiny_config, unique_dir

from gf_train.export.hf_dir import write_export
from gf_train.export.safetensors_io import INDEX, load_state_dict


@pytest.fixture(scope="module")
def rwkv_tok():
    from gf_train.data.tokenizers import load_tokenizer

    return load_tokenizer("rwkv_world")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, rwkv_tok) -> tuple[torch.nn.Module, Path]:
    model = random_model(tiny_config())
    out = unique_dir(tmp_path_factory.mktemp("hfexp"), "gfexp")
    write_export(inputs_for(model, rwkv_tok), out, dtype="fp32")
    return model, out


def test_folder_contents(exported: tuple[torch.nn.Module, Path]) -> None:
    _, out = exported
    names = {p.name for p in out.iterdir()}
    for want in ("config.json", "model.safetensors", "modeling_goldfinch.py", "configuration_goldfinch.py",
                 "generation_config.json", "README.md", "LICENSE", "training_config.yaml", "tokenizer_config.json",
                 "rwkv_vocab_v20230424.txt", "tokenization_rwkv_world.py"):
        assert want in names, want
    assert "Apache License" in (out / "LICENSE").read_text() and "Version 2.0" in (out / "LICENSE").read_text()
    card = (out / "README.md").read_text()
    assert "license: apache-2.0" in card and "trust_remote_code=True" in card
    assert "1,234" in card and "5.7500" in card  # tokens trained, final val loss
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "goldfinch" and "AutoModelForCausalLM" in cfg["auto_map"]
    # no pickles anywhere, and no leftover temp folders next to it
    for p in out.rglob("*"):
        assert p.suffix not in (".pt", ".pth", ".bin", ".pkl", ".ckpt"), p
        assert not p.read_bytes().startswith(b"\x80"), f"{p} looks like a pickle"
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    # the bundled code never imports gf_train / gf_kernels (absolute) and every file compiles
    for p in out.glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert node.module.split(".")[0] not in ("gf_train", "gf_kernels"), (p, node.module)
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] not in ("gf_train", "gf_kernels") for a in node.names), p


def test_logits_parity_and_tokenizer(exported: tuple[torch.nn.Module, Path], rwkv_tok) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, out = exported
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()
    ids = torch.randint(1, 65530, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(ids)
        got = hf(ids).logits
    assert got.dtype == torch.float32
    assert (got - ref).abs().max().item() <= 1e-5
    tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True, local_files_only=True)
    assert tok(SAMPLE_TEXT).input_ids == rwkv_tok.encode(SAMPLE_TEXT)
    assert tok.decode(tok(SAMPLE_TEXT).input_ids) == SAMPLE_TEXT
    assert tok.eos_token_id == 0


def test_pure_python_tokenizer_matches(exported: tuple[torch.nn.Module, Path], rwkv_tok) -> None:
    """The fallback used when pyrwkv_tokenizer is not installed gives the same ids."""
    import importlib.util

    _, out = exported
    spec = importlib.util.spec_from_file_location("tok_rwkv_world_test", out / "tokenization_rwkv_world.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    matcher = mod.GreedyBytes(mod.read_vocab(str(out / "rwkv_vocab_v20230424.txt")))
    text = Path(__file__).read_text()[:3000] + " Ünïcode ✓ 中文 🐦"
    assert matcher.encode(text.encode()) == rwkv_tok.encode(text)


@pytest.mark.parametrize("mode", ["kv", "compressed"])
def test_generate_uses_our_cache(exported: tuple[torch.nn.Module, Path], tmp_path: Path, rwkv_tok, mode: str) -> None:
    from transformers import AutoModelForCausalLM

    model, out = exported
    if mode == "compressed":  # the cache mode is part of the export's config
        model = random_model(tiny_config(cache_mode="compressed"))
        out = unique_dir(tmp_path, "gfcomp")
        write_export(inputs_for(model, rwkv_tok), out, dtype="fp32")
    assert json.loads((out / "config.json").read_text())["gf_model"]["cache_mode"] == mode
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()
    calls = {"prefill": 0, "decode": 0, "caches": []}
    inner = hf.model
    orig_prefill, orig_decode = inner.prefill, inner.decode

    def prefill(ids, cache=None, **kw):
        calls["prefill"] += 1
        return orig_prefill(ids, cache, **kw)

    def decode(ids, cache, **kw):
        calls["decode"] += 1
        calls["caches"].append(cache)
        return orig_decode(ids, cache, **kw)

    inner.prefill, inner.decode = prefill, decode
    prompt = torch.randint(1, 65530, (1, 9), generator=torch.Generator().manual_seed(2))
    got = hf.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    want = model.generate(prompt, 6, temperature=0)
    assert torch.equal(got, want)
    assert calls["prefill"] == 1 and calls["decode"] == 5  # one pre-fill, then one decode per new token
    cache = calls["caches"][-1]
    cfg = model.cfg
    assert type(cache).__name__ == "ModelCache" and cache.mode == mode
    assert cache.n_tokens == 9 + 4 and "finch_c2" in cache.kinds and "gold" in cache.kinds
    if mode == "compressed":
        assert cache.keys.shape[-1] == cfg.kv_dim < cfg.n_embd  # c = C/16 numbers per position, not K/V
        assert all(st.k is None and st.v is None for st in cache.layers)
    else:  # per-layer k/v of the GOLD layers only
        assert cache.keys is None
        assert [st.k is not None for st in cache.layers] == [k == "gold" for k in cache.kinds]


def test_beam_search_reorders_our_cache(exported: tuple[torch.nn.Module, Path]) -> None:
    """Beam search with our cache (reordered per step by `_reorder_cache`) picks what it picks without one."""
    from transformers import AutoModelForCausalLM

    _, out = exported
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()
    prompt = torch.randint(1, 65530, (1, 7), generator=torch.Generator().manual_seed(3))
    kw = {"max_new_tokens": 5, "num_beams": 3, "num_return_sequences": 3, "do_sample": False,
          "eos_token_id": None, "pad_token_id": 0}
    with_cache = hf.generate(prompt, use_cache=True, **kw)
    without = hf.generate(prompt, use_cache=False, **kw)
    assert with_cache.shape == (3, 12) and torch.equal(with_cache, without)
    assert len({tuple(r.tolist()) for r in with_cache}) == 3  # three different beams, all reordered right


def test_sharded_bf16(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = random_model(tiny_config(vocab_size=512))
    out = unique_dir(tmp_path, "gfshard")
    write_export(inputs_for(model), out, dtype="bf16", max_shard_bytes=20_000)
    index = json.loads((out / INDEX).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 3 and not (out / "model.safetensors").exists()
    state = load_state_dict(out)
    assert all(v.dtype == torch.bfloat16 for v in state.values())
    assert set(state) == {"model." + k for k in model.state_dict()}
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True,
                                              dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (1, 16))
    with torch.no_grad():
        ref = model.to(torch.bfloat16).float()(ids)
        got = hf(ids).logits
    assert (got - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("arch", ["finch", "llama"])
def test_other_archs_parity(tmp_path: Path, arch: str) -> None:
    from transformers import AutoModelForCausalLM

    model = random_model(tiny_config(arch=arch, vocab_size=300))
    out = unique_dir(tmp_path, f"gf{arch}")
    write_export(inputs_for(model), out)
    hf = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max().item() <= 1e-5
    got = hf.generate(ids[:1, :5], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(got, model.generate(ids[:1, :5], 4, temperature=0))


BLOCKED_LOADER = """
import sys
# as if not installed: `import x` raises ImportError and importlib.util.find_spec("x") is None (what
# transformers/accelerate ask before importing deepspeed)
for name in ("gf_train", "gf_kernels", "deepspeed", "pyrwkv_tokenizer"):
    sys.modules[name] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
m = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True, local_files_only=True).eval()
t = AutoTokenizer.from_pretrained(d, trust_remote_code=True, local_files_only=True)
assert t._rust is None
ids = t("Hello GoldFinch", return_tensors="pt").input_ids
out = m.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
print("OK", ids.tolist(), out.shape[1])
"""


@pytest.mark.slow
def test_loads_without_gf_train(exported: tuple[torch.nn.Module, Path], rwkv_tok) -> None:
    """A loader environment with only torch + transformers: gf_train, gf_kernels, deepspeed and the Rust
    tokenizer cannot be imported, and the folder still loads, tokenizes (pure Python) and generates."""
    import subprocess
    import sys

    _, out = exported
    res = subprocess.run([sys.executable, "-c", BLOCKED_LOADER, str(out)], capture_output=True, text=True,
                         timeout=300, cwd=out.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"OK {[rwkv_tok.encode('Hello GoldFinch')]} {len(rwkv_tok.encode('Hello GoldFinch')) + 4}" in res.stdout
