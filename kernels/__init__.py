"""gf_kernels: WKV-6 and attention ops (torch/Triton only; never imports gf_train).

Public API::

    from gf_kernels import wkv6, causal_attention
    o, state = wkv6(r, k, v, w, u, initial_state=None, output_final_state=False, backend="auto")
    o = causal_attention(q, k, v, backend="auto", scale=None)

Triton is imported lazily, only when a Triton backend is used.
"""

from .attention import causal_attention
from .wkv6 import wkv6

__all__ = ["wkv6", "causal_attention"]
