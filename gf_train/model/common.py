"""Small functional building blocks shared by every time/channel mix (spec §1, §2, §6.1).

Owns: token shift (§2.1), the weightless RMS norm (§1), LoRA maps (§2.3), the data-dependent lerp
mixing (§2.2) and RoPE (§6.1). No parameters live here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gf_train.config.model import ModelConfig


def token_shift(x: Tensor, state: Tensor | None) -> Tensor:
    """Previous-token inputs: x [B, T, C], state [B, C] (x_{-1}; None = zeros) -> [B, T, C]."""
    if state is None:
        prev = x.new_zeros(x.shape[0], 1, x.shape[2])
    else:
        prev = state.to(x.dtype).unsqueeze(1)
    if x.shape[1] == 1:  # decode: the previous row is the state itself (no copy through cat)
        return prev
    return torch.cat([prev, x[:, :-1]], dim=1)


def fill_padded(x: Tensor, state: Tensor | None, mask: Tensor | None) -> Tensor:
    """Replace every padding row of x by the last real row before it (or ``state``, or zeros).

    x [B, T, C]; state [B, C] (the last real row of earlier calls, None = zeros); mask [B, T] bool
    (False = padding) or None (nothing to do). After this, a token shift skips the padding: the
    first real token after padding sees the same previous row as without it, and the new shift state
    x[:, -1] is the last real row. Real rows are unchanged.
    """
    if mask is None:
        return x
    B, T, C = x.shape
    prev = x.new_zeros(B, 1, C) if state is None else state.to(x.dtype).unsqueeze(1)
    rows = torch.cat([prev, x], dim=1)  # row 0 = state, row t + 1 = x_t
    src = torch.arange(1, T + 1, device=x.device) * mask.to(torch.long)  # 0 for padding
    src = src.cummax(dim=1).values  # [B, T]: index of the last real row at or before t
    return rows.gather(1, src.unsqueeze(-1).expand(B, T, C))


def zero_shift(x: Tensor) -> Tensor:
    """Shift along T with a zero row before position 0 (GOLD's key/value path, §6 steps 2 and 4)."""
    return token_shift(x, None)


def rms_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Weightless RMS norm over the last axis; eps is added to the RMS, not inside the root (§1)."""
    return x / (x.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)


def lora(x: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """tanh(x P) Q with P [in, rank], Q [rank, out] (§2.3)."""
    return torch.tanh(x @ p) @ q


def ddlerp_offsets(x: Tensor, dx: Tensor, maa_x: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
    """The K data-dependent mix offsets m_i of §2.2.

    x, dx: [B, T, C]; maa_x: [1, 1, C]; w1: [C, K*r]; w2: [K, r, C]. Returns [K, B, T, C] where slot i
    uses columns r*i .. r*i+r-1 of w1 and w2[i].
    """
    B, T, C = x.shape
    n_mix = w2.shape[0]
    z = torch.tanh((x + dx * maa_x) @ w1)  # [B, T, K*r]
    z = z.view(B * T, n_mix, -1).transpose(0, 1)  # [K, B*T, r]
    return torch.bmm(z, w2).view(n_mix, B, T, C)


def rope_angles(positions: Tensor, head_size: int, base: float, rescale: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables [T, head_size/2] (fp32) for absolute positions [T] (§6.1, θ_i = base^(-2i/N)/rescale)."""
    i = torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32)
    freqs = base ** (-i / head_size) / rescale  # [N/2]
    ang = positions.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)  # [T, N/2]
    return ang.cos(), ang.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs (2i, 2i+1) of x [B, T, H, N] (interleaved, GPT-J style) in fp32."""
    B, T, H, N = x.shape
    xf = x.float().view(B, T, H, N // 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]  # [B, T, H, N/2]
    c = cos.view(1, T, 1, N // 2)
    s = sin.view(1, T, 1, N // 2)
    out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    return out.view(B, T, H, N).to(x.dtype)


def layer_kinds(cfg: ModelConfig) -> list[str]:
    """Time-mix type of every block (the layer plan of §1 / §9)."""
    base = {"goldfinch": "finch_c2", "finch_c2": "finch_c2", "finch": "finch", "llama": "llama"}[cfg.arch]
    g = cfg.first_gold_layer
    return [base if i < g else "gold" for i in range(cfg.n_layer)]
