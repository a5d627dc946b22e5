"""What the two RWKV-6 time mixes share: stock Finch (finch.py) and Finch-C2 (finch_c2.py).

Owns: the common parameters (ddlerp μ vectors ``time_maa_*`` and their LoRA ``time_maa_w1/w2``, the
decay ``time_decay`` and its LoRA ``time_decay_w1/w2``), the token-shifted ddlerp inputs (§2.2), the
log-decay (§3) and the call into the WKV-6 kernel. Parameter names, shapes and registration order are
those of the RWKV-LM x060 checkpoints (state-dict keys and the init RNG order depend on them); the
subclasses register the rest after ``super().__init__``. Initialisation lives in init.py.
"""

from __future__ import annotations

import torch
from gf_kernels import wkv6
from gf_kernels.wkv6 import resolve_backend
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import ddlerp_offsets, lora, token_shift

MIX_RANK = 32
DECAY_RANK = 64


def mix_vector(n: int) -> nn.Parameter:
    """An uninitialised [1, 1, n] per-channel parameter (μ or decay vector)."""
    return nn.Parameter(torch.empty(1, 1, n))


class WKV6TimeMix(nn.Module):
    """Base of the RWKV-6 time mixes: subclasses set ``kind`` and ``mix_slots`` (the ddlerp slots after
    ``x``, in checkpoint order; one ``time_maa_<slot>`` each) and add their own parameters and forward."""

    kind: str
    mix_slots: tuple[str, ...]

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = A = cfg.n_embd
        self.layer_id = layer_id
        self.n_layer = cfg.n_layer
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.backend = cfg.wkv_backend
        self.time_maa_x = mix_vector(C)
        for slot in self.mix_slots:
            self.register_parameter(f"time_maa_{slot}", mix_vector(C))
        n_mix = len(self.mix_slots)
        self.time_maa_w1 = nn.Parameter(torch.empty(C, MIX_RANK * n_mix))
        self.time_maa_w2 = nn.Parameter(torch.empty(n_mix, MIX_RANK, C))
        self.time_decay = mix_vector(A)
        self.time_decay_w1 = nn.Parameter(torch.empty(C, DECAY_RANK))
        self.time_decay_w2 = nn.Parameter(torch.empty(DECAY_RANK, A))

    def ddlerp(self, x: Tensor, shift: Tensor | None) -> tuple[Tensor, Tensor]:
        """x [B, T, C], shift [B, C] or None -> (dx = x_{t-1} - x_t, offsets m [slots, B, T, C])."""
        dx = token_shift(x, shift) - x
        return dx, ddlerp_offsets(x, dx, self.time_maa_x, self.time_maa_w1, self.time_maa_w2)

    def mixed_all(self, x: Tensor, dx: Tensor, m: Tensor) -> Tensor:
        """Every slot's ddlerp input x + dx * (μ_slot + m_slot) (§2.2), [slots, B, T, C] in ``mix_slots``
        order: three ops for all slots, not three per slot (a decode step pays per op)."""
        mu = torch.stack([self.get_parameter(f"time_maa_{s}") for s in self.mix_slots])  # [slots, 1, 1, C]
        return x + dx * (mu + m)

    def log_decay(self, xw: Tensor) -> Tensor:
        """log w = -exp(time_decay + lora(xw)) [B, T, A] in fp32 (w = exp(-exp(·)) itself is never formed)."""
        ww = self.time_decay + lora(xw, self.time_decay_w1, self.time_decay_w2)
        return -torch.exp(ww.float())

    def run_wkv(
        self, r: Tensor, k: Tensor, v: Tensor, logw: Tensor, u: Tensor, wkv: Tensor | None, want_state: bool,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """WKV-6 over r, k, v [B, T, A], logw [B, T, A] (fp32), u [H, N] -> (y [B, T, H, N], state').

        mask [B, T] bool (False = padding): a padding position gets k = 0 and decay 1 (log w = 0), so
        it leaves the state exactly as it was (its own output is meaningless)."""
        B, T, _ = r.shape
        if mask is not None:
            m = mask.unsqueeze(-1)
            k = k * m.to(k.dtype)
            logw = logw * m.to(logw.dtype)
        H, N = self.n_head, self.head_size
        return wkv6(
            r.view(B, T, H, N), k.view(B, T, H, N), v.view(B, T, H, N), logw.to(r.dtype).view(B, T, H, N), u,
            initial_state=wkv, output_final_state=want_state,
            backend=resolve_backend(self.backend, r.device, tokens=T),  # T == 1 on CUDA: recurrent
        )
