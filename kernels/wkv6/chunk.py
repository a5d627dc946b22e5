"""WKV-6 chunked Triton kernels: forward and backward with initial state in, final state out.

Layers: ``@triton.jit`` kernels -> host launchers -> ``torch.autograd.Function`` -> the
``wkv6_chunk_triton`` entry (a ``torch.compiler.disable`` boundary, so a compiled model calls it
eagerly). Chunks are BT = 16 tokens; V is split into blocks of BV columns (a grid axis). Four
kernels, two light sequential scans and two heavy fully parallel ones:

* ``_fwd_h_kernel``  (batch*head, V-block): walks the chunks, stores every chunk-start state
  (``hs`` [B, H, NT, K, V], fp32) and the final state; one [K, BT] x [BT, BV] dot per chunk.
* ``_fwd_o_kernel``  (chunk, batch*head, V-block): o = (r exp(ge)) S_n + A v, with the 16 x 16
  intra-chunk matrix A built element-wise from exact pairwise factors exp(ge_t - g_s), s < t
  (masked to -inf before the exp: no positive exponent anywhere, whatever the decay) + u bonus.
* ``_bwd_dh_kernel`` (batch*head, V-block): reverse scan of the state gradient, storing
  dL/d(state after chunk n) (``dhs``) and finally dh0.
* ``_bwd_grad_kernel`` (chunk, batch*head, V-block): dv, and dr, dk as partial sums over the
  V-blocks ([NV, B, T, H, K], summed on the host).

The two scans share their prologue (``_scan_start``: offsets, carried state tile), the two per-chunk
kernels theirs (``_chunk_tile``: the chunk's loads, decays, u and the intra-chunk matrix A).

The kernels return dr and dk in fp32; dw and du are reduced on the host in fp32 from
dr, dk (``grad.py``; README.md "gradient of the decay"), which avoids fla's bf16 dw precision loss.
Loads are upcast to fp32 before any ``tl.dot`` (bf16 ``tl.dot`` is wrong in the interpreter);
fp32 inputs use IEEE dots, bf16/fp16 inputs TF32 dots on the GPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._alloc import new_output
from ._contract import dims, require_tokens
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


@triton.jit
def _offsets(i_bh, i_v, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
             BV: tl.constexpr):
    """Base offsets of (batch, head) in [B, T, H, K] / [B, T, H, V] (V-block i_v) and the state tile."""
    i_b = i_bh // H
    i_h = i_bh % H
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    mkv = (ok < K)[:, None] & (ov < V)[None, :]
    pkv = ok[:, None] * V + ov[None, :]  # [BK, BV] inside one [K, V] state
    base_k = i_b * T * H * K + i_h * K
    base_v = i_b * T * H * V + i_h * V + i_v * BV
    return i_h, base_k, base_v, mkv, pkv


@triton.jit
def _scan_start(s0, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, HAS_S0: tl.constexpr):
    """Shared prologue of the two sequential scans, program (batch*head, V-block): offsets, chunk
    count, and the carried [BK, BV] fp32 tile, read from ``s0`` [B, H, K, V] if HAS_S0 else zeros."""
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    i_h, base_k, base_v, mkv, pkv = _offsets(i_bh, i_v, T, H, K, V, BK, BV)
    NT = tl.cdiv(T, BT_)
    ot = tl.arange(0, BT_)
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_S0:
        S = tl.load(s0 + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    return i_bh, i_v, base_k, base_v, mkv, pkv, NT, ot, S


@triton.jit
def _chunk_tile(r, k, v, w, u, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, WMIN: tl.constexpr):
    """Shared prologue of the per-chunk kernels, program (chunk, batch*head, V-block): the chunk's
    loads and decays, u [BK], the pairwise factors E and the intra-chunk matrix A [BT, BT] (u bonus on
    the diagonal), and the offset ``st`` of the chunk's [K, V] state tile in [B, H, NT, K, V]."""
    ic = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_v = tl.program_id(2)
    i_h, base_k, base_v, mkv, pkv = _offsets(i_bh, i_v, T, H, K, V, BK, BV)
    NT = tl.cdiv(T, BT_)
    ot = tl.arange(0, BT_)
    ok = tl.arange(0, BK)
    uu = tl.load(u + i_h * K + ok, mask=ok < K, other=0.0).to(tl.float32)  # [BK]
    rr, kk, ww, vv, pk, pv, mtk, mtv = _load_chunk(
        r, k, v, w, base_k, base_v, ic * BT_ + ot, T, H, K, V, BK, BV, WMIN, i_v)
    g, ge, gL = _decays(ww, BT_)
    E = _pairwise(ge, g, BT_)
    A = tl.sum(rr[:, None, :] * kk[None, :, :] * E, axis=2)  # [BT, BT]
    bonus = tl.sum(rr * uu[None, :] * kk, axis=1)  # [BT]
    A = A + tl.where(ot[:, None] == ot[None, :], bonus[:, None], 0.0)
    st = (i_bh * NT + ic) * K * V + pkv
    return rr, kk, vv, uu, g, ge, gL, E, A, ot, pk, pv, mtk, mtv, st, mkv


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _fwd_h_kernel(r, k, v, w, h0, hs, ht, T,
                  H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                  BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr, IEEE: tl.constexpr,
                  WMIN: tl.constexpr):
    """State pass, one program per (batch*head, V-block): hs[n] = state at the start of chunk n."""
    i_bh, i_v, base_k, base_v, mkv, pkv, NT, ot, S = _scan_start(h0, T, H, K, V, BT_, BK, BV, HAS_H0)
    for ic in range(NT):
        rr, kk, ww, vv, pk, pv, mtk, mtv = _load_chunk(
            r, k, v, w, base_k, base_v, ic * BT_ + ot, T, H, K, V, BK, BV, WMIN, i_v)
        g, ge, gL = _decays(ww, BT_)
        tl.store(hs + (i_bh * NT + ic) * K * V + pkv, S, mask=mkv)
        kh = kk * tl.exp(gL[None, :] - g)  # [BT, BK], exponent <= 0
        S = S * tl.exp(gL)[:, None] + _dot(tl.trans(kh), vv, IEEE)
    tl.store(ht + i_bh * K * V + pkv, S, mask=mkv)


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _fwd_o_kernel(r, k, v, w, u, hs, o, T,
                  H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                  BK: tl.constexpr, BV: tl.constexpr, IEEE: tl.constexpr, WMIN: tl.constexpr):
    """Output, one program per (chunk, batch*head, V-block): inter-chunk + intra-chunk + bonus."""
    rr, kk, vv, uu, g, ge, gL, E, A, ot, pk, pv, mtk, mtv, st, mkv = _chunk_tile(
        r, k, v, w, u, T, H, K, V, BT_, BK, BV, WMIN)
    S = tl.load(hs + st, mask=mkv, other=0.0)  # chunk-start state
    acc = _dot(rr * tl.exp(ge), S, IEEE)  # [BT, BV] inter-chunk
    acc += _dot(A, vv, IEEE)  # intra-chunk + bonus
    tl.store(o + pv, acc.to(o.dtype.element_ty), mask=mtv)


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _bwd_dh_kernel(r, k, v, w, do, dht, dhs, dh0, T,
                   H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                   BK: tl.constexpr, BV: tl.constexpr, HAS_DHT: tl.constexpr, HAS_H0: tl.constexpr,
                   IEEE: tl.constexpr, WMIN: tl.constexpr):
    """Reverse state-gradient pass, one program per (batch*head, V-block):
    dhs[n] = dL/d(state after chunk n); the last one left is dL/d(initial state)."""
    i_bh, i_v, base_k, base_v, mkv, pkv, NT, ot, dS = _scan_start(dht, T, H, K, V, BT_, BK, BV, HAS_DHT)
    for j in range(NT):
        ic = NT - 1 - j
        rr, kk, ww, vv, pk, pv, mtk, mtv = _load_chunk(
            r, k, v, w, base_k, base_v, ic * BT_ + ot, T, H, K, V, BK, BV, WMIN, i_v)
        dO = tl.load(do + pv, mask=mtv, other=0.0).to(tl.float32)  # [BT, BV]
        g, ge, gL = _decays(ww, BT_)
        tl.store(dhs + (i_bh * NT + ic) * K * V + pkv, dS, mask=mkv)
        dS = dS * tl.exp(gL)[:, None] + _dot(tl.trans(rr * tl.exp(ge)), dO, IEEE)
    if HAS_H0:
        tl.store(dh0 + i_bh * K * V + pkv, dS, mask=mkv)


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _bwd_grad_kernel(r, k, v, w, u, hs, dhs, do, dr, dk, dv, T,
                     H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                     BK: tl.constexpr, BV: tl.constexpr, IEEE: tl.constexpr, WMIN: tl.constexpr):
    """dr, dk (partial sums over V-blocks) and dv, one program per (chunk, batch*head, V-block)."""
    rr, kk, vv, uu, g, ge, gL, E, A, ot, pk, pv, mtk, mtv, st, mkv = _chunk_tile(
        r, k, v, w, u, T, H, K, V, BT_, BK, BV, WMIN)
    eye = ot[:, None] == ot[None, :]
    dO = tl.load(do + pv, mask=mtv, other=0.0).to(tl.float32)  # [BT, BV]
    S = tl.load(hs + st, mask=mkv, other=0.0)  # state before the chunk
    dS = tl.load(dhs + st, mask=mkv, other=0.0)  # grad. of the state after
    eg = tl.exp(ge)
    kd = tl.exp(gL[None, :] - g)  # [BT, BK]
    dA = _dot(dO, tl.trans(vv), IEEE)  # [BT(t), BT(s)], partial over this V-block
    d_bonus = tl.sum(tl.where(eye, dA, 0.0), axis=1)  # [BT] = dO_t . v_t
    dA = tl.where(ot[:, None] > ot[None, :], dA, 0.0)
    # dv: intra (A^T dO) + into the state after the chunk (k_hat dS)
    dvv = _dot(tl.trans(A), dO, IEEE) + _dot(kk * kd, dS, IEEE)
    tl.store(dv + pv, dvv, mask=mtv)
    part = tl.program_id(2) * (tl.num_programs(1) // H) * T * H * K  # [NV, B, T, H, K] partial sums
    # dr: inter (dO S^T) exp(ge) + intra + bonus
    drr = _dot(dO, tl.trans(S), IEEE) * eg
    drr += tl.sum(dA[:, :, None] * kk[None, :, :] * E, axis=1)
    drr += d_bonus[:, None] * uu[None, :] * kk
    tl.store(dr + part + pk, drr, mask=mtk)
    # dk: into the state after the chunk + intra + bonus
    dkk = _dot(vv, tl.trans(dS), IEEE) * kd
    dkk += tl.sum(dA[:, :, None] * rr[:, None, :] * E, axis=0)
    dkk += d_bonus[:, None] * uu[None, :] * rr
    tl.store(dk + part + pk, dkk, mask=mtk)


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
               h0: torch.Tensor | None, block_v: int | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns o [B, T, H, V] (v's dtype), the final state and the chunk-start states (fp32)."""
    B, T, H, K, V = dims(r, v)
    NT = triton.cdiv(T, BT)
    BK, BV, NV = _blocks(K, V, block_v, r.device)
    ieee = r.dtype == torch.float32
    o = new_output((B, T, H, V), dtype=v.dtype, device=v.device)
    ht = new_output((B, H, K, V), dtype=torch.float32, device=v.device)
    hs = new_output((B, H, NT, K, V), dtype=torch.float32, device=v.device)
    _fwd_h_kernel[(B * H, NV)](
        r, k, v, w, h0 if h0 is not None else ht, hs, ht, T,
        H=H, K=K, V=V, BT_=BT, BK=BK, BV=BV, HAS_H0=h0 is not None, IEEE=ieee, WMIN=W_MIN,
    )
    _fwd_o_kernel[(NT, B * H, NV)](
        r, k, v, w, u, hs, o, T, H=H, K=K, V=V, BT_=BT, BK=BK, BV=BV, IEEE=ieee, WMIN=W_MIN,
    )
    return o, ht, hs


def _chunk_bwd(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
               hs: torch.Tensor, do: torch.Tensor, dht: torch.Tensor | None, has_h0: bool,
               block_v: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Returns dr, dk, dv (fp32, full gradients incl. the bonus) and dh0 (fp32) or None."""
    B, T, H, K, V = dims(r, v)
    NT = triton.cdiv(T, BT)
    BK, BV, NV = _blocks(K, V, block_v, r.device)
    ieee = r.dtype == torch.float32
    dhs = new_output((B, H, NT, K, V), dtype=torch.float32, device=r.device)
    dh0 = new_output((B, H, K, V), dtype=torch.float32, device=r.device) if has_h0 else None
    _bwd_dh_kernel[(B * H, NV)](
        r, k, v, w, do, dht if dht is not None else dhs, dhs, dh0 if dh0 is not None else dhs, T,
        H=H, K=K, V=V, BT_=BT, BK=BK, BV=BV, HAS_DHT=dht is not None, HAS_H0=has_h0, IEEE=ieee,
        WMIN=W_MIN,
    )
    dr = new_output((NV, B, T, H, K), dtype=torch.float32, device=r.device)  # partial sums over V
    dk = new_output((NV, B, T, H, K), dtype=torch.float32, device=r.device)
    dv = new_output((B, T, H, V), dtype=torch.float32, device=r.device)
    _bwd_grad_kernel[(NT, B * H, NV)](
        r, k, v, w, u, hs, dhs, do, dr, dk, dv, T,
        H=H, K=K, V=V, BT_=BT, BK=BK, BV=BV, IEEE=ieee, WMIN=W_MIN,
    )
    return dr.sum(0), dk.sum(0), dv, dh0


class _ChunkWKV6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, k, v, w, u, h0, block_v):  # type: ignore[override]
        r, k, v, w, u = (x.contiguous() for x in (r, k, v, w, u))
        h0c = h0.float().contiguous() if h0 is not None else None
        o, ht, hs = _chunk_fwd(r, k, v, w, u, h0c, block_v)
        ctx.save_for_backward(r, k, v, w, u, hs, ht)
        ctx.block_v = block_v
        ctx.h0_dtype = h0.dtype if h0 is not None else None
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):  # type: ignore[override]
        r, k, v, w, u, hs, ht = ctx.saved_tensors
        do = do.contiguous()
        dht = dht.float().contiguous() if dht is not None else None
        dr, dk, dv, dh0 = _chunk_bwd(r, k, v, w, u, hs, do, dht, ctx.h0_dtype is not None, ctx.block_v)
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
    require_tokens(r, "triton")
    o, ht = _ChunkWKV6.apply(r, k, v, w, u, initial_state, block_v)
    return o, (ht if output_final_state else None)
