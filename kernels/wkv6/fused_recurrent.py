"""WKV-6 fused recurrent Triton kernels: decode (T = 1) and short inputs, with state and gradients.

One program per (batch, head, V-block) in the forward pass walks the tokens one by one with the
K x BV state slice in fp32 registers (no chunk-state buffer, no intra-chunk matrix), which is the
cheapest path when T is small. The backward pass (one program per (batch, head), full V) first
replays the recurrence to get dr, then walks back with the state gradient for dk, dv and the
initial-state gradient; dw and du are reduced on the host in fp32 (``grad.py``). Entry point
``wkv6_fused_recurrent`` is a ``torch.compiler.disable`` boundary.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._alloc import new_output
from ._contract import W_MIN, dims, require_tokens
from .grad import decay_and_bonus_grads


@triton.jit
def _rec_fwd_kernel(r, k, v, w, u, h0, o, ht, T,
                    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                    BV: tl.constexpr, HAS_H0: tl.constexpr, WMIN: tl.constexpr):
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    mk = ok < K
    mv = ov < V
    mkv = mk[:, None] & mv[None, :]
    pkv = ok[:, None] * V + ov[None, :]
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        S = tl.load(h0 + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    uu = tl.load(u + i_h * K + ok, mask=mk, other=0.0).to(tl.float32)
    pk = i_b * T * H * K + i_h * K + ok
    pv = i_b * T * H * V + i_h * V + ov
    for _t in range(T):
        rr = tl.load(r + pk, mask=mk, other=0.0).to(tl.float32)  # [BK]
        kk = tl.load(k + pk, mask=mk, other=0.0).to(tl.float32)
        ww = tl.maximum(tl.load(w + pk, mask=mk, other=0.0).to(tl.float32), WMIN)
        vv = tl.load(v + pv, mask=mv, other=0.0).to(tl.float32)  # [BV]
        kv = kk[:, None] * vv[None, :]  # [BK, BV]
        oo = tl.sum(rr[:, None] * (S + uu[:, None] * kv), axis=0)  # [BV]
        tl.store(o + pv, oo.to(o.dtype.element_ty), mask=mv)
        S = S * tl.exp(ww)[:, None] + kv
        pk += H * K
        pv += H * V
    tl.store(ht + i_bh * K * V + pkv, S, mask=mkv)


@triton.jit
def _rec_bwd_kernel(r, k, v, w, u, h0, do, dht, dr, dk, dv, dh0, T,
                    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                    BV: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr, WMIN: tl.constexpr):
    i_bh = tl.program_id(0)
    i_b = i_bh // H
    i_h = i_bh % H
    ok = tl.arange(0, BK)
    ov = tl.arange(0, BV)
    mk = ok < K
    mv = ov < V
    mkv = mk[:, None] & mv[None, :]
    pkv = ok[:, None] * V + ov[None, :]
    uu = tl.load(u + i_h * K + ok, mask=mk, other=0.0).to(tl.float32)
    # pass 1, forward: dr_t = (S_{t-1} + u k_t v_t^T) dO_t
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        S = tl.load(h0 + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    pk = i_b * T * H * K + i_h * K + ok
    pv = i_b * T * H * V + i_h * V + ov
    for _t in range(T):
        kk = tl.load(k + pk, mask=mk, other=0.0).to(tl.float32)
        ww = tl.maximum(tl.load(w + pk, mask=mk, other=0.0).to(tl.float32), WMIN)
        vv = tl.load(v + pv, mask=mv, other=0.0).to(tl.float32)
        dO = tl.load(do + pv, mask=mv, other=0.0).to(tl.float32)
        kv = kk[:, None] * vv[None, :]
        drr = tl.sum((S + uu[:, None] * kv) * dO[None, :], axis=1)  # [BK]
        tl.store(dr + pk, drr, mask=mk)
        S = S * tl.exp(ww)[:, None] + kv
        pk += H * K
        pv += H * V
    # pass 2, reverse: D = dL/dS_t; dk_t = D v_t + bonus, dv_t = D^T k_t + bonus
    D = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        D = tl.load(dht + i_bh * K * V + pkv, mask=mkv, other=0.0).to(tl.float32)
    for _t in range(T):
        pk -= H * K
        pv -= H * V
        rr = tl.load(r + pk, mask=mk, other=0.0).to(tl.float32)
        kk = tl.load(k + pk, mask=mk, other=0.0).to(tl.float32)
        ww = tl.maximum(tl.load(w + pk, mask=mk, other=0.0).to(tl.float32), WMIN)
        vv = tl.load(v + pv, mask=mv, other=0.0).to(tl.float32)
        dO = tl.load(do + pv, mask=mv, other=0.0).to(tl.float32)
        d_bonus = tl.sum(dO * vv, axis=0)  # scalar dO_t . v_t
        b = tl.sum(rr * uu * kk, axis=0)  # scalar r_t . (u * k_t)
        dkk = tl.sum(D * vv[None, :], axis=1) + d_bonus * uu * rr
        dvv = tl.sum(D * kk[:, None], axis=0) + b * dO
        tl.store(dk + pk, dkk, mask=mk)
        tl.store(dv + pv, dvv, mask=mv)
        D = D * tl.exp(ww)[:, None] + rr[:, None] * dO[None, :]
    if HAS_H0:
        tl.store(dh0 + i_bh * K * V + pkv, D, mask=mkv)


def _bk(K: int) -> int:
    return max(16, triton.next_power_of_2(K))


class _RecurrentWKV6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, k, v, w, u, h0):  # type: ignore[override]
        r, k, v, w, u = (x.contiguous() for x in (r, k, v, w, u))
        h0c = h0.float().contiguous() if h0 is not None else None
        B, T, H, K, V = dims(r, v)
        BV = min(64, max(16, triton.next_power_of_2(V)))
        o = new_output((B, T, H, V), dtype=v.dtype, device=v.device)
        ht = new_output((B, H, K, V), dtype=torch.float32, device=v.device)
        _rec_fwd_kernel[(B * H, triton.cdiv(V, BV))](
            r, k, v, w, u, h0c if h0c is not None else ht, o, ht, T,
            H=H, K=K, V=V, BK=_bk(K), BV=BV, HAS_H0=h0c is not None, WMIN=W_MIN,
        )
        ctx.save_for_backward(r, k, v, w, u, h0c, ht)
        ctx.h0_dtype = h0.dtype if h0 is not None else None
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):  # type: ignore[override]
        r, k, v, w, u, h0, ht = ctx.saved_tensors
        B, T, H, K, V = dims(r, v)
        do = do.contiguous()
        dht = dht.float().contiguous() if dht is not None else None
        dr = new_output((B, T, H, K), dtype=torch.float32, device=r.device)
        dk = new_output((B, T, H, K), dtype=torch.float32, device=r.device)
        dv = new_output((B, T, H, V), dtype=torch.float32, device=r.device)
        dh0 = new_output((B, H, K, V), dtype=torch.float32, device=r.device) if h0 is not None else None
        _rec_bwd_kernel[(B * H,)](
            r, k, v, w, u, h0 if h0 is not None else ht, do, dht if dht is not None else ht,
            dr, dk, dv, dh0 if dh0 is not None else ht, T,
            H=H, K=K, V=V, BK=_bk(K), BV=max(16, triton.next_power_of_2(V)),
            HAS_H0=h0 is not None, HAS_DHT=dht is not None, WMIN=W_MIN,
        )
        dw, du, dr, dk = decay_and_bonus_grads(r, k, v, w, u, do, dr, dk, ht, dht, W_MIN)
        return (dr.to(r.dtype), dk.to(k.dtype), dv.to(v.dtype), dw.to(w.dtype), du.to(u.dtype),
                dh0.to(ctx.h0_dtype) if dh0 is not None else None)


@torch.compiler.disable
def wkv6_fused_recurrent(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused recurrent Triton WKV-6 (checked by ``gf_kernels.wkv6.wkv6``). Best for T <= ~64."""
    require_tokens(r, "recurrent")
    o, ht = _RecurrentWKV6.apply(r, k, v, w, u, initial_state)
    return o, (ht if output_final_state else None)
