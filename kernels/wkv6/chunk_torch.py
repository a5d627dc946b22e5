"""WKV-6 chunked in plain PyTorch: the CPU training path (any device), with a hand-written backward.

The sequence is cut into chunks of C tokens (default 64). All decays are handled in log space in
fp32 with every exponent <= 0 (see README.md for the maths):

* inter-chunk: the K x V state at each chunk start is carried by a short loop over chunks;
  a token sees it through r_t * exp(ge_t) (ge = exclusive in-chunk cumsum of w, <= 0) and the
  chunk adds k_s * exp(gL - g_s) (gL = chunk total, g_s inclusive cumsum, gL <= g_s).
* intra-chunk: a binary tree of off-diagonal blocks. At level c = 1, 2, ... C/2 the second half of
  every 2c-token block attends the first half through r_t exp(ge_t - z) and k_s exp(z - g_s),
  z = g at the last token of the first half (secondary chunking, applied recursively).
* the u bonus on the diagonal.

The backward pass recomputes the cheap pieces, produces dr, dk, dv, dh0 with the same blocks, and
takes dw, du from the exponent-free identity in ``grad.py`` (no gradient flows through any exp).
The log-decay is clamped at ``W_MIN`` (exp(-40) = 4e-18 is already "forget everything" in fp32);
this bounds the in-chunk cumsums so that their differences stay accurate (see README.md).
"""

from __future__ import annotations

import torch

from .._alloc import new_output
from ._contract import W_MIN, dims
from .grad import decay_and_bonus_grads


