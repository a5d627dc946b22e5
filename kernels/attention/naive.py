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


def attention_naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """fp32 softmax(q k^T * scale + mask) v. q: [B, Tq, H, D]; k, v: [B, Tk, H, D] -> [B, Tq, H, D]."""
    tq, tk, d = q.shape[1], k.shape[1], q.shape[-1]
    s = 1.0 / math.sqrt(d) if scale is None else scale
    qf, kf, vf = (x.float().transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    logits = torch.matmul(qf, kf.transpose(-1, -2)) * s  # [B, H, Tq, Tk]
    logits = logits.masked_fill(~causal_mask(tq, tk, q.device), float("-inf"))
    p = torch.softmax(logits, dim=-1)
    o = torch.matmul(p, vf)  # [B, H, Tq, D]
    return o.transpose(1, 2).to(q.dtype)
