"""WKV-6: the naive oracle's own sanity, and the torch chunked and token-by-token step backends against it (CPU)."""

from __future__ import annotations

import pytest
import torch
from _gfk_testing import compare, make_inputs, rel_rms, run, run_split
from gf_kernels import wkv6
from gf_kernels._alloc import new_output, poison_enabled
from gf_kernels.wkv6 import resolve_backend

SHAPES = [  # B, T, H, K, V
    (2, 1, 2, 16, 16),
    (2, 15, 2, 16, 16),
    (1, 63, 2, 64, 64),
    (2, 64, 2, 16, 16),
    (2, 65, 3, 64, 64),
    (2, 200, 2, 16, 16),
    (1, 200, 2, 64, 64),
    (2, 65, 2, 16, 32),  # K != V
]


@pytest.mark.parametrize("h0", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}H{}K{}V{}".format(*s))
def test_torch_matches_naive(shape: tuple[int, ...], h0: bool) -> None:
    inp = make_inputs(*shape, h0=h0, seed=sum(shape))
    compare(run(inp, "torch"), run(inp, "naive"))


@pytest.mark.parametrize("h0", [True, False])
@pytest.mark.parametrize("shape", SHAPES[:5] + SHAPES[-1:], ids=lambda s: "B{}T{}H{}K{}V{}".format(*s))
def test_step_matches_naive(shape: tuple[int, ...], h0: bool) -> None:
    """The decode backend off CUDA: forward, final state and every gradient (incl. of the initial state)."""
    inp = make_inputs(*shape, h0=h0, seed=sum(shape) + 1)
    compare(run(inp, "step"), run(inp, "naive"))


def test_step_decode_leaves_the_callers_state_alone() -> None:
    """A decode step returns a new state: caches that share the old one (branches) must not see it change."""
    inp = make_inputs(3, 1, 4, 64, 64, h0=True, seed=5)
    r, k, v, w, u, s0 = (inp[n] for n in ("r", "k", "v", "w", "u", "h0"))
    assert s0 is not None
    before = s0.clone()
    with torch.no_grad():
        o, s1 = wkv6(r, k, v, w, u, initial_state=s0, output_final_state=True, backend="step")
        o_ref, s_ref = wkv6(r, k, v, w, u, initial_state=s0, output_final_state=True, backend="naive")
    assert torch.equal(s0, before) and s1 is not None and s_ref is not None
    assert rel_rms(o, o_ref) < 1e-6 and rel_rms(s1, s_ref) < 1e-6


def test_naive_matches_closed_form() -> None:
    """The oracle itself: unrolled sum for T = 3, one head, against a hand expansion."""
    inp = make_inputs(1, 3, 1, 4, 5, h0=True, seed=3)
    r, k, v, w, u, s0 = (inp[n] for n in ("r", "k", "v", "w", "u", "h0"))
    assert s0 is not None
    o, s = wkv6(r, k, v, w, u, initial_state=s0, output_final_state=True, backend="naive")
    S = s0[0, 0].double()
    for t in range(3):
        rt, kt, vt, wt = (x[0, t, 0].double() for x in (r, k, v, w))
        kv = torch.outer(kt, vt)
        want = rt @ (S + u[0].double()[:, None] * kv)
        assert torch.allclose(o[0, t, 0].double(), want, rtol=1e-5, atol=1e-5)
        S = torch.exp(wt)[:, None] * S + kv
    assert s is not None and torch.allclose(s[0, 0].double(), S, rtol=1e-5, atol=1e-5)


def test_extreme_decays_finite() -> None:
    """Log-decay exactly -1e-6 and -1e3 side by side, forward and backward: finite and accurate."""
    inp = make_inputs(2, 130, 2, 16, 16, seed=7)
    w = inp["w"]
    assert w is not None
    pick = torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    inp["w"] = torch.where(pick, torch.full_like(w, -1e-6), torch.full_like(w, -1e3))
    compare(run(inp, "torch"), run(inp, "naive"))


