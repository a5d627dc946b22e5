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


@pytest.mark.parametrize("tq,tk", [(12, 12), (1, 20), (5, 20)])
def test_key_mask_left_padding(tq: int, tk: int) -> None:
    """key_mask: a row with p padding keys on the left gives, at its real queries, what the unpadded
    row gives; padding queries stay finite; sdpa == naive; flash/auto fall back to a masked path."""
    q, k, v = _qkv(2, tq, tk, 3, 16)
    pad = 4
    mask = torch.ones(2, tk, dtype=torch.bool)
    mask[1, :pad] = False
    ref = causal_attention(q, k, v, backend="naive", key_mask=mask)
    for backend in ("sdpa", "auto"):
        assert rel_rms(causal_attention(q, k, v, backend=backend, key_mask=mask), ref) < 1e-5
    assert torch.isfinite(ref).all()
    assert torch.equal(ref[0], causal_attention(q[:1], k[:1], v[:1], backend="naive")[0])  # no padding: unchanged
    real_q = slice(max(pad - (tk - tq), 0), tq)  # the queries of row 1 at real positions
    alone = causal_attention(q[1:, real_q], k[1:, pad:], v[1:, pad:], backend="naive")
    assert rel_rms(ref[1:, real_q], alone) < 1e-6
    with pytest.raises(ValueError, match="key_mask"):
        causal_attention(q, k, v, key_mask=mask[:, 1:])
