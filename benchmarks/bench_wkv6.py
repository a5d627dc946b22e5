"""Benchmark the WKV-6 backends: median milliseconds for the forward and forward+backward passes.

CPU (always): B2 T2048 H4 K64 fp32 for naive and torch (triton/recurrent only when
TRITON_INTERPRET=1 and --interpret is given: the interpreter is a correctness tool, not a speed one).
GPU (when CUDA is available): additionally B8 T1024 H8 K64 bf16 for torch, triton, recurrent and,
if ``fla`` imports, fla's ``chunk_rwkv6`` on the same inputs in the same run.

    python benchmarks/bench_wkv6.py            # table to stdout
    python benchmarks/bench_wkv6.py --reps 5 --naive-reps 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from gf_kernels import wkv6  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def make(B: int, T: int, H: int, K: int, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r, k, v = (torch.randn(B, T, H, K, generator=g) for _ in range(3))
    w = -torch.exp(torch.randn(B, T, H, K, generator=g) - 1.0)  # log-decay, typical RWKV range
    u = torch.randn(H, K, generator=g) * 0.5
    return [x.to(device, dtype).requires_grad_() for x in (r, k, v, w, u)]


def bench_case(name: str, call: Callable[[list[torch.Tensor]], torch.Tensor], xs: list[torch.Tensor],
               reps: int) -> tuple[str, float, float]:
    device = xs[0].device

    def fwd() -> None:
        with torch.no_grad():
            call(xs)

    def fwd_bwd() -> None:
        o = call(xs)
        o.backward(torch.ones_like(o))
        for x in xs:
            x.grad = None

    return name, median_ms(fwd, device, reps), median_ms(fwd_bwd, device, reps)


def backend_call(backend: str) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    return lambda xs: wkv6(*xs, backend=backend)[0]


def fla_call() -> Callable[[list[torch.Tensor]], torch.Tensor] | None:
    try:
        from fla.ops.rwkv6 import chunk_rwkv6
    except Exception:
        return None
    return lambda xs: chunk_rwkv6(*xs, scale=1.0)[0]


def table(title: str, rows: list[tuple[str, float, float]], base: str = "naive") -> str:
    lines = [f"### {title}", "", "| backend | fwd ms | fwd+bwd ms | speed-up fwd / fwd+bwd vs " + base + " |",
             "|---|---:|---:|---:|"]
    ref = {n: (f, fb) for n, f, fb in rows}.get(base)
    for n, f, fb in rows:
        sp = f"{ref[0] / f:.1f}x / {ref[1] / fb:.1f}x" if ref else "-"
        lines.append(f"| {n} | {f:.2f} | {fb:.2f} | {sp} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--naive-reps", type=int, default=3)
    ap.add_argument("--interpret", action="store_true",
                    help="also time the Triton backends in the interpreter")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU table")
    args = ap.parse_args(argv)
    print(f"# bench_wkv6  torch {torch.__version__}  {platform.processor() or platform.machine()}  "
          f"threads {torch.get_num_threads()}  {time.strftime('%Y-%m-%d %H:%M %Z')}")

    if not args.no_cpu:
        cpu = torch.device("cpu")
        xs = make(2, 2048, 4, 64, torch.float32, cpu)
        rows = [bench_case("naive", backend_call("naive"), xs, args.naive_reps),
                bench_case("torch", backend_call("torch"), xs, args.reps)]
        if args.interpret:
            for b in ("triton", "recurrent"):
                rows.append(bench_case(b + " (interpreter)", backend_call(b), xs, 1))
        print(table("CPU, B2 T2048 H4 K64 fp32", rows))

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        print(f"\n# GPU: {torch.cuda.get_device_name()}")
        for (B, T, H, K), dtype in (((2, 2048, 4, 64), torch.float32), ((8, 1024, 8, 64), torch.bfloat16)):
            xs = make(B, T, H, K, dtype, dev)
            rows = [bench_case(b, backend_call(b), xs, args.reps) for b in ("torch", "triton", "recurrent")]
            fla = fla_call()
            if fla is not None:
                rows.append(bench_case("fla chunk_rwkv6", fla, xs, args.reps))
            print()
            print(table(f"GPU, B{B} T{T} H{H} K{K} {str(dtype).removeprefix('torch.')}", rows, base="torch"))


if __name__ == "__main__":
    main()
