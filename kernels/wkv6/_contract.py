"""The WKV-6 input contract, shared by the public entry and every backend.

Owns: the log-decay floor ``W_MIN`` every fast backend clamps ``w`` at, the checks
``gf_kernels.wkv6.wkv6`` runs once per call (:func:`check_inputs`), the shape unpacking every backend
does (:func:`dims`) and the empty-input guard of the Triton backends (:func:`require_tokens`).
Backends trust that :func:`check_inputs` already ran; nothing here allocates.
"""

from __future__ import annotations

import torch

# Log-decay floor of every fast backend: exp(-40) = 4e-18 already means "forget everything" in fp32,
# and the floor bounds the in-chunk cumulative decays so that their differences stay accurate
# (README.md "Decay floor"). The naive oracle does not clamp.
W_MIN = -40.0


def check_inputs(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    """Raise ``ValueError`` unless the inputs follow the layout, device and dtype contract of ``wkv6``."""
    if r.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"wkv6 expects r, k, w as [B, T, H, K] and v as [B, T, H, V]; got r{tuple(r.shape)}."
        )
    B, T, H, K, V = dims(r, v)
    if k.shape != r.shape or w.shape != r.shape:
        raise ValueError(
            f"wkv6: r{tuple(r.shape)}, k{tuple(k.shape)} and w{tuple(w.shape)} must have the same "
            "[B, T, H, K] shape."
        )
    if v.shape[:3] != (B, T, H):
        raise ValueError(f"wkv6: v{tuple(v.shape)} must be [B={B}, T={T}, H={H}, V].")
    if u.shape != (H, K):
        raise ValueError(
            f"wkv6: u{tuple(u.shape)} must be [H={H}, K={K}] (use u.view(H, K) for a flat bonus)."
        )
    if initial_state is not None:
        want = (B, H, K, V)
        if tuple(initial_state.shape) != want:
            raise ValueError(
                f"wkv6: initial_state{tuple(initial_state.shape)} must be [B, H, K, V] = {want} "
                "(the fla layout; RWKV-LM's CUDA state is [B, H, V, K], transpose it)."
            )
    devs = {x.device for x in (r, k, v, w, u)}
    if initial_state is not None:
        devs.add(initial_state.device)
    if len(devs) != 1:
        raise ValueError(f"wkv6: all inputs must be on one device, got {sorted(str(d) for d in devs)}.")
    if not (r.dtype == k.dtype == v.dtype == w.dtype):
        raise ValueError(
            f"wkv6: r, k, v, w must share one dtype, got {r.dtype}, {k.dtype}, {v.dtype}, {w.dtype}."
        )
    if not r.dtype.is_floating_point:
        raise ValueError(f"wkv6: inputs must be floating point, got {r.dtype}.")


def dims(r: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    """(B, T, H, K, V) from r [B, T, H, K] and v [B, T, H, V]."""
    B, T, H, K = r.shape
    return B, T, H, K, v.shape[-1]


def require_tokens(r: torch.Tensor, backend: str) -> None:
    """The Triton backends launch no program for T = 0: reject empty inputs with a clear message."""
    if r.shape[1] == 0:
        raise ValueError(f"wkv6(backend={backend!r}) got T = 0; skip the call for empty inputs.")
