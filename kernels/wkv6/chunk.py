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

The kernels share small ``@triton.jit`` helpers, each returning a few named tiles: offsets and masks
(``_state_tile``: a V-block of a [K, V] state; ``_token_tile``: one chunk's tokens), loads
(``_load_state``, ``_load_rkw``, ``_load_v``, ``_load_u``) and the chunk maths (``_decays``: in-chunk
cumulative decays; ``_pairwise``: the factors exp(ge_t - g_s); ``_intra``: the matrix A).

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
from ._contract import W_MIN, dims, require_tokens
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
def _state_tile(i_v, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Offsets [BK, BV] of V-block i_v inside one [K, V] state, and their mask."""
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    pkv = ok[:, None] * V + ov[None, :]
    mkv = (ok < K)[:, None] & (ov < V)[None, :]
    return pkv, mkv


@triton.jit
def _load_state(s, i_bh, pkv, mkv, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                HAS_S: tl.constexpr):
    """The carried [BK, BV] fp32 tile of state ``s`` [B, H, K, V] for (batch*head i_bh), zeros if not HAS_S."""
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_S:
        S = tl.load(s + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    return S


@triton.jit
def _token_tile(i_bh, i_v, t, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                BV: tl.constexpr):
    """Offsets and masks of tokens t [BT] of (batch*head i_bh): pk [BT, BK] into r, k, w (and dr, dk)
    [B, T, H, K]; pv [BT, BV] into V-block i_v of v, o, do, dv [B, T, H, V]."""
    i_b = i_bh // H
    i_h = i_bh % H
    ok = tl.arange(0, BK)
    ov = tl.arange(0, BV)
    mt = t < T
    pk = i_b * T * H * K + i_h * K + t[:, None] * (H * K) + ok[None, :]
    pv = i_b * T * H * V + i_h * V + i_v * BV + t[:, None] * (H * V) + ov[None, :]
    mtk = mt[:, None] & (ok < K)[None, :]
    mtv = mt[:, None] & ((i_v * BV + ov) < V)[None, :]
    return pk, mtk, pv, mtv


@triton.jit
def _load_rkw(r, k, w, pk, mtk, WMIN: tl.constexpr):
    """r, k, w of one chunk [BT, BK] in fp32; w clamped at WMIN (padding: w = 0, no decay)."""
    rr = tl.load(r + pk, mask=mtk, other=0.0).to(tl.float32)
    kk = tl.load(k + pk, mask=mtk, other=0.0).to(tl.float32)
    ww = tl.maximum(tl.load(w + pk, mask=mtk, other=0.0).to(tl.float32), WMIN)
    return rr, kk, ww


@triton.jit
def _load_v(v, pv, mtv):
    """A [BT, BV] tile of v (or do) in fp32; padding reads 0."""
    return tl.load(v + pv, mask=mtv, other=0.0).to(tl.float32)


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
def _load_u(u, i_bh, H: tl.constexpr, K: tl.constexpr, BK: tl.constexpr):
    """The bonus u [BK] (fp32) of the head of (batch*head i_bh)."""
    ok = tl.arange(0, BK)
    return tl.load(u + (i_bh % H) * K + ok, mask=ok < K, other=0.0).to(tl.float32)


@triton.jit
def _intra(rr, kk, uu, E, BT_: tl.constexpr):
    """The intra-chunk matrix A [BT, BT]: sum_i r_t k_s E[t, s] below the diagonal, r_t u k_t on it."""
    ot = tl.arange(0, BT_)
    A = tl.sum(rr[:, None, :] * kk[None, :, :] * E, axis=2)
    bonus = tl.sum(rr * uu[None, :] * kk, axis=1)  # [BT]
    return A + tl.where(ot[:, None] == ot[None, :], bonus[:, None], 0.0)


@triton.autotune(configs=_configs(), key=["K", "V", "BV", "IEEE"])
@triton.jit
def _fwd_h_kernel(r, k, v, w, h0, hs, ht, T,
                  H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT_: tl.constexpr,
                  BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr, IEEE: tl.constexpr,
                  WMIN: tl.constexpr):
    """State pass, one program per (batch*head, V-block): hs[n] = state at the start of chunk n."""
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    NT = tl.cdiv(T, BT_)
    pkv, mkv = _state_tile(i_v, K, V, BK, BV)
    S = _load_state(h0, i_bh, pkv, mkv, K, V, BK, BV, HAS_H0)
    for ic in range(NT):
        pk, mtk, pv, mtv = _token_tile(i_bh, i_v, ic * BT_ + tl.arange(0, BT_), T, H, K, V, BK, BV)
        _, kk, ww = _load_rkw(r, k, w, pk, mtk, WMIN)  # (r unused: the compiler drops its load)
        vv = _load_v(v, pv, mtv)
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
    ic = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_v = tl.program_id(2)
    pkv, mkv = _state_tile(i_v, K, V, BK, BV)
    pk, mtk, pv, mtv = _token_tile(i_bh, i_v, ic * BT_ + tl.arange(0, BT_), T, H, K, V, BK, BV)
    rr, kk, ww = _load_rkw(r, k, w, pk, mtk, WMIN)
    vv = _load_v(v, pv, mtv)
    g, ge, gL = _decays(ww, BT_)
    A = _intra(rr, kk, _load_u(u, i_bh, H, K, BK), _pairwise(ge, g, BT_), BT_)
    S = tl.load(hs + (i_bh * tl.cdiv(T, BT_) + ic) * K * V + pkv, mask=mkv, other=0.0)  # chunk-start state
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
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    NT = tl.cdiv(T, BT_)
    pkv, mkv = _state_tile(i_v, K, V, BK, BV)
    dS = _load_state(dht, i_bh, pkv, mkv, K, V, BK, BV, HAS_DHT)
    for j in range(NT):
        ic = NT - 1 - j
        pk, mtk, pv, mtv = _token_tile(i_bh, i_v, ic * BT_ + tl.arange(0, BT_), T, H, K, V, BK, BV)
        rr, _, ww = _load_rkw(r, k, w, pk, mtk, WMIN)  # (k unused: the compiler drops its load)
        dO = _load_v(do, pv, mtv)  # [BT, BV]
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
    ic = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_v = tl.program_id(2)
    ot = tl.arange(0, BT_)
    pkv, mkv = _state_tile(i_v, K, V, BK, BV)
    pk, mtk, pv, mtv = _token_tile(i_bh, i_v, ic * BT_ + ot, T, H, K, V, BK, BV)
    rr, kk, ww = _load_rkw(r, k, w, pk, mtk, WMIN)
    vv = _load_v(v, pv, mtv)
    dO = _load_v(do, pv, mtv)  # [BT, BV]
    g, ge, gL = _decays(ww, BT_)
    uu = _load_u(u, i_bh, H, K, BK)
    E = _pairwise(ge, g, BT_)
    A = _intra(rr, kk, uu, E, BT_)
    st = (i_bh * tl.cdiv(T, BT_) + ic) * K * V + pkv  # this chunk's tile in [B, H, NT, K, V]
    S = tl.load(hs + st, mask=mkv, other=0.0)  # state before the chunk
    dS = tl.load(dhs + st, mask=mkv, other=0.0)  # grad. of the state after
    eg = tl.exp(ge)
    kd = tl.exp(gL[None, :] - g)  # [BT, BK]
    dA = _dot(dO, tl.trans(vv), IEEE)  # [BT(t), BT(s)], partial over this V-block
    d_bonus = tl.sum(tl.where(ot[:, None] == ot[None, :], dA, 0.0), axis=1)  # [BT] = dO_t . v_t
    dA = tl.where(ot[:, None] > ot[None, :], dA, 0.0)
    # dv: intra (A^T dO) + into the state after the chunk (k_hat dS)
    dvv = _dot(tl.trans(A), dO, IEEE) + _dot(kk * kd, dS, IEEE)
    tl.store(dv + pv, dvv, mask=mtv)
    part = i_v * (tl.num_programs(1) // H) * T * H * K  # [NV, B, T, H, K] partial sums
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
