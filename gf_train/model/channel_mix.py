"""Finch channel mix (spec §4; reference ``cmix/cmix_x060.py``), used by every Finch, Finch-C2 and GOLD
layer: out = σ(W_r x_r) ⊙ W_v(relu(W_k x_k)²) with static token-shift mixes. Initialised in init.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import token_shift


class ChannelMix(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C, F = cfg.n_embd, cfg.ffn_dim
        self.layer_id = layer_id
        self.n_layer = cfg.n_layer
        self.time_maa_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_r = nn.Parameter(torch.empty(1, 1, C))
        self.key = nn.Linear(C, F, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(F, C, bias=False)

    def forward(self, x: Tensor, shift: Tensor | None, want_state: bool) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, C] (= ln2(h)); shift [B, C] -> (out [B, T, C], new shift)."""
        dx = token_shift(x, shift) - x
        xk = x + dx * self.time_maa_k
        xr = x + dx * self.time_maa_r
        k = torch.relu(self.key(xk)) ** 2  # [B, T, F]
        out = torch.sigmoid(self.receptance(xr)) * self.value(k)
        return out, (x[:, -1].clone() if want_state else None)
