"""Shared helpers for the kernel tests: input factories, the relative-RMS metric and a runner
that returns the output, the final state and every gradient (r, k, v, w, u, initial state)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from gf_kernels import wkv6

O_TOL = 4e-3  # relative RMS for o (the fla bar)
G_TOL = 5e-3  # relative RMS for the final state and all gradients
NAMES = ("o", "state", "dr", "dk", "dv", "dw", "du", "dh0")


def rel_rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    """||x - ref||_2 / ||ref||_2 in fp64 (0 when both are ~0)."""
    x, ref = x.double(), ref.double()
    den = ref.norm().item()
    num = (x - ref).norm().item()
    if den < 1e-30:
        return num
    return num / den


def make_inputs(
    B: int, T: int, H: int, K: int, V: int, *, seed: int = 0, dtype: torch.dtype = torch.float32,
    device: str = "cpu", w_lo: float = 1e-6, w_hi: float = 1e3, h0: bool = True,
) -> dict[str, torch.Tensor | None]:
    """r, k, v ~ N(0, 1); log-decay w = -exp(U(log w_lo, log w_hi)) spans no decay .. instant forgetting."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(B, T, H, K, generator=g)
    k = torch.randn(B, T, H, K, generator=g)
    v = torch.randn(B, T, H, V, generator=g)
    w = -torch.exp(torch.empty(B, T, H, K).uniform_(math.log(w_lo), math.log(w_hi), generator=g))
    u = torch.randn(H, K, generator=g) * 0.5
    s0 = torch.randn(B, H, K, V, generator=g) if h0 else None
    out: dict[str, torch.Tensor | None] = {
        "r": r.to(dtype), "k": k.to(dtype), "v": v.to(dtype), "w": w.to(dtype), "u": u.to(dtype),
        "h0": s0,
    }
    return {n: (t.to(device) if t is not None else None) for n, t in out.items()}


def run(
    inp: dict[str, torch.Tensor | None],
    backend: str | Callable[..., Any],
    *,
    grads: bool = True,
    seed: int = 1,
) -> dict[str, torch.Tensor]:
    """Run wkv6 (or a backend function with wkv6's signature minus ``backend``) with final state;
    backprop fixed random cotangents; return NAMES -> tensors."""
    xs = {n: (t.detach().clone().requires_grad_(grads) if t is not None else None) for n, t in inp.items()}
    fn = functools.partial(wkv6, backend=backend) if isinstance(backend, str) else backend
    o, s = fn(
        xs["r"], xs["k"], xs["v"], xs["w"], xs["u"],
        initial_state=xs["h0"], output_final_state=True,
    )
    assert s is not None
    res = {"o": o.detach(), "state": s.detach()}
    if grads:
        g = torch.Generator().manual_seed(seed)
        # cotangents rounded to bf16 first, so fp32 references and bf16 kernels see the same values
        do = torch.randn(tuple(o.shape), generator=g).bfloat16().to(o.device, o.dtype)
        ds = torch.randn(tuple(s.shape), generator=g).bfloat16().to(s.device, s.dtype)
        ((o.float() * do.float()).sum() + (s * ds).sum()).backward()
        for n in ("r", "k", "v", "w", "u", "h0"):
            t = xs[n]
            if t is not None:
                assert t.grad is not None, f"no gradient for {n}"
                res["d" + n] = t.grad.detach()
    return res


def compare(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], *, tol_o: float = O_TOL,
            tol: float = G_TOL) -> dict[str, float]:
    """Assert every tensor in ref is finite in got and within tolerance; return the errors."""
    errs = {}
    for n, r in ref.items():
        x = got[n]
        assert x.shape == r.shape, f"{n}: shape {tuple(x.shape)} != {tuple(r.shape)}"
        assert torch.isfinite(x).all(), f"{n}: non-finite values"
        assert torch.isfinite(r).all(), f"{n}: reference non-finite"
        errs[n] = rel_rms(x, r)
    bad = {n: e for n, e in errs.items() if e > (tol_o if n == "o" else tol)}
    assert not bad, f"relative RMS errors over tolerance: {bad} (all: {errs})"
    return errs


def run_split(inp: dict[str, torch.Tensor | None], backend: str, cut: int) -> dict[str, torch.Tensor]:
    """Like ``run`` but in two calls, tokens [:cut] then [cut:], passing the final state on."""
    xs = {n: t.detach().clone().requires_grad_() for n, t in inp.items() if t is not None}
    h0 = xs.get("h0")
    o1, s1 = wkv6(*(xs[n][:, :cut] for n in "rkvw"), xs["u"], initial_state=h0,
                  output_final_state=True, backend=backend)
    o2, s2 = wkv6(*(xs[n][:, cut:] for n in "rkvw"), xs["u"], initial_state=s1,
                  output_final_state=True, backend=backend)
    assert s2 is not None
    o = torch.cat([o1, o2], dim=1)
    g = torch.Generator().manual_seed(1)  # same cotangents as ``run``
    do = torch.randn(tuple(o.shape), generator=g).bfloat16().to(o.device, o.dtype)
    ds = torch.randn(tuple(s2.shape), generator=g).bfloat16().to(s2.device, s2.dtype)
    ((o.float() * do.float()).sum() + (s2 * ds).sum()).backward()
    res = {"o": o.detach(), "state": s2.detach()}
    for n, t in xs.items():
        assert t.grad is not None, f"no gradient for {n}"
        res["d" + n] = t.grad.detach()
    return res
