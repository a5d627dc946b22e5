"""WKV-6 reference: the fp32 sequential recurrence, the oracle every fast path is tested against.

Per batch b and head h, with the state S in R^{K x V} (fp32)::

    o_t[j] = sum_i r_t[i] * (S_{t-1}[i, j] + u[i] * k_t[i] * v_t[j])
    S_t[i, j] = exp(w_t[i]) * S_{t-1}[i, j] + k_t[i] * v_t[j]

``w`` is the log-decay (<= 0). No scaling. Gradients come from autograd through the loop, so
this file is deliberately the most literal transcription of the maths and nothing else.
"""

from __future__ import annotations

import torch

from ._contract import dims


def wkv6_naive(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sequential fp32 WKV-6.

    Args:
        r, k, w: [B, T, H, K]; v: [B, T, H, V]; u: [H, K]; initial_state: [B, H, K, V] or None.
    Returns:
        o: [B, T, H, V] in v's dtype; final state [B, H, K, V] fp32 if ``output_final_state``.
    """
    B, T, H, K, V = dims(r, v)
    rf, kf, vf, wf = (x.float() for x in (r, k, v, w))
    uf = u.float()
    if initial_state is None:
        S = torch.zeros(B, H, K, V, dtype=torch.float32, device=r.device)
    else:
        S = initial_state.float()
    outs = []
    for t in range(T):
        rt, kt, vt = rf[:, t], kf[:, t], vf[:, t]  # [B, H, K], [B, H, K], [B, H, V]
        kv = kt.unsqueeze(-1) * vt.unsqueeze(-2)  # [B, H, K, V]
        ot = torch.einsum("bhk,bhkv->bhv", rt, S + uf.unsqueeze(-1) * kv)  # [B, H, V]
        outs.append(ot)
        S = torch.exp(wf[:, t]).unsqueeze(-1) * S + kv
    o = torch.stack(outs, dim=1) if T > 0 else vf.new_zeros(B, 0, H, V)  # [B, T, H, V]
    return o.to(v.dtype), (S if output_final_state else None)
