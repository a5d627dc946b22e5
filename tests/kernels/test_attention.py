"""causal_attention: sdpa vs the fp32 naive oracle (training, decode, cached prefix); flash on GPU."""

from __future__ import annotations

import pytest
import torch
from _gfk_testing import rel_rms
from gf_kernels import causal_attention


def _qkv(B: int, Tq: int, Tk: int, H: int, D: int, dtype: torch.dtype = torch.float32,
         device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(Tq * 1000 + Tk)
    q = torch.randn(B, Tq, H, D, generator=g).to(device, dtype)
    k = torch.randn(B, Tk, H, D, generator=g).to(device, dtype)
    v = torch.randn(B, Tk, H, D, generator=g).to(device, dtype)
    return q, k, v


@pytest.mark.parametrize("tq,tk", [(17, 17), (1, 33), (8, 40), (64, 64)])
def test_sdpa_matches_naive(tq: int, tk: int) -> None:
    q, k, v = (x.requires_grad_() for x in _qkv(2, tq, tk, 3, 16))
    ref = causal_attention(q, k, v, backend="naive")
    got = causal_attention(q, k, v, backend="sdpa")
    assert got.shape == (2, tq, 3, 16) and got.dtype == q.dtype
    assert rel_rms(got, ref) < 1e-5
    do = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * do).sum(), (q, k, v))
    g_got = torch.autograd.grad((got * do).sum(), (q, k, v))
    for a, b in zip(g_got, g_ref):
        assert rel_rms(a, b) < 1e-5


def test_cached_prefix_equals_full_sequence() -> None:
    """Chunked prefill: the last 8 queries against all 40 keys == rows 32..39 of full attention."""
    q, k, v = _qkv(2, 40, 40, 2, 16)
    full = causal_attention(q, k, v, backend="naive")
    for backend in ("naive", "sdpa", "auto"):
        part = causal_attention(q[:, 32:], k, v, backend=backend)
        assert rel_rms(part, full[:, 32:]) < 1e-5, backend
    decode = causal_attention(q[:, -1:], k, v, backend="sdpa")
    assert rel_rms(decode, full[:, -1:]) < 1e-5


def test_scale_and_errors() -> None:
    q, k, v = _qkv(1, 4, 4, 2, 8)
    a = causal_attention(q, k, v, backend="sdpa", scale=0.3)
    b = causal_attention(q, k, v, backend="naive", scale=0.3)
    assert rel_rms(a, b) < 1e-5
    with pytest.raises(ValueError, match="Tk"):
        causal_attention(q, k[:, :2], v[:, :2])
    with pytest.raises(ValueError, match="backend"):
        causal_attention(q, k, v, backend="xformers")
    with pytest.raises(ValueError):
        causal_attention(q, k, v, backend="flash")  # missing package or CPU tensors: a clear error


@pytest.mark.gpu
@pytest.mark.parametrize("tq,tk", [(128, 128), (1, 200), (16, 100)])
def test_flash_matches_sdpa_gpu(tq: int, tk: int) -> None:
    pytest.importorskip("flash_attn")
    q, k, v = _qkv(2, tq, tk, 4, 64, torch.bfloat16, "cuda")
    a = causal_attention(q, k, v, backend="flash")
    b = causal_attention(q, k, v, backend="sdpa")
    assert rel_rms(a.float(), b.float()) < 1e-2
