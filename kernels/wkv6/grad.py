"""Host-side fp32 reductions shared by the Triton backward passes: dw and du from dr and dk.

With G_t = sum_{m<=t} w_m (global cumulative log-decay) the recurrence can be written with
r_t exp(G_{t-1}) and k_s exp(-G_s); differentiating through those two factors and the final
state exp(G_T) gives, for the non-bonus parts dr', dk' of the gradients of r and k::

    dw_m = sum_{t>m} r_t * dr'_t  -  sum_{t>=m} k_t * dk'_t  +  rowsum(dS_T * S_T)

with dr'_t = dr_t - u * k_t * (dO_t . v_t) and dk'_t = dk_t - u * r_t * (dO_t . v_t). The form
needs no exponent at all, so it is exact for any decay; it is evaluated in fp32 from the kernels'
fp32 dr / dk (never from rounded bf16 copies). Elements clamped at the decay floor get dw = 0.
"""

from __future__ import annotations

import torch


def decay_and_bonus_grads(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    do: torch.Tensor,
    dr: torch.Tensor,
    dk: torch.Tensor,
    ht: torch.Tensor,
    dht: torch.Tensor | None,
    w_min: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (dw [B,T,H,K], du [H,K], dr, dk), all fp32. dr, dk: full fp32 gradients [B,T,H,K]."""
    rf, kf, uf = r.float(), k.float(), u.float()
    d_bonus = (do.float() * v.float()).sum(-1, keepdim=True)  # [B, T, H, 1] = dO_t . v_t
    du = (d_bonus * rf * kf).sum((0, 1))  # [H, K]
    a = rf * (dr - uf * kf * d_bonus)  # r_t * dr'_t
    b = kf * (dk - uf * rf * d_bonus)  # k_t * dk'_t
    x = torch.nn.functional.pad(a[:, 1:], (0, 0, 0, 0, 0, 1)) - b  # a_{t+1} - b_t, [B, T, H, K]
    dw = x.flip(1).cumsum(1).flip(1)
    if dht is not None:
        dw = dw + (dht * ht).sum(-1).unsqueeze(1)  # [B, 1, H, K]
    dw = torch.where(w.float() >= w_min, dw, torch.zeros_like(dw))
    return dw, du, dr, dk
