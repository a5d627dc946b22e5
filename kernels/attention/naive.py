"""Causal attention reference: fp32 masked softmax, the oracle for the sdpa and flash paths.

Layout [B, T, H, D]. Queries are aligned to the end of the keys: query i of Tq sits at absolute
position Tk - Tq + i and sees keys 0 .. Tk - Tq + i (bottom-right causal mask), which covers
training (Tq == Tk), decode (Tq == 1, no mask) and chunked prefill against a cached prefix.
"""

from __future__ import annotations

import math

import torch


def causal_mask(tq: int, tk: int, device: torch.device) -> torch.Tensor:
    """Boolean [Tq, Tk] mask, True where query i may attend key j (j <= Tk - Tq + i)."""
    qpos = torch.arange(tq, device=device).unsqueeze(1) + (tk - tq)  # [Tq, 1]
    kpos = torch.arange(tk, device=device).unsqueeze(0)  # [1, Tk]
    return kpos <= qpos


def padded_causal_mask(key_mask: torch.Tensor, tq: int) -> torch.Tensor:
    """[B, 1, Tq, Tk] bool: the causal mask without padding keys (key_mask [B, Tk], False = pad).

    A padding query keeps its own position only, so that no row is empty (empty rows give NaN)."""
    tk = key_mask.shape[1]
    causal = causal_mask(tq, tk, key_mask.device)  # [Tq, Tk]
    own = torch.arange(tk, device=key_mask.device)[tk - tq:].unsqueeze(1) == torch.arange(
        tk, device=key_mask.device).unsqueeze(0)  # [Tq, Tk], the query's own key
    q_real = key_mask[:, tk - tq:].unsqueeze(-1)  # [B, Tq, 1]
    allowed = torch.where(q_real, causal & key_mask.unsqueeze(1), own)  # [B, Tq, Tk]
    return allowed.unsqueeze(1)


def attention_naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """fp32 softmax(q k^T * scale + mask) v. q: [B, Tq, H, D]; k, v: [B, Tk, H, D] -> [B, Tq, H, D].

    mask: [B, 1, Tq, Tk] bool (True = may attend) replacing the causal mask (``padded_causal_mask``)."""
    tq, tk, d = q.shape[1], k.shape[1], q.shape[-1]
    s = 1.0 / math.sqrt(d) if scale is None else scale
    qf, kf, vf = (x.float().transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    logits = torch.matmul(qf, kf.transpose(-1, -2)) * s  # [B, H, Tq, Tk]
    allowed = causal_mask(tq, tk, q.device) if mask is None else mask
    logits = logits.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    o = torch.matmul(p, vf)  # [B, H, Tq, D]
    return o.transpose(1, 2).to(q.dtype)
