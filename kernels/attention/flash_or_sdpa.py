"""Causal attention through ``torch.nn.functional.scaled_dot_product_attention`` and flash-attn.

sdpa's ``is_causal`` is top-left aligned, so it is used only when Tq == Tk; for a block of new
queries against a longer cached prefix an explicit bottom-right boolean mask is passed, and
Tq == 1 needs no mask at all. flash-attn (>= 2.1) aligns causal masks bottom-right natively and
takes [B, T, H, D] directly; it is imported only when that backend is chosen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .naive import causal_mask


def attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """q: [B, Tq, H, D]; k, v: [B, Tk, H, D] -> [B, Tq, H, D] (q's dtype); mask [B, 1, Tq, Tk] or None."""
    tq, tk = q.shape[1], k.shape[1]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    if mask is not None:
        o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)
    elif tq == 1:
        o = F.scaled_dot_product_attention(qt, kt, vt, scale=scale)
    elif tq == tk:
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale)
    else:
        mask = causal_mask(tq, tk, q.device)  # [Tq, Tk], broadcast over B, H
        o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)
    return o.transpose(1, 2).to(q.dtype)


def flash_available() -> bool:
    """True when flash-attn can be imported (does not import it twice)."""
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def attention_flash(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """flash-attn 2 path (CUDA, fp16/bf16). q: [B, Tq, H, D]; k, v: [B, Tk, H, D]."""
    try:
        from flash_attn import flash_attn_func
    except ImportError as e:
        raise ValueError(
            "causal_attention(backend='flash') needs the flash-attn package; install it with "
            "`pip install flash-attn` (GPU extra) or use backend='sdpa'."
        ) from e
    if not q.is_cuda:
        raise ValueError("causal_attention(backend='flash') needs CUDA tensors; use backend='sdpa' on CPU.")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"flash-attn needs fp16/bf16 inputs, got {q.dtype}; cast first or use backend='sdpa'."
        )
    return flash_attn_func(q, k, v, softmax_scale=scale, causal=q.shape[1] > 1)
