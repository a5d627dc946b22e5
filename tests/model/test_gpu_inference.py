"""GPU inference (issue 15; gpu-marked, skipped without CUDA): the ``kv`` cache decodes with FlashAttention
over the cached keys/values (bf16, no padding) or SDPA (padding mask), the Finch layers with the
recurrent Triton kernel, and both agree with the training forward and with each prompt alone."""

from __future__ import annotations

import pytest
import torch
from _model_testing import random_model, tiny_cfg
from gf_kernels.wkv6 import resolve_backend
from test_padding import left_pad

pytestmark = pytest.mark.gpu


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@pytest.mark.parametrize("mode", ["kv", "compressed"])
def test_cuda_decode_matches_forward(mode: str) -> None:
    assert resolve_backend("auto", torch.device("cuda"), tokens=1) == "recurrent"
    cfg = tiny_cfg("goldfinch", n_embd=128, head_size=64, wkv_backend="auto", attn_backend="auto")
    model = random_model(cfg).cuda().to(torch.bfloat16)
    ids = torch.randint(0, 97, (2, 48), device="cuda")
    with torch.no_grad():
        full = model(ids)
    logits, cache = model.prefill(ids[:, :32], cache_mode=mode)
    assert _rel(logits, full[:, 31]) < 3e-2
    for t in range(32, 48):
        logits, cache = model.decode(ids[:, t], cache)
        assert _rel(logits, full[:, t]) < 3e-2, t


def test_cuda_left_padded_batch_fp32() -> None:
    cfg = tiny_cfg("goldfinch", wkv_backend="auto", attn_backend="auto")
    model = random_model(cfg).cuda()
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(1, 97, (n,), generator=g) for n in (5, 17, 40)]
    ids, mask = left_pad(prompts, pad_id=3)
    out = model.generate(ids.cuda(), 10, temperature=0, attention_mask=mask.cuda())
    for b, p in enumerate(prompts):
        alone = model.generate(p.cuda(), 10, temperature=0)
        assert torch.equal(out[b, ids.shape[1]:], alone[0, len(p):]), b
