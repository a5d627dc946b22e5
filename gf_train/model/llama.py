"""The paper's "Llama-like" baseline sublayers (spec §9, §13.17): bias-free MHA (no GQA, no q/k norm)
with interleaved RoPE (base ``rope_base``, always on) and a SwiGLU FFN of width floor(8C/3/32)·32.

The block skeleton (LayerNorms with bias, ln0, untied head) is shared with the RWKV models in
goldfinch.py. Multi-token chunks appended to a non-empty K/V cache use the bottom-right aligned
causal mask of ``gf_kernels.causal_attention`` (§10.3; the reference applies no mask there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gf_kernels import causal_attention
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import apply_rope, rope_angles


class LlamaAttention(nn.Module):
    kind = "llama"

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = A = cfg.n_embd
        self.layer_id = layer_id
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.rope_base, self.rope_rescale = cfg.rope_base, cfg.rope_rescale
        self.backend = cfg.attn_backend
        self.wq = nn.Linear(C, A, bias=False)
        self.wk = nn.Linear(C, A, bias=False)
        self.wv = nn.Linear(C, A, bias=False)
        self.wo = nn.Linear(A, C, bias=False)

    def forward(
        self, x: Tensor, k_cache: Tensor | None, v_cache: Tensor | None, want_state: bool,
        key_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: [B, T, C]; k/v_cache [B, N0, H, D] (post-RoPE keys); key_mask [B, N0 + T] bool (False =
        padding) or None -> (out [B, T, C], k [B, N, H, D], v).

        Positions count padding too: RoPE only sees differences of positions, and left padding shifts
        a row's positions by a constant."""
        B, T, C = x.shape
        H, D = self.n_head, self.head_size
        n0 = 0 if k_cache is None else k_cache.shape[1]
        q = self.wq(x).view(B, T, H, D)
        k = self.wk(x).view(B, T, H, D)
        v = self.wv(x).view(B, T, H, D)
        cos, sin = rope_angles(torch.arange(n0, n0 + T, device=x.device), D, self.rope_base, self.rope_rescale)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if k_cache is not None and v_cache is not None:
            k = torch.cat([k_cache.to(k.dtype), k], dim=1)
            v = torch.cat([v_cache.to(v.dtype), v], dim=1)
        y = causal_attention(q, k, v, backend=self.backend, key_mask=key_mask)  # [B, T, H, D]
        out = self.wo(y.reshape(B, T, C))
        return out, (k if want_state else None), (v if want_state else None)


class LlamaFFN(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = cfg.n_embd
        F_l = cfg.ffn_dim  # floor(8C/3/32)*32 unless model.dim_ffn is set explicitly (README)
        self.layer_id = layer_id
        self.w1 = nn.Linear(C, F_l, bias=False)
        self.w2 = nn.Linear(F_l, C, bias=False)
        self.w3 = nn.Linear(C, F_l, bias=False)

    def forward(self, x: Tensor, shift: Tensor | None, want_state: bool) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, C] -> (out [B, T, C], None): no token shift, no state."""
        return self.w2(F.silu(self.w1(x)) * self.w3(x)), None
