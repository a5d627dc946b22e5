"""WKV-6 op: the public ``wkv6`` function and the backend dispatch (contract checks: ``_contract.py``).

Backends (explicit argument, resolved per call from the tensors' device, never a global):
  "naive"     fp32 sequential loop (``naive.py``), the oracle; autograd through the loop.
  "torch"     matmul-based chunked PyTorch (``chunk_torch.py``), any device; the CPU training path.
  "triton"    chunked Triton kernels, forward and backward (``chunk.py``).
  "recurrent" fused recurrent Triton kernel for decode / short inputs (``fused_recurrent.py``).
  "step"      token-by-token PyTorch with few passes over the state (``step.py``), any device; decode
              off CUDA.
  "auto"      triton on CUDA tensors, torch otherwise.
The Triton modules are imported only when chosen, so ``import gf_kernels`` works without triton.
"""

from __future__ import annotations

import torch

from ._contract import check_inputs
from .naive import wkv6_naive

BACKENDS = ("auto", "naive", "torch", "triton", "recurrent", "step")


def resolve_backend(backend: str, device: torch.device, tokens: int | None = None) -> str:
    """The concrete backend for a call on ``device``: "auto" is triton on CUDA, torch otherwise.

    ``tokens``: the caller's T when it wants the decode-time choice (the model passes it; ``wkv6``
    does not, so an explicit backend is always honoured there): a single token on CUDA under "auto"
    or "triton" goes to "recurrent", since the chunk kernels would pad it to a 16-token chunk; off CUDA
    it goes to the token-by-token "step" (the chunked torch kernel pads it to a whole chunk too).
    """
    if backend not in BACKENDS:
        raise ValueError(f"wkv6: unknown backend {backend!r}; choose one of {BACKENDS}.")
    if tokens == 1 and device.type == "cuda" and backend in ("auto", "triton"):
        return "recurrent"
    if tokens == 1 and device.type != "cuda" and backend != "naive":
        return "step"
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    return backend


def wkv6(
    r: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RWKV-6 linear attention with data-dependent per-channel decay (scale = 1).

    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),  S_t = diag(exp(w_t)) S_{t-1} + k_t^T v_t.

    Args:
        r, k, w: [B, T, H, K]; ``w`` is the log-decay (<= 0; the model passes -exp(raw)).
        v: [B, T, H, V]; u: [H, K] bonus.
        initial_state: [B, H, K, V] (cast to fp32) or None for zeros; gradients flow into it.
        output_final_state: also return the state after the last token ([B, H, K, V], fp32).
        backend: "auto" | "naive" | "torch" | "triton" | "recurrent" | "step" (see module docstring).
    Returns:
        (o [B, T, H, V] in v's dtype, final state or None).

    Example::

        o, s = wkv6(r, k, v, -torch.exp(w_raw), u, output_final_state=True)
        o2, s = wkv6(r2, k2, v2, w2, u, initial_state=s, output_final_state=True)  # continue
    """
    check_inputs(r, k, v, w, u, initial_state)
    name = resolve_backend(backend, r.device)
    if name == "naive":
        return wkv6_naive(r, k, v, w, u, initial_state, output_final_state)
    if name == "step":
        from .step import wkv6_step

        return wkv6_step(r, k, v, w, u, initial_state, output_final_state)
    if name == "torch":
        from .chunk_torch import wkv6_chunk_torch

        return wkv6_chunk_torch(r, k, v, w, u, initial_state, output_final_state)
    if r.device.type != "cuda" and not _interpreting():
        raise ValueError(
            f"wkv6(backend={name!r}) needs CUDA tensors (or TRITON_INTERPRET=1 for tests); "
            "use backend='torch' on CPU."
        )
    try:
        if name == "triton":
            from .chunk import wkv6_chunk_triton as fn
        else:
            from .fused_recurrent import wkv6_fused_recurrent as fn
    except ImportError as e:
        raise ImportError(
            f"wkv6(backend={name!r}) needs the triton package ({e}); install it (`pip install triton`) "
            "or use backend='torch'."
        ) from e
    return fn(r, k, v, w, u, initial_state, output_final_state)


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "0") == "1"


__all__ = ["wkv6", "wkv6_naive", "resolve_backend", "BACKENDS"]
