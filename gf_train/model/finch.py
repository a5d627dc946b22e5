"""Stock Finch (RWKV-6 "x060") time mix, the Finch baseline's every layer (spec §3.1, §9).

Differences to Finch-C2: ddlerp slots (w, k, v, r, g), SiLU output gate, bonus u = ``time_faaaa``,
key used as is, per-head GroupNorm ``ln_x`` with eps 1e-5·8² = 6.4e-4. Same parameter names as the
RWKV-LM x060 checkpoints. The parameters and steps shared with Finch-C2 live in wkv_mix.py; initialised
in init.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.wkv_mix import DECAY_RANK, MIX_RANK, WKV6TimeMix

HEAD_SIZE_DIVISOR = 8

__all__ = ["FinchTimeMix", "MIX_RANK", "DECAY_RANK", "HEAD_SIZE_DIVISOR"]


class FinchTimeMix(WKV6TimeMix):
    kind = "finch"
    mix_slots = ("w", "k", "v", "r", "g")

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__(cfg, layer_id)
        C = A = cfg.n_embd
        self.time_faaaa = nn.Parameter(torch.empty(self.n_head, self.head_size))
        self.receptance = nn.Linear(C, A, bias=False)
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        self.gate = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_x = nn.GroupNorm(self.n_head, A, eps=1e-5 * HEAD_SIZE_DIVISOR**2)

    def forward(
        self, x: Tensor, shift: Tensor | None, wkv: Tensor | None, want_state: bool, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: [B, T, C] (= ln1(h), padding rows already filled, see ``fill_padded``); shift [B, C];
        wkv [B, H, K, V] fp32; mask [B, T] bool or None -> (out [B, T, C], shift', wkv')."""
        B, T, C = x.shape
        dx, m = self.ddlerp(x, shift)
        xw, xk, xv, xr, xg = self.mixed_all(x, dx, m)
        r = self.receptance(xr)  # [B, T, A]
        k = self.key(xk)
        v = self.value(xv)
        g = F.silu(self.gate(xg))
        logw = self.log_decay(xw)  # [B, T, A]
        y, new_wkv = self.run_wkv(r, k, v, logw, self.time_faaaa.to(r.dtype), wkv, want_state, mask)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        out = self.output(y * g)
        return out, (x[:, -1].clone() if want_state else None), new_wkv
