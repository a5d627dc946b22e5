"""WKV-6 chunked Triton kernels: forward and backward with initial state in, final state out.

Layers: ``@triton.jit`` kernels -> host launchers -> ``torch.autograd.Function`` -> the
``wkv6_chunk_triton`` entry (a ``torch.compiler.disable`` boundary, so a compiled model calls it
eagerly). One program per (batch, head, V-block) walks the chunks of BT = 16 tokens in order (forward) or
in reverse (backward), keeping the K x V state (or its gradient) in fp32 registers:

* inter-chunk terms use r_t exp(ge_t) and k_s exp(gL - g_s) (exponents <= 0),
* the 16 x 16 intra-chunk matrix uses exact pairwise factors exp(ge_t - g_s), s < t, formed
  element-wise over K (no positive exponent anywhere, whatever the decay),
* the chunk-start states are saved in fp32 for the backward pass ([B, H, NT, K, V]),
* V is split over a second grid axis (BV columns per program; the intra-chunk matrix is
  recomputed per V-block), so a GPU gets B * H * V / BV programs; dr and dk are then partial
  sums over the V-blocks, written to [NV, B, T, H, K] and summed on the host.

The kernels return dr and dk in fp32; dw and du are reduced on the host in fp32 from
dr, dk (see README.md, "gradient of the decay"), which avoids fla's bf16 dw precision loss.
Loads are upcast to fp32 before any ``tl.dot`` (bf16 ``tl.dot`` is wrong in the interpreter);
fp32 inputs use IEEE dots, bf16/fp16 inputs TF32 dots on the GPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._alloc import new_output
from .chunk_torch import W_MIN
from .grad import decay_and_bonus_grads

BT = 16  # chunk length (tl.dot needs >= 16)


def _configs() -> list[triton.Config]:
    """Launch configs to tune on a GPU; one config under the interpreter (autotune can't time there)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return [triton.Config({}, num_warps=4)]
    return [triton.Config({}, num_warps=nw, num_stages=ns) for nw in (4, 8, 16) for ns in (1, 2)]


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _load_chunk(r, k, v, w, base_k, base_v, t, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, WMIN: tl.constexpr, i_v):
    """Loads one chunk: r, k, w [BT, BK] (fp32; w clamped at WMIN) and the V-block i_v of v [BT, BV]."""
    ok = tl.arange(0, BK)
    ov = tl.arange(0, BV)
    mv = (i_v * BV + ov) < V
    mt = t < T
    mtk = mt[:, None] & (ok < K)[None, :]
    mtv = mt[:, None] & mv[None, :]
    pk = base_k + t[:, None] * (H * K) + ok[None, :]
    pv = base_v + t[:, None] * (H * V) + ov[None, :]
    rr = tl.load(r + pk, mask=mtk, other=0.0).to(tl.float32)  # [BT, BK]
    kk = tl.load(k + pk, mask=mtk, other=0.0).to(tl.float32)  # [BT, BK]
    ww = tl.load(w + pk, mask=mtk, other=0.0).to(tl.float32)  # [BT, BK]; padding: no decay
    ww = tl.maximum(ww, WMIN)
    vv = tl.load(v + pv, mask=mtv, other=0.0).to(tl.float32)  # [BT, BV]
    return rr, kk, ww, vv, pk, pv, mtk, mtv


@triton.jit
def _decays(ww, BT_: tl.constexpr):
    """In-chunk inclusive g, exclusive ge cumsums [BT, BK] and the chunk total gL [BK]."""
    g = tl.cumsum(ww, axis=0)
    ge = g - ww
    ot = tl.arange(0, BT_)
    gL = tl.sum(tl.where((ot == BT_ - 1)[:, None], g, 0.0), axis=0)
    return g, ge, gL


@triton.jit
def _pairwise(ge, g, BT_: tl.constexpr):
    """E[t, s, i] = exp(ge_t[i] - g_s[i]) for s < t, else 0; [BT, BT, BK], every exponent <= 0."""
    ot = tl.arange(0, BT_)
    strict = (ot[:, None] > ot[None, :])[:, :, None]
    return tl.exp(tl.where(strict, ge[:, None, :] - g[None, :, :], float("-inf")))


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _fwd_kernel(r, k, v, w, u, h0, o, ht, hs, T,
                H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr, SAVE_H: tl.constexpr,
                IEEE: tl.constexpr, WMIN: tl.constexpr):
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    NT = tl.cdiv(T, BT_)
    ot = tl.arange(0, BT_)
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    mkv = (ok < K)[:, None] & (ov < V)[None, :]
    pkv = ok[:, None] * V + ov[None, :]
    base_k = i_b * T * H * K + i_h * K
    base_v = i_b * T * H * V + i_h * V + i_v * BV
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        S = tl.load(h0 + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    uu = tl.load(u + i_h * K + ok, mask=ok < K, other=0.0).to(tl.float32)  # [BK]
    eye = ot[:, None] == ot[None, :]
    for ic in range(NT):
        t = ic * BT_ + ot
        rr, kk, ww, vv, pk, pv, mtk, mtv = _load_chunk(
            r, k, v, w, base_k, base_v, t, T, H, K, V, BK, BV, WMIN, i_v)
        g, ge, gL = _decays(ww, BT_)
        if SAVE_H:
            tl.store(hs + (i_bh * NT + ic) * K * V + pkv, S, mask=mkv)
        acc = _dot(rr * tl.exp(ge), S, IEEE)  # [BT, BV] inter-chunk
        E = _pairwise(ge, g, BT_)
        A = tl.sum(rr[:, None, :] * kk[None, :, :] * E, axis=2)  # [BT, BT]
        bonus = tl.sum(rr * uu[None, :] * kk, axis=1)  # [BT]
        A = A + tl.where(eye, bonus[:, None], 0.0)
        acc += _dot(A, vv, IEEE)
        tl.store(o + pv, acc.to(o.dtype.element_ty), mask=mtv)
        kh = kk * tl.exp(gL[None, :] - g)  # [BT, BK]
        S = S * tl.exp(gL)[:, None] + _dot(tl.trans(kh), vv, IEEE)
    tl.store(ht + i_bh * K * V + pkv, S, mask=mkv)


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _bwd_kernel(r, k, v, w, u, hs, do, dht, dr, dk, dv, dh0, T,
                H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, HAS_DHT: tl.constexpr, HAS_H0: tl.constexpr,
                IEEE: tl.constexpr, WMIN: tl.constexpr):
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    NT = tl.cdiv(T, BT_)
    ot = tl.arange(0, BT_)
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    mkv = (ok < K)[:, None] & (ov < V)[None, :]
    pkv = ok[:, None] * V + ov[None, :]
    base_k = i_b * T * H * K + i_h * K
    base_v = i_b * T * H * V + i_h * V + i_v * BV
    dS = tl.zeros([BK, BV], dtype=tl.float32)  # gradient w.r.t. the state after the current chunk
    if HAS_DHT:
        dS = tl.load(dht + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    uu = tl.load(u + i_h * K + ok, mask=ok < K, other=0.0).to(tl.float32)
    eye = ot[:, None] == ot[None, :]
    strict = ot[:, None] > ot[None, :]
    for j in range(NT):
        ic = NT - 1 - j
        t = ic * BT_ + ot
        rr, kk, ww, vv, pk, pv, mtk, mtv = _load_chunk(
            r, k, v, w, base_k, base_v, t, T, H, K, V, BK, BV, WMIN, i_v)
        dO = tl.load(do + pv, mask=mtv, other=0.0).to(tl.float32)  # [BT, BV]
        S = tl.load(hs + (i_bh * NT + ic) * K * V + pkv, mask=mkv, other=0.0)  # chunk-start state
        g, ge, gL = _decays(ww, BT_)
        E = _pairwise(ge, g, BT_)
        A = tl.sum(rr[:, None, :] * kk[None, :, :] * E, axis=2)
        bonus = tl.sum(rr * uu[None, :] * kk, axis=1)
        A = A + tl.where(eye, bonus[:, None], 0.0)  # [BT, BT] incl. u bonus on the diagonal
        eg = tl.exp(ge)
        kd = tl.exp(gL[None, :] - g)  # [BT, BK]
        dA = _dot(dO, tl.trans(vv), IEEE)  # [BT(t), BT(s)]
        d_bonus = tl.sum(tl.where(eye, dA, 0.0), axis=1)  # [BT] = dO_t . v_t
        dA = tl.where(strict, dA, 0.0)
        # dv: intra (A^T dO) + to the state after the chunk (k_hat dS)
        dvv = _dot(tl.trans(A), dO, IEEE) + _dot(kk * kd, dS, IEEE)
        tl.store(dv + pv, dvv, mask=mtv)
        # dr: inter (dO S^T) exp(ge) + intra + bonus
        drr = _dot(dO, tl.trans(S), IEEE) * eg
        drr += tl.sum(dA[:, :, None] * kk[None, :, :] * E, axis=1)
        drr += d_bonus[:, None] * uu[None, :] * kk
        tl.store(dr + i_v * (tl.num_programs(0) // H) * T * H * K + pk, drr, mask=mtk)  # partial over V
        # dk: to the state after the chunk + intra + bonus
        dkk = _dot(vv, tl.trans(dS), IEEE) * kd
        dkk += tl.sum(dA[:, :, None] * rr[:, None, :] * E, axis=0)
        dkk += d_bonus[:, None] * uu[None, :] * rr
        tl.store(dk + i_v * (tl.num_programs(0) // H) * T * H * K + pk, dkk, mask=mtk)
        dS = dS * tl.exp(gL)[:, None] + _dot(tl.trans(rr * eg), dO, IEEE)
    if HAS_H0:
        tl.store(dh0 + i_bh * K * V + pkv, dS, mask=mkv)


def _blocks(K: int, V: int, block_v: int | None, device: torch.device) -> tuple[int, int, int]:
    """(BK, BV, NV): full K per program; V split into NV blocks (more programs on a GPU)."""
    bk = max(16, triton.next_power_of_2(K))
    full_v = max(16, triton.next_power_of_2(V))
    if block_v is None:
        block_v = min(full_v, 32) if device.type == "cuda" else full_v
    if block_v < 16 or block_v & (block_v - 1):
        raise ValueError(f"block_v={block_v} must be a power of two >= 16.")
    bv = min(block_v, full_v)
    return bk, bv, triton.cdiv(V, bv)


def _chunk_fwd(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
               h0: torch.Tensor | None, save_h: bool, block_v: int | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    B, T, H, K = r.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV, NV = _blocks(K, V, block_v, r.device)
    o = new_output((B, T, H, V), dtype=v.dtype, device=v.device)
    ht = new_output((B, H, K, V), dtype=torch.float32, device=v.device)
    hs = new_output((B, H, NT, K, V), dtype=torch.float32, device=v.device) if save_h else None
    _fwd_kernel[(B * H, NV)](
        r, k, v, w, u, h0 if h0 is not None else ht, o, ht, hs if hs is not None else ht, T,
        H=H, K=K, V=V, BT_=BT, BK=BK, BV=BV, HAS_H0=h0 is not None, SAVE_H=save_h,
        IEEE=r.dtype == torch.float32, WMIN=W_MIN,
    )
    return o, ht, hs


class _ChunkWKV6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, k, v, w, u, h0, block_v):  # type: ignore[override]
        r, k, v, w, u = (x.contiguous() for x in (r, k, v, w, u))
        h0c = h0.float().contiguous() if h0 is not None else None
        need = any(ctx.needs_input_grad)
        o, ht, hs = _chunk_fwd(r, k, v, w, u, h0c, need, block_v)
        ctx.block_v = block_v
        ctx.save_for_backward(r, k, v, w, u, hs, ht)
        ctx.has_h0 = h0 is not None
        ctx.h0_dtype = h0.dtype if h0 is not None else None
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):  # type: ignore[override]
        r, k, v, w, u, hs, ht = ctx.saved_tensors
        B, T, H, K = r.shape
        V = v.shape[-1]
        BK, BV, NV = _blocks(K, V, ctx.block_v, r.device)
        do = do.contiguous()
        dht = dht.float().contiguous() if dht is not None else None
        dr = new_output((NV, B, T, H, K), dtype=torch.float32, device=r.device)  # partial sums over V
        dk = new_output((NV, B, T, H, K), dtype=torch.float32, device=r.device)
        dv = new_output((B, T, H, V), dtype=torch.float32, device=r.device)
        dh0 = new_output((B, H, K, V), dtype=torch.float32, device=r.device) if ctx.has_h0 else None
        _bwd_kernel[(B * H, NV)](
            r, k, v, w, u, hs, do, dht if dht is not None else hs, dr, dk, dv,
            dh0 if dh0 is not None else hs, T,
            H=H, K=K, V=V, BT_=BT, BK=BK, BV=BV, HAS_DHT=dht is not None, HAS_H0=dh0 is not None,
            IEEE=r.dtype == torch.float32, WMIN=W_MIN,
        )
        dr, dk = dr.sum(0), dk.sum(0)
        dw, du, dr, dk = decay_and_bonus_grads(r, k, v, w, u, do, dr, dk, ht, dht, W_MIN)
        return (dr.to(r.dtype), dk.to(k.dtype), dv.to(v.dtype), dw.to(w.dtype), du.to(u.dtype),
                dh0.to(ctx.h0_dtype) if dh0 is not None else None, None)


@torch.compiler.disable
def wkv6_chunk_triton(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked Triton WKV-6 (checked by ``gf_kernels.wkv6.wkv6``). Shapes as there; state fp32.

    ``block_v``: V columns per program (power of two >= 16); default 32 on CUDA, all of V otherwise.
    """
    if r.shape[1] == 0:
        raise ValueError("wkv6(backend='triton') got T = 0; skip the call for empty inputs.")
    o, ht = _ChunkWKV6.apply(r, k, v, w, u, initial_state, block_v)
    return o, (ht if output_final_state else None)
