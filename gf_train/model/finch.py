"""Stock Finch (RWKV-6 "x060") time mix, the Finch baseline's every layer (spec §3.1, §9).

Differences to Finch-C2: ddlerp slots (w, k, v, r, g), SiLU output gate, bonus u = ``time_faaaa``,
key used as is, per-head GroupNorm ``ln_x`` with eps 1e-5·8² = 6.4e-4. Same parameter names as the
RWKV-LM x060 checkpoints. Initialised in init.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gf_kernels import wkv6
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import ddlerp_offsets, lora, token_shift, wkv_backend_for

MIX_RANK = 32
DECAY_RANK = 64
HEAD_SIZE_DIVISOR = 8


class FinchTimeMix(nn.Module):
    kind = "finch"

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = A = cfg.n_embd
        self.layer_id = layer_id
        self.n_layer = cfg.n_layer
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.backend = cfg.wkv_backend

        def vec(n: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(1, 1, n))

        self.time_maa_x, self.time_maa_w, self.time_maa_k = vec(C), vec(C), vec(C)
        self.time_maa_v, self.time_maa_r, self.time_maa_g = vec(C), vec(C), vec(C)
        self.time_maa_w1 = nn.Parameter(torch.empty(C, MIX_RANK * 5))
        self.time_maa_w2 = nn.Parameter(torch.empty(5, MIX_RANK, C))
        self.time_decay = vec(A)
        self.time_decay_w1 = nn.Parameter(torch.empty(C, DECAY_RANK))
        self.time_decay_w2 = nn.Parameter(torch.empty(DECAY_RANK, A))
        self.time_faaaa = nn.Parameter(torch.empty(self.n_head, self.head_size))
        self.receptance = nn.Linear(C, A, bias=False)
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        self.gate = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_x = nn.GroupNorm(self.n_head, A, eps=1e-5 * HEAD_SIZE_DIVISOR**2)

    def forward(
        self, x: Tensor, shift: Tensor | None, wkv: Tensor | None, want_state: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: [B, T, C] (= ln1(h)); shift [B, C]; wkv [B, H, K, V] fp32 -> (out [B, T, C], shift', wkv')."""
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        dx = token_shift(x, shift) - x
        mw, mk, mv, mr, mg = ddlerp_offsets(x, dx, self.time_maa_x, self.time_maa_w1, self.time_maa_w2)
        xw = x + dx * (self.time_maa_w + mw)
        xk = x + dx * (self.time_maa_k + mk)
        xv = x + dx * (self.time_maa_v + mv)
        xr = x + dx * (self.time_maa_r + mr)
        xg = x + dx * (self.time_maa_g + mg)
        r = self.receptance(xr)  # [B, T, A]
        k = self.key(xk)
        v = self.value(xv)
        g = F.silu(self.gate(xg))
        ww = self.time_decay + lora(xw, self.time_decay_w1, self.time_decay_w2)  # [B, T, A]
        logw = -torch.exp(ww.float())
        y, new_wkv = wkv6(
            r.view(B, T, H, N), k.view(B, T, H, N), v.view(B, T, H, N), logw.to(r.dtype).view(B, T, H, N),
            self.time_faaaa.to(r.dtype), initial_state=wkv, output_final_state=want_state,
            backend=wkv_backend_for(self.backend, x.device, T),
        )
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        out = self.output(y * g)
        return out, (x[:, -1].clone() if want_state else None), new_wkv
