"""Finch-C2 time mix (spec §3; reference ``tmix/tmix_x060c2.py``): layers 0 .. g-1 of GoldFinch.

ddlerp over (r, k, v, w, v2), k scaled by (1 - w), bonus u = 0 replaced by a second value v2 that
re-uses W_v plus a rank-64 LoRA, full-width LayerNorm ``ln_x``, no gate. ``use_one_minus_w`` /
``use_v2`` switch the two C2 changes off (Table 4 ablations; with ``use_v2=False`` the bonus is
``time_faaaa`` and v2 is not computed). The parameters and steps shared with stock Finch live in
wkv_mix.py; the rest are allocated here. Initialised in init.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import lora
from gf_train.model.wkv_mix import DECAY_RANK, MIX_RANK, WKV6TimeMix

__all__ = ["FinchC2TimeMix", "MIX_RANK", "DECAY_RANK"]


class FinchC2TimeMix(WKV6TimeMix):
    kind = "finch_c2"
    mix_slots = ("r", "k", "v", "w", "v2")

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__(cfg, layer_id)
        C = A = cfg.n_embd
        self.use_one_minus_w = cfg.use_one_minus_w
        self.use_v2 = cfg.use_v2
        self.time_value2_w1 = nn.Parameter(torch.empty(C, DECAY_RANK))
        self.time_value2_w2 = nn.Parameter(torch.empty(DECAY_RANK, A))
        self.time_faaaa = nn.Parameter(torch.empty(self.n_head, self.head_size))  # unused when use_v2
        self.receptance = nn.Linear(C, A, bias=False)
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_x = nn.LayerNorm(A)

    def forward(
        self, x: Tensor, shift: Tensor | None, wkv: Tensor | None, want_state: bool, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: [B, T, C] (= ln1(h), padding rows already filled, see ``fill_padded``); shift [B, C];
        wkv [B, H, K, V] fp32; mask [B, T] bool or None -> (out [B, T, C], shift', wkv')."""
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        dx, m = self.ddlerp(x, shift)
        xr, xk, xv, xw, xv2 = self.mixed_all(x, dx, m)  # mix_slots order
        r = self.receptance(xr)  # [B, T, A]
        k = self.key(xk)
        v2 = None
        if self.use_v2 and T == 1:  # decode: one read of W_v for both values ([2B, 1, C] rows)
            v, v2 = self.value(torch.cat([xv, xv2])).split(B)
        else:
            v = self.value(xv)
        logw = self.log_decay(xw)  # log of w = exp(-exp(ww)), fp32
        if self.use_one_minus_w:
            k = (k.float() * -torch.expm1(logw)).to(r.dtype)  # k' = k (1 - w), in fp32 (§13.9)
        if self.use_v2:
            u = torch.zeros(H, N, dtype=r.dtype, device=r.device)
        else:
            u = self.time_faaaa.to(r.dtype)
        y, new_wkv = self.run_wkv(r, k, v, logw, u, wkv, want_state, mask)
        y = y.reshape(B, T, C)
        if self.use_v2:
            if v2 is None:
                v2 = self.value(xv2)
            y = y + v2 + lora(xv2, self.time_value2_w1, self.time_value2_w2)
        out = self.output(self.ln_x(y))
        return out, (x[:, -1].clone() if want_state else None), new_wkv