def test_state_passing_two_calls_equal_one() -> None:
    """T tokens in one call == the same tokens in two calls passing the final state (fwd + grads)."""
    B, T, H, K, V, cut = 2, 150, 2, 16, 16, 71
    inp = make_inputs(B, T, H, K, V, seed=11)
    full = run(inp, "torch")
    split = run_split(inp, "torch", cut)
    for n, ref in full.items():
        assert rel_rms(split[n], ref) < 1e-4, n


def test_decode_t1_with_state_matches_naive() -> None:
    inp = make_inputs(3, 1, 4, 64, 64, seed=5)
    compare(run(inp, "torch"), run(inp, "naive"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_torch_low_precision_inputs(dtype: torch.dtype) -> None:
    """bf16/fp16 inputs: fp32 maths inside, o in v's dtype, state fp32; compared with naive on the
    same values in fp32 (so the error includes rounding o and the gradients to the input dtype)."""
    inp = make_inputs(2, 65, 2, 16, 16, seed=9, dtype=dtype, w_hi=10.0)
    got = run(inp, "torch")
    ref = run({n: (t.float() if t is not None else None) for n, t in inp.items()}, "naive")
    assert got["o"].dtype == dtype and got["state"].dtype == torch.float32 and got["dw"].dtype == dtype
    compare({n: t.float() for n, t in got.items()}, ref)


def test_backend_resolution_and_errors() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "triton"
    # decode-time choice (the model passes its T): one token on CUDA goes to the recurrent kernel ...
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert resolve_backend("auto", cuda, tokens=1) == resolve_backend("triton", cuda, tokens=1) == "recurrent"
    # off CUDA one token takes the one-step loop (a chunked kernel would pad it to a whole chunk) ...
    assert resolve_backend("auto", cpu, tokens=1) == resolve_backend("triton", cpu, tokens=1) == "step"
    assert resolve_backend("torch", cpu, tokens=1) == "step" and resolve_backend("naive", cpu, tokens=1) == "naive"
    assert resolve_backend("auto", cpu) == "torch" and resolve_backend("auto", cpu, tokens=2) == "torch"
    # ... and on CUDA never for more tokens, or when the caller chose a non-Triton backend
    assert resolve_backend("auto", cuda, tokens=2) == resolve_backend("triton", cuda, tokens=16) == "triton"
    assert resolve_backend("torch", cuda, tokens=1) == "torch" and resolve_backend("naive", cuda, tokens=1) == "naive"
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("cuda", cuda, tokens=1)
    inp = make_inputs(1, 4, 2, 8, 8)
    r, k, v, w, u = (inp[n] for n in ("r", "k", "v", "w", "u"))
    with pytest.raises(ValueError, match="unknown backend"):
        wkv6(r, k, v, w, u, backend="cuda")
    with pytest.raises(ValueError, match="u"):
        wkv6(r, k, v, w, u.flatten())
    with pytest.raises(ValueError, match="initial_state"):
        wkv6(r, k, v, w, u, initial_state=torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match="same"):
        wkv6(r, k[:, :3], v, w, u)


def test_poisoned_allocations_in_tests() -> None:
    assert poison_enabled()
    assert torch.isnan(new_output((2, 3), dtype=torch.float32, device=torch.device("cpu"))).all()


def test_torch_backend_under_dynamo() -> None:
    """The torch backend (a custom autograd.Function with a chunk loop) traces under torch.compile."""
    inp = make_inputs(1, 40, 2, 16, 16, seed=21)
    xs = [inp[n].clone().requires_grad_() for n in ("r", "k", "v", "w", "u")]  # type: ignore[union-attr]

    def loss(r, k, v, w, u):  # type: ignore[no-untyped-def]
        return wkv6(r * 1.0, k, v, w, u, backend="torch")[0].square().sum()

    got = torch.compile(loss, backend="eager")(*xs)
    got.backward()
    grads = [x.grad.clone() for x in xs]  # type: ignore[union-attr]
    ys = [inp[n].clone().requires_grad_() for n in ("r", "k", "v", "w", "u")]  # type: ignore[union-attr]
    want = loss(*ys)
    want.backward()
    assert abs(got.item() - want.item()) <= 1e-5 * abs(want.item())
    for a, y in zip(grads, ys):
        assert rel_rms(a, y.grad) < 1e-5  # type: ignore[arg-type]
