"""Compile the WKV-6 Triton kernels ahead of time for an sm_90 (H100) target, no GPU needed.

Run as a script with TRITON_INTERPRET unset (``test_wkv6_triton.py`` does so in a subprocess): it
catches GPU-only compile errors (tl.dot shapes, dtypes, unsupported ops) that the interpreter misses.
Prints one line per kernel and exits non-zero on the first failure. Usage:
``python tests/kernels/_aot_compile.py [bf16] [fp32]``.
"""

from __future__ import annotations

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402


def compile_one(kern: object, sig: dict[str, str], consts: dict[str, object], num_warps: int) -> None:
    fn = kern.fn if isinstance(kern, triton.runtime.Autotuner) else kern  # type: ignore[attr-defined]
    full = dict(sig)
    full.update({name: "constexpr" for name in consts})
    names: list[str] = fn.arg_names  # type: ignore[attr-defined]
    src = ASTSource(fn=fn, signature=full, constexprs={(names.index(n),): v for n, v in consts.items()})
    triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": 2})
    print(f"compiled {fn.__name__} {sig['r']} num_warps={num_warps}")  # type: ignore[attr-defined]


def main(dtypes: list[str]) -> None:
    from gf_kernels.wkv6 import chunk, fused_recurrent

    for dt in dtypes:
        p = "*" + dt
        ieee = dt == "fp32"
        base_h = {"r": p, "k": p, "v": p, "w": p}
        base = {**base_h, "u": p}
        shape = dict(H=4, K=64, V=64, BK=64, WMIN=-40.0)
        chunk_consts = dict(shape, BT_=16, BV=32, IEEE=ieee)
        compile_one(chunk._fwd_h_kernel, {**base_h, "h0": "*fp32", "hs": "*fp32", "ht": "*fp32", "T": "i32"},
                    dict(chunk_consts, HAS_H0=True), 8)
        compile_one(chunk._fwd_o_kernel, {**base, "hs": "*fp32", "o": p, "T": "i32"}, chunk_consts, 8)
        compile_one(chunk._bwd_dh_kernel,
                    {**base_h, "do": p, "dht": "*fp32", "dhs": "*fp32", "dh0": "*fp32", "T": "i32"},
                    dict(chunk_consts, HAS_DHT=True, HAS_H0=True), 8)
        compile_one(chunk._bwd_grad_kernel,
                    {**base, "hs": "*fp32", "dhs": "*fp32", "do": p, "dr": "*fp32", "dk": "*fp32",
                     "dv": "*fp32", "T": "i32"}, chunk_consts, 8)
        compile_one(fused_recurrent._rec_fwd_kernel, {**base, "h0": "*fp32", "o": p, "ht": "*fp32", "T": "i32"},
                    dict(shape, BV=64, HAS_H0=True), 4)
        compile_one(fused_recurrent._rec_bwd_kernel,
                    {**base, "h0": "*fp32", "do": p, "dht": "*fp32", "dr": "*fp32", "dk": "*fp32",
                     "dv": "*fp32", "dh0": "*fp32", "T": "i32"},
                    dict(shape, BV=64, HAS_H0=True, HAS_DHT=True), 4)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import conftest  # noqa: F401  (makes gf_kernels importable from the checkout)

    main(sys.argv[1:] or ["bf16", "fp32"])
