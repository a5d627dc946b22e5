"""GOLD attention time mix (spec §6; reference ``tmix/tmix_gold.py``): layers g .. L-1 of GoldFinch.

Queries come from the residual stream (token-shifted ddlerp, W_q, LN_q); keys from the shared
decompressed key stream kc (zero-padded shift, per-layer mix, rank-R LoRA, LN_k); values only from
rms_norm(x_orig) (zero-padded shift, mix, LoRA, LN_v). No positional encoding unless ``cfg.rope``
(the RoPE ablation, §6.1). Attention is causal and bottom-right aligned: the T queries are the last T
of the N visible positions (training: T == N; pre-fill window / decode: T < N).
"""

from __future__ import annotations

import torch
from gf_kernels import causal_attention
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import apply_rope, ddlerp_offsets, lora, rms_norm, rope_angles, token_shift, zero_shift

MIX_RANK = 32


def gold_lora_rank(n_embd: int) -> int:
    """R = max(floor(C/16), 64) (§0)."""
    return max(n_embd // 16, 64)


class GoldTimeMix(nn.Module):
    kind = "gold"

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = A = cfg.n_embd
        R = gold_lora_rank(C)
        self.layer_id = layer_id
        self.n_layer = cfg.n_layer
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.rope, self.rope_base, self.rope_rescale = cfg.rope, cfg.rope_base, cfg.rope_rescale
        self.backend = cfg.attn_backend

        def vec(n: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(1, 1, n))

        self.time_maa_x, self.time_maa_q, self.time_maa_v_cache = vec(C), vec(C), vec(C)
        self.time_maa_k, self.time_maa_v = vec(C), vec(C)
        self.time_maa_q_w1 = nn.Parameter(torch.empty(C, MIX_RANK))
        self.time_maa_q_w2 = nn.Parameter(torch.empty(MIX_RANK, C))
        self.time_maa_kv_w1 = nn.Parameter(torch.empty(C, MIX_RANK * 2))
        self.time_maa_kv_w2 = nn.Parameter(torch.empty(2, MIX_RANK, C))
        self.time_key_w1 = nn.Parameter(torch.empty(C, R))
        self.time_key_w2 = nn.Parameter(torch.empty(R, A))
        self.time_value_w1 = nn.Parameter(torch.empty(C, R))
        self.time_value_w2 = nn.Parameter(torch.empty(R, A))
        self.query = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_q = nn.LayerNorm(A)
        self.ln_k = nn.LayerNorm(A)
        self.ln_v = nn.LayerNorm(A)
        self.ln_x = nn.LayerNorm(A)

    def keys_values(self, kc: Tensor, x_orig: Tensor) -> tuple[Tensor, Tensor]:
        """Per-layer keys and values over all N visible positions (§6 steps 2-5, 7).

        kc: [B, N, A] decompressed key stream; x_orig: [B, N, C] = ln0(emb) -> k, v [B, N, A].
        """
        xo = rms_norm(x_orig)
        dxo = zero_shift(xo) - xo
        mk, mv = ddlerp_offsets(xo, dxo, self.time_maa_v_cache, self.time_maa_kv_w1, self.time_maa_kv_w2)
        kbar = kc + (zero_shift(kc) - kc) * (self.time_maa_k + mk)
        k = self.ln_k(kbar + lora(kbar, self.time_key_w1, self.time_key_w2))
        vbar = xo + dxo * (self.time_maa_v + mv)
        v = self.ln_v(vbar + lora(vbar, self.time_value_w1, self.time_value_w2))
        return k, v

    def forward(
        self, x: Tensor, kc: Tensor, x_orig: Tensor, shift: Tensor | None, want_state: bool
    ) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, C] (= ln1(h), the last T of N positions); kc [B, N, A]; x_orig [B, N, C].

        Returns (out [B, T, C], new query-side shift state [B, C] or None).
        """
        B, T, C = x.shape
        N = kc.shape[1]
        H, D = self.n_head, self.head_size
        if x_orig.shape[1] != N or N < T:
            raise ValueError(f"GOLD: kc has {N} positions, x_orig {x_orig.shape[1]}, queries {T}")
        dx = token_shift(x, shift) - x
        mq = lora(x + dx * self.time_maa_x, self.time_maa_q_w1, self.time_maa_q_w2)
        xq = x + dx * (self.time_maa_q + mq)
        q = self.ln_q(self.query(xq)).view(B, T, H, D)
        k, v = self.keys_values(kc, x_orig)
        k, v = k.view(B, N, H, D), v.view(B, N, H, D)
        if self.rope:
            cos, sin = rope_angles(torch.arange(N, device=x.device), D, self.rope_base, self.rope_rescale)
            k = apply_rope(k, cos, sin)
            q = apply_rope(q, cos[N - T:], sin[N - T:])
        y = causal_attention(q, k, v, backend=self.backend)  # [B, T, H, D], scale 1/sqrt(D)
        out = self.output(self.ln_x(y.reshape(B, T, C)))
        return out, (x[:, -1].clone() if want_state else None)
