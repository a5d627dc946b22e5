"""Finch-C2 time mix (spec §3; reference ``tmix/tmix_x060c2.py``): layers 0 .. g-1 of GoldFinch.

ddlerp over (r, k, v, w, v2), k scaled by (1 - w), bonus u = 0 replaced by a second value v2 that
re-uses W_v plus a rank-64 LoRA, full-width LayerNorm ``ln_x``, no gate. ``use_one_minus_w`` /
``use_v2`` switch the two C2 changes off (Table 4 ablations; with ``use_v2=False`` the bonus is
``time_faaaa`` and v2 is not computed). Parameters are allocated here and initialised in init.py.
"""

from __future__ import annotations

import torch
from gf_kernels import wkv6
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import ddlerp_offsets, lora, token_shift, wkv_backend_for

MIX_RANK = 32
DECAY_RANK = 64


class FinchC2TimeMix(nn.Module):
    kind = "finch_c2"

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = A = cfg.n_embd
        self.layer_id = layer_id
        self.n_layer = cfg.n_layer
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.use_one_minus_w = cfg.use_one_minus_w
        self.use_v2 = cfg.use_v2
        self.backend = cfg.wkv_backend

        def vec(n: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(1, 1, n))

        self.time_maa_x, self.time_maa_r, self.time_maa_k = vec(C), vec(C), vec(C)
        self.time_maa_v, self.time_maa_w, self.time_maa_v2 = vec(C), vec(C), vec(C)
        self.time_maa_w1 = nn.Parameter(torch.empty(C, MIX_RANK * 5))
        self.time_maa_w2 = nn.Parameter(torch.empty(5, MIX_RANK, C))
        self.time_decay = vec(A)
        self.time_decay_w1 = nn.Parameter(torch.empty(C, DECAY_RANK))
        self.time_decay_w2 = nn.Parameter(torch.empty(DECAY_RANK, A))
        self.time_value2_w1 = nn.Parameter(torch.empty(C, DECAY_RANK))
        self.time_value2_w2 = nn.Parameter(torch.empty(DECAY_RANK, A))
        self.time_faaaa = nn.Parameter(torch.empty(self.n_head, self.head_size))  # unused when use_v2
        self.receptance = nn.Linear(C, A, bias=False)
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_x = nn.LayerNorm(A)

    def forward(
        self, x: Tensor, shift: Tensor | None, wkv: Tensor | None, want_state: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: [B, T, C] (= ln1(h)); shift [B, C]; wkv [B, H, K, V] fp32 -> (out [B, T, C], shift', wkv')."""
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        dx = token_shift(x, shift) - x
        mr, mk, mv, mw, mv2 = ddlerp_offsets(x, dx, self.time_maa_x, self.time_maa_w1, self.time_maa_w2)
        xr = x + dx * (self.time_maa_r + mr)
        xk = x + dx * (self.time_maa_k + mk)
        xv = x + dx * (self.time_maa_v + mv)
        xw = x + dx * (self.time_maa_w + mw)
        r = self.receptance(xr)  # [B, T, A]
        k = self.key(xk)
        v = self.value(xv)
        ww = self.time_decay + lora(xw, self.time_decay_w1, self.time_decay_w2)  # [B, T, A]
        logw = -torch.exp(ww.float())  # log of w = exp(-exp(ww)), fp32
        if self.use_one_minus_w:
            k = (k.float() * -torch.expm1(logw)).to(r.dtype)  # k' = k (1 - w), in fp32 (§13.9)
        if self.use_v2:
            u = torch.zeros(H, N, dtype=r.dtype, device=r.device)
        else:
            u = self.time_faaaa.to(r.dtype)
        y, new_wkv = wkv6(
            r.view(B, T, H, N), k.view(B, T, H, N), v.view(B, T, H, N), logw.to(r.dtype).view(B, T, H, N), u,
            initial_state=wkv, output_final_state=want_state,
            backend=wkv_backend_for(self.backend, x.device, T),
        )
        y = y.reshape(B, T, C)
        if self.use_v2:
            xv2 = x + dx * (self.time_maa_v2 + mv2)
            y = y + self.value(xv2) + lora(xv2, self.time_value2_w1, self.time_value2_w2)
        out = self.output(self.ln_x(y))
        return out, (x[:, -1].clone() if want_state else None), new_wkv
