"""WKV-6 token by token in few passes over the state: the decode path off CUDA (backend "step").

The same recurrence as ``naive.py``, regrouped so that each token touches the [K, V] state three times
(one read for the output, one read-scale-write, one rank-1 update in place) instead of the oracle's
five passes and two temporaries::

    o_t = r_t S_{t-1} + (r_t . (u * k_t)) v_t          one baddbmm per token
    S_t = diag(exp(w_t)) S_{t-1} + k_t^T v_t           a scale into a new tensor, then baddbmm_ in place

At decode (T = 1, state 12 x 64 x 64 fp32 per layer at C = 768) the state passes are most of a Finch
layer's non-GEMM time on CPU. Any T works (a loop); gradients by autograd. Tested against the oracle.
"""

from __future__ import annotations

import torch

from ._contract import dims


def wkv6_step(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sequential fp32 WKV-6 (see module docstring); the arguments and results of ``wkv6_naive``."""
    B, T, H, K, V = dims(r, v)
    rf, kf, vf = (x.float().transpose(1, 2) for x in (r, k, v))  # [B, H, T, K] / [B, H, T, V]
    decay = w.float().exp().transpose(1, 2)  # [B, H, T, K]
    bonus = (rf * kf * u.float().unsqueeze(1)).sum(-1, keepdim=True)  # r_t . (u * k_t): [B, H, T, 1]
    if initial_state is None:
        S = torch.zeros(B * H, K, V, dtype=torch.float32, device=r.device)
    else:
        S = initial_state.float().reshape(B * H, K, V)
    outs = []
    for t in range(T):
        vt = vf[:, :, t].reshape(B * H, 1, V)
        o = torch.baddbmm(bonus[:, :, t].reshape(B * H, 1, 1) * vt, rf[:, :, t].reshape(B * H, 1, K), S)
        outs.append(o.view(B, H, V))
        S = S * decay[:, :, t].reshape(B * H, K, 1)  # a new tensor: the caller's state is never written
        S.baddbmm_(kf[:, :, t].reshape(B * H, K, 1), vt)
    o = outs[0].unsqueeze(1) if T == 1 else torch.stack(outs, dim=1) if T else v.new_zeros(B, 0, H, V).float()
    return o.to(v.dtype), (S.view(B, H, K, V) if output_final_state else None)