class _Prepped:
    """fp32, zero-padded, chunked views [B, H, N, C, *] of the inputs plus the cumulative decays."""

    def __init__(self, r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, C: int) -> None:
        B, T, H, _ = r.shape
        self.B, self.T, self.H, self.C = B, T, H, C
        self.Tp = (T + C - 1) // C * C
        self.N = self.Tp // C
        self.r, self.k, self.v = self.chunk(r), self.chunk(k), self.chunk(v)
        wf = self.chunk(w.float().clamp(min=W_MIN))  # padded tokens: w = 0 (no decay), k = 0 (no input)
        self.g = wf.cumsum(-2)  # [B, H, N, C, K] inclusive
        self.ge = self.g - wf  # exclusive
        self.gL = self.g[..., -1:, :]  # [B, H, N, 1, K]

    def chunk(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, H, D] -> [B, H, N, C, D] fp32 contiguous
        x = x.float().transpose(1, 2)
        if self.Tp != self.T:
            x = torch.nn.functional.pad(x, (0, 0, 0, self.Tp - self.T))
        return x.reshape(self.B, self.H, self.N, self.C, x.shape[-1]).contiguous()

    def unchunk(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, N, C, D] -> [B, T, H, D]
        return x.reshape(self.B, self.H, self.Tp, x.shape[-1])[:, :, : self.T].transpose(1, 2).contiguous()

    def halves(self, x: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of the first / second half of every 2c-token block: [B, H, N, C/2c, c, D] each."""
        x = x.view(self.B, self.H, self.N, self.C // (2 * c), 2, c, x.shape[-1])
        return x[..., 0, :, :], x[..., 1, :, :]

    def level(self, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tree level c >= 2: decay factors exp(ge_t - z) (second halves), exp(z - g_s) (first halves),
        z = g at the last token of the first half (both exponents <= 0), and the c x c block X."""
        (g0, _), (_, ge1) = self.halves(self.g, c), self.halves(self.ge, c)
        z = g0[..., -1:, :]
        er, ek = torch.exp(ge1 - z), torch.exp(z - g0)  # [B, H, N, C/2c, c, K]
        _, r1 = self.halves(self.r, c)
        k0, _ = self.halves(self.k, c)
        return er, ek, (r1 * er) @ (k0 * ek).transpose(-1, -2)


def _forward(
    p: _Prepped, u: torch.Tensor, S: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns o [B, H, N, C, V], the chunk-start states [B, H, N, K, V] and the final state."""
    q_hat = p.r * torch.exp(p.ge)  # [B, H, N, C, K]
    kv = (p.k * torch.exp(p.gL - p.g)).transpose(-1, -2) @ p.v  # [B, H, N, K, V]
    decay = torch.exp(p.gL).transpose(-1, -2)  # [B, H, N, K, 1]
    starts = new_output(kv.shape, dtype=kv.dtype, device=kv.device)  # every slice written below
    for n in range(p.N):
        starts[:, :, n] = S
        S = decay[:, :, n] * S + kv[:, :, n]
    o = q_hat @ starts  # inter-chunk
    o += (p.r * p.k * u[None, :, None, None, :]).sum(-1, keepdim=True) * p.v  # bonus
    c = 1
    while c < p.C:  # intra-chunk tree
        _, o1 = p.halves(o, c)
        v0, _ = p.halves(p.v, c)
        if c == 1:  # neighbours: ge_1 == g_0, no decay
            (_, r1), (k0, _) = p.halves(p.r, 1), p.halves(p.k, 1)
            o1 += (r1 * k0).sum(-1, keepdim=True) * v0
        else:
            o1 += p.level(c)[2] @ v0
        c *= 2
    return o, starts, S


def _backward(
    p: _Prepped, u: torch.Tensor, starts: torch.Tensor, dO: torch.Tensor, dht: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns dr, dk, dv [B, H, N, C, *] (full gradients, bonus included) and dh0 [B, H, K, V]."""
    eg = torch.exp(p.ge)
    ek = torch.exp(p.gL - p.g)
    q_hat, k_hat = p.r * eg, p.k * ek
    # state gradients: dS_after[n] = dL/d(state after chunk n)
    qdo = q_hat.transpose(-1, -2) @ dO  # [B, H, N, K, V]
    decay = torch.exp(p.gL).transpose(-1, -2)  # [B, H, N, K, 1]
    dS = torch.zeros_like(starts[:, :, 0]) if dht is None else dht.float().clone()
    dS_after = new_output(starts.shape, dtype=starts.dtype, device=starts.device)
    for n in reversed(range(p.N)):
        dS_after[:, :, n] = dS
        dS = decay[:, :, n] * dS + qdo[:, :, n]
    dr = (dO @ starts.transpose(-1, -2)) * eg
    dk = (p.v @ dS_after.transpose(-1, -2)) * ek
    dv = k_hat @ dS_after
    # bonus
    uu = u[None, :, None, None, :]
    dv += (p.r * p.k * uu).sum(-1, keepdim=True) * dO
    d_bonus = (dO * p.v).sum(-1, keepdim=True)
    dr += d_bonus * uu * p.k
    dk += d_bonus * uu * p.r
    # intra-chunk tree
    c = 1
    while c < p.C:
        _, dO1 = p.halves(dO, c)
        v0, _ = p.halves(p.v, c)
        _, dr1 = p.halves(dr, c)
        dk0, _ = p.halves(dk, c)
        dv0, _ = p.halves(dv, c)
        (_, r1), (k0, _) = p.halves(p.r, c), p.halves(p.k, c)
        if c == 1:
            X = (r1 * k0).sum(-1, keepdim=True)  # [..., 1, 1]
            dX = (dO1 * v0).sum(-1, keepdim=True)
            dv0 += X * dO1
            dr1 += dX * k0
            dk0 += dX * r1
        else:
            er, ek0, X = p.level(c)
            dX = dO1 @ v0.transpose(-1, -2)  # [..., c, c]
            dv0 += X.transpose(-1, -2) @ dO1
            dr1 += (dX @ (k0 * ek0)) * er
            dk0 += (dX.transpose(-1, -2) @ (r1 * er)) * ek0
        c *= 2
    return dr, dk, dv, dS


class _TorchChunkWKV6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, k, v, w, u, h0, chunk_size):  # type: ignore[override]
        B, T, H, K, V = dims(r, v)
        C = min(chunk_size, 1 << max(T - 1, 0).bit_length())  # short inputs: next power of two >= T
        p = _Prepped(r, k, v, w, C)
        S0 = h0.float() if h0 is not None else torch.zeros(B, H, K, V, dtype=torch.float32, device=r.device)
        o, starts, ht = _forward(p, u.float(), S0)
        ctx.save_for_backward(r, k, v, w, u, starts, ht)
        ctx.C = C
        ctx.h0_dtype = h0.dtype if h0 is not None else None
        o = p.unchunk(o)
        # no `.to()` when the dtype already matches: under torch 2.11's dynamo a forward output that is
        # `.to()`'s alias of an intermediate gets an all-zero incoming gradient (fixed in later torch)
        return (o if o.dtype == v.dtype else o.to(v.dtype)), ht

    @staticmethod
    def backward(ctx, do, dht):  # type: ignore[override]
        r, k, v, w, u, starts, ht = ctx.saved_tensors
        p = _Prepped(r, k, v, w, ctx.C)
        dr, dk, dv, dh0 = _backward(p, u.float(), starts, p.chunk(do), dht)
        dr, dk, dv = p.unchunk(dr), p.unchunk(dk), p.unchunk(dv)
        dw, du, dr, dk = decay_and_bonus_grads(r, k, v, w, u, do, dr, dk, ht, dht, W_MIN)
        return (dr.to(r.dtype), dk.to(k.dtype), dv.to(v.dtype), dw.to(w.dtype), du.to(u.dtype),
                dh0.to(ctx.h0_dtype) if ctx.h0_dtype is not None else None, None)


def wkv6_chunk_torch(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked WKV-6. r, k, w: [B, T, H, K]; v: [B, T, H, V]; u: [H, K]; state [B, H, K, V] fp32."""
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size={chunk_size} must be a power of two.")
    B, T, H, K, V = dims(r, v)
    if T == 0:
        S = initial_state.float() if initial_state is not None else r.new_zeros(B, H, K, V).float()
        return v.new_zeros(B, 0, H, V), (S if output_final_state else None)
    o, ht = _TorchChunkWKV6.apply(r, k, v, w, u, initial_state, chunk_size)
    return o, (ht if output_final_state else None)
