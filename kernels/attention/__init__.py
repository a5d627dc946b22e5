"""Causal attention op for the GOLD and Llama layers: one public function, explicit backends.

``causal_attention(q, k, v, backend=..., scale=None)`` with layout [B, T, H, D] and a
bottom-right aligned causal mask (queries sit at the end of the keys; see ``naive.py``).
"""

from __future__ import annotations

import torch

from .flash_or_sdpa import attention_flash, attention_sdpa, flash_available
from .naive import attention_naive, causal_mask, padded_causal_mask

BACKENDS = ("auto", "flash", "sdpa", "naive")


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    backend: str = "auto",
    scale: float | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal softmax attention with queries aligned to the end of the keys.

    Args:
        q: [B, Tq, H, D]; k, v: [B, Tk, H, D] with Tk >= Tq. Query i sits at absolute position
            Tk - Tq + i and attends keys 0 .. Tk - Tq + i (Tq == 1: no mask, decode).
        backend: "auto" (flash if importable and q is on CUDA, else sdpa), "flash", "sdpa" or
            "naive" (fp32 reference).
        scale: softmax scale, default 1 / sqrt(D).
        key_mask: optional [B, Tk] bool, False for padding keys: no query attends them, except that a
            padding query attends itself only (its output is meaningless; this keeps it finite).
            A mask runs through sdpa (or naive); flash-attn takes no arbitrary masks.
    Returns:
        [B, Tq, H, D] in q's dtype.

    Example::

        o = causal_attention(q, k_cache, v_cache)  # q: [2, 16, 8, 64], caches: [2, 80, 8, 64]
    """
    if backend not in BACKENDS:
        raise ValueError(f"causal_attention: unknown backend {backend!r}; choose one of {BACKENDS}.")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"causal_attention expects [B, T, H, D] tensors, got q{tuple(q.shape)} k{tuple(k.shape)} "
            f"v{tuple(v.shape)}."
        )
    if k.shape != v.shape:
        raise ValueError(
            f"causal_attention: k{tuple(k.shape)} and v{tuple(v.shape)} must have the same shape."
        )
    B, tq, H, D = q.shape
    if k.shape[0] != B or k.shape[2] != H or k.shape[3] != D:
        raise ValueError(
            f"causal_attention: q{tuple(q.shape)} and k{tuple(k.shape)} must agree in B, H and D."
        )
    if k.shape[1] < tq:
        raise ValueError(
            f"causal_attention: Tk={k.shape[1]} < Tq={tq}; the keys must include every query position "
            "(append the new keys to the cache before attending)."
        )
    mask = None
    if key_mask is not None:
        if key_mask.shape != (B, k.shape[1]):
            raise ValueError(f"causal_attention: key_mask{tuple(key_mask.shape)} must be [B, Tk] = "
                             f"[{B}, {k.shape[1]}].")
        mask = padded_causal_mask(key_mask.bool(), tq)
        backend = "naive" if backend == "naive" else "sdpa"
    if backend == "auto":
        backend = "flash" if (q.is_cuda and q.dtype != torch.float32 and flash_available()) else "sdpa"
    if backend == "naive":
        return attention_naive(q, k, v, scale, mask)
    if backend == "sdpa":
        return attention_sdpa(q, k, v, scale, mask)
    return attention_flash(q, k, v, scale)


__all__ = ["causal_attention", "attention_naive", "attention_sdpa", "attention_flash", "causal_mask",
           "padded_causal_mask"]
