"""Left-padded batches (HF attention_mask) for every architecture and cache mode, fp32 on CPU.

Acceptance (issue 15): each row of a left-padded batch of prompts of lengths 5, 17 and 40 gives the
logits of that prompt alone, in pre-fill and 20 greedy decode steps (max abs diff <= 1e-5 of the logit
scale); the training forward with the mask agrees at every real position; ``kv`` == ``compressed``.
"""

from __future__ import annotations

import pytest
import torch
from _model_testing import random_model, tiny_cfg

from gf_train.model import gold, goldfinch
from gf_train.model.generate import generate

ARCHS = ["goldfinch", "finch_c2", "finch", "llama"]
LENGTHS = (5, 17, 40)
STEPS = 20
TOL = 1e-5


def _prompts(V: int = 97) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(1, V, (n,), generator=g) for n in LENGTHS]


def left_pad(prompts: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> ids [B, T] and attention_mask [B, T] (0 = padding), padding on the left."""
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - len(p):] = p
        mask[b, T - len(p):] = 1
    return ids, mask


def _alone(model, prompt: torch.Tensor, mode: str) -> tuple[list[torch.Tensor], list[int], object]:
    """Greedy run of one prompt: logits of pre-fill and every decode step, the tokens fed, final cache."""
    logits, cache = model.prefill(prompt.view(1, -1), cache_mode=mode)
    out, toks = [logits[0]], []
    for _ in range(STEPS):
        toks.append(int(logits.argmax(-1)))
        logits, cache = model.decode(torch.tensor([toks[-1]]), cache)
        out.append(logits[0])
    return out, toks, cache


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("arch", ARCHS + ["goldfinch_compressed", "goldfinch_compressed_tiled", "goldfinch_rope"])
def test_left_padded_rows_equal_prompts_alone(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mode = "compressed" if arch.startswith("goldfinch_compressed") else "kv"
    if arch.endswith("_tiled"):  # inference-time GOLD keys/values in tiles of 7 rows (prompts are 5-40 long)
        monkeypatch.setattr(gold, "KV_TILE", 7)
        monkeypatch.setattr(goldfinch, "KV_TILE", 7)
    cfg = tiny_cfg(arch.split("_")[0] if arch.startswith("goldfinch") else arch, wkv_backend="torch",
                   attn_backend="sdpa", rope=arch == "goldfinch_rope")
    model = random_model(cfg)
    prompts = _prompts()
    alone = [_alone(model, p, mode) for p in prompts]
    ids, mask = left_pad(prompts, pad_id=3)
    ids[0, :10] = torch.arange(10, 20)  # padding ids are arbitrary: they must not matter
    logits, cache = model.prefill(ids, attention_mask=mask, cache_mode=mode, chunk_size=16)
    errs = [_max_err(logits[b], alone[b][0][0]) for b in range(3)]
    for s in range(STEPS):
        nxt = torch.tensor([a[1][s] for a in alone])
        logits, cache = model.decode(nxt, cache)
        errs += [_max_err(logits[b], alone[b][0][s + 1]) for b in range(3)]
    assert max(errs) <= TOL, max(errs)
    # padding changed no recurrent state: each row's Finch WKV / shift states equal the prompt alone's
    for b in range(3):
        for st, ref in zip(cache.layers, alone[b][2].layers):
            for f in ("att_shift", "ffn_shift", "wkv"):
                x, y = getattr(st, f), getattr(ref, f)
                if y is not None:
                    assert _max_err(x[b], y[0]) <= TOL, (arch, b, f)
    # the training forward with the mask agrees at every real position
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        for b, p in enumerate(prompts):
            ref = model(p.view(1, -1))[0]
            assert _max_err(full[b, ids.shape[1] - len(p):], ref) <= TOL, (arch, b)


@pytest.mark.parametrize("tile", [None, 4])
def test_kv_and_compressed_equal_forward(tile: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    model = random_model(tiny_cfg("goldfinch", wkv_backend="torch", attn_backend="sdpa", rope=tile is not None))
    if tile is not None:  # tiled inference keys/values (RoPE positions per tile included)
        monkeypatch.setattr(gold, "KV_TILE", tile)  # per-layer tiles (prefill, padded batches)
        monkeypatch.setattr(goldfinch, "KV_TILE", tile)  # compressed decode: tiles through all GOLD layers
    ids = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
    for mode in ("kv", "compressed"):
        logits, cache = model.prefill(ids[:, :12], cache_mode=mode, chunk_size=5)
        assert _max_err(logits, full[:, 11]) <= TOL
        for t in range(12, 30):
            logits, cache = model.decode(ids[:, t], cache)
            assert _max_err(logits, full[:, t]) <= TOL, (mode, t)
        assert cache.mode == mode


def test_generate_padded_batch_matches_rows() -> None:
    """The generation loop: a left-padded batch generates per row what the row generates alone."""
    model = random_model(tiny_cfg("goldfinch", wkv_backend="torch", attn_backend="sdpa"))
    prompts = _prompts()
    ids, mask = left_pad(prompts, pad_id=0)
    out = generate(model, ids, 8, temperature=0, attention_mask=mask)
    for b, p in enumerate(prompts):
        assert out.new_tokens[b] == model.generate(p, 8, temperature=0)[0, len(p):].tolist()
    assert out.cache_bytes == sum(out.cache_parts.values()) and out.cache_parts["mask"] == 3 * (40 + 7)


@pytest.mark.parametrize("kwargs, msg", [
    ({"temperature": -1.0}, "temperature"), ({"top_p": 2.0}, "top_p"), ({"top_p": 0.0}, "top_p"),
    ({"top_k": -1}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens"),
])
def test_generation_args_validated(kwargs: dict, msg: str) -> None:
    model = random_model(tiny_cfg("finch", n_layer=2))
    args = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=msg):
        generate(model, torch.tensor([[1, 2]]), **args)
    with pytest.raises(ValueError, match="empty"):
        generate(model, torch.tensor([[1, 2]]), 2, attention_mask=torch.tensor([[0, 0]]))


def test_compressed_token_rows_follow_weight_changes() -> None:
    """The per-token-id memo of the compressed mode never serves rows of old weights."""
    model = random_model(tiny_cfg("goldfinch", wkv_backend="torch", attn_backend="sdpa"))
    ids = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(3))
    for change in (lambda: model.emb.weight.add_(0.3), lambda: model.w_kv_cache_b.weight.mul_(1.5),
                   lambda: model.blocks[0].ln0.bias.add_(0.2),
                   lambda: model.load_state_dict(random_model(model.cfg, seed=9).state_dict())):
        model.prefill(ids, cache_mode="compressed")  # fills the memo
        with torch.no_grad():
            change()
            full = model(ids)
        logits, _ = model.prefill(ids, cache_mode="compressed")
        assert _max_err(logits, full[:, -1]) <= TOL
