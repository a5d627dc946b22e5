"""WKV-6 chunked in plain PyTorch: the CPU training path (any device), gradients by autograd.

The sequence is cut into chunks of C tokens (default 64) and each chunk into sub-chunks of c
tokens (default 16). All decays are handled in log space in fp32 with every exponent <= 0:

* inter-chunk: the K x V state at each chunk start is carried by a short loop over chunks;
  a token sees it through r_t * exp(ge_t) (ge = exclusive in-chunk cumsum of w, <= 0) and the
  chunk adds k_s * exp(gL - g_s) (gL = chunk total, g_s inclusive cumsum, gL <= g_s).
* intra-chunk, off-diagonal sub-blocks (query sub-chunk a > key sub-chunk b): matmuls of
  r_t * exp(ge_t - z_a) and k_s * exp(z_a - g_s), z_a = ge at the first token of sub-chunk a
  (the GLA "secondary chunking" normalisation; both exponents <= 0).
* intra-chunk, diagonal sub-blocks: exact pairwise factors exp(ge_t - g_s) for s < t, element-wise
  over K, plus the u bonus on t == s.

The log-decay is clamped at ``W_MIN`` (exp(-40) = 4e-18 is already "forget everything" in fp32);
this bounds the in-chunk cumsums so that their differences stay accurate (see README.md).
"""

from __future__ import annotations

import torch

W_MIN = -40.0  # log-decay floor shared by all fast paths (see module docstring)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _intra(rf: torch.Tensor, kf: torch.Tensor, vf: torch.Tensor, g: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
    """Strictly causal in-chunk part of o, sum_{s<t} (r_t . k_s exp(ge_t - g_s)) v_s, all [B, H, N, C, *].

    Level by level (c = 1, 2, 4, ... C/2) every block of 2c tokens is split into halves; the second
    half attends the first through one c x c matrix built from r_t exp(ge_t - z) and k_s exp(z - g_s),
    z = g at the last token of the first half, so both exponents are <= 0. Every (t, s) pair with s < t
    is covered exactly once (by the level where t and s first fall into different halves).
    """
    B, H, N, C, K = rf.shape
    V = vf.shape[-1]
    out = torch.zeros(B, H, N, C, V, dtype=rf.dtype, device=rf.device)
    c = 1
    while c < C:
        nb = C // (2 * c)

        def halves(x: torch.Tensor, _nb: int = nb, _c: int = c) -> tuple[torch.Tensor, torch.Tensor]:
            x = x.reshape(B, H, N, _nb, 2, _c, x.shape[-1])
            return x[..., 0, :, :], x[..., 1, :, :]  # [B, H, N, nb, c, *] each

        (_, r1), (k0, _), (v0, _) = halves(rf), halves(kf), halves(vf)
        if c == 1:  # ge_1 == g_0: no decay between neighbours
            X = (r1 * k0).sum(-1, keepdim=True)  # [B, H, N, nb, 1, 1]
        else:
            (g0, _), (_, ge1) = halves(g), halves(ge)
            z = g0[..., -1:, :]  # [B, H, N, nb, 1, K]
            r_til = r1 * torch.exp(ge1 - z)
            k_til = k0 * torch.exp(z - g0)
            if c >= 8:
                X = r_til @ k_til.transpose(-1, -2)  # [B, H, N, nb, c, c]
            else:
                X = (r_til.unsqueeze(-2) * k_til.unsqueeze(-3)).sum(-1)
        contrib = X @ v0  # [B, H, N, nb, c, V]
        out = out + torch.stack((torch.zeros_like(contrib), contrib), dim=-3).reshape(B, H, N, C, V)
        c *= 2
    return out


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
    B, T, H, K = r.shape
    V = v.shape[-1]
    dev = r.device
    if initial_state is None:
        S = torch.zeros(B, H, K, V, dtype=torch.float32, device=dev)
    else:
        S = initial_state.float()
    if T == 0:
        return v.new_zeros(B, 0, H, V), (S if output_final_state else None)
    C = min(chunk_size, 1 << max(T - 1, 0).bit_length())  # short inputs: the next power of two >= T
    Tp = _round_up(T, C)
    N = Tp // C

    def prep(x: torch.Tensor) -> torch.Tensor:  # [B, T, H, D] -> [B, H, N, C, D] fp32, zero-padded
        x = x.float().transpose(1, 2)
        if Tp != T:
            x = torch.nn.functional.pad(x, (0, 0, 0, Tp - T))
        return x.reshape(B, H, N, C, x.shape[-1])

    rf, kf, vf = prep(r), prep(k), prep(v)
    wf = prep(w.float().clamp(min=W_MIN))  # padded tokens: w = 0 (no decay), k = 0 (no input)
    uf = u.float()  # [H, K]

    g = wf.cumsum(-2)  # [B, H, N, C, K] inclusive
    ge = g - wf  # exclusive
    gL = g[..., -1:, :]  # [B, H, N, 1, K] chunk total

    # ---- inter-chunk: states at chunk starts, then r_t exp(ge_t) @ S_n
    q_hat = rf * torch.exp(ge)  # [B, H, N, C, K]
    k_hat = kf * torch.exp(gL - g)  # [B, H, N, C, K]
    kv = k_hat.transpose(-1, -2) @ vf  # [B, H, N, K, V]
    decay = torch.exp(gL).transpose(-1, -2)  # [B, H, N, K, 1]
    starts = []
    for n in range(N):
        starts.append(S)
        S = decay[:, :, n] * S + kv[:, :, n]
    o = q_hat @ torch.stack(starts, dim=2)  # [B, H, N, C, V]

    # ---- intra-chunk: binary tree of off-diagonal blocks, plus the u bonus on the diagonal
    o = o + _intra(rf, kf, vf, g, ge)
    o = o + (rf * kf * uf[None, :, None, None, :]).sum(-1, keepdim=True) * vf  # bonus, [B, H, N, C, V]

    o = o.reshape(B, H, Tp, V)[:, :, :T].transpose(1, 2).to(v.dtype).contiguous()  # [B, T, H, V]
    return o, (S if output_final_state else None)
