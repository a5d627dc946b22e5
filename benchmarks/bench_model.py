"""Model inference benchmark (CPU by default): pre-fill time vs prompt length, decode tokens/s and
cache bytes for GoldFinch vs a Llama-like model of the same width and depth.

    .venv/bin/python benchmarks/bench_model.py                      # L6 D512, 1k..8k, prints markdown
    .venv/bin/python benchmarks/bench_model.py --n-layer 12 --n-embd 768 --lengths 1024 2048

GoldFinch's pre-fill should be linear in the prompt (8k/1k time ratio <= 8.5): the GOLD stack runs on
the last 2·n_gold+1 positions only (spec §10.2). Random weights (timing does not depend on them).
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import torch


def _time(fn, repeats: int) -> tuple[float, object]:
    """Best-of-``repeats`` wall time (robust on a shared machine) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--decode-context", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is best on a loaded box)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from gf_train.config.model import ModelConfig
    from gf_train.model import build_model
    from gf_train.model.flops import param_count

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    models = {}
    for arch in ("goldfinch", "llama"):
        cfg = ModelConfig(arch=arch, n_layer=args.n_layer, n_embd=args.n_embd, vocab_size=args.vocab,
                          ctx_len=max(args.lengths), wkv_backend="auto", attn_backend="auto")
        models[arch] = build_model(cfg, device=dev).eval()
    print(f"# bench_model: {date.today()} | {platform.processor() or platform.machine()} | "
          f"torch {torch.__version__} | threads {torch.get_num_threads()} | device {dev}")
    print(f"# L{args.n_layer} D{args.n_embd} V{args.vocab}: goldfinch {param_count(models['goldfinch'].cfg):,} "
          f"params, llama {param_count(models['llama'].cfg):,} params, fp32\n")
    print("| model | prompt | prefill s | tokens/s | cache bytes (growing part) |")
    print("| --- | --- | --- | --- | --- |")
    prefill: dict[str, dict[int, float]] = {a: {} for a in models}
    for arch, model in models.items():
        model.prefill(torch.randint(0, args.vocab, (1, 64), device=dev))  # warm-up
        for n in args.lengths:
            ids = torch.randint(0, args.vocab, (1, n), device=dev)
            t, (_, cache) = _time(lambda m=model, i=ids: m.prefill(i), args.repeats)
            prefill[arch][n] = t
            print(f"| {arch} | {n} | {t:.3f} | {n / t:,.0f} | {cache.nbytes():,} ({cache.nbytes_growing():,}) |")
    lo, hi = min(args.lengths), max(args.lengths)
    for arch in models:
        print(f"\n{arch}: prefill time ratio {hi}/{lo} = {prefill[arch][hi] / prefill[arch][lo]:.2f} "
              f"(tokens ratio {hi / lo:.0f})")
    print("\n| model | cache mode | context | decode tokens/s | ms/token | cache bytes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for arch, model in models.items():
        for mode in (("compressed", "kv") if arch == "goldfinch" else ("kv",)):
            for n in args.decode_context:
                ids = torch.randint(0, args.vocab, (1, n), device=dev)
                kw = {"cache_mode": mode} if arch == "goldfinch" else {}
                logits, cache = model.prefill(ids, **kw)
                tok = logits.argmax(-1)
                t0 = time.perf_counter()
                for _ in range(args.decode_steps):
                    logits, cache = model.decode(tok, cache)
                    tok = logits.argmax(-1)
                dt = (time.perf_counter() - t0) / args.decode_steps
                print(f"| {arch} | {mode} | {n} | {1 / dt:.1f} | {dt * 1e3:.1f} | {cache.nbytes():,} |")


if __name__ == "__main__":
    with torch.no_grad():
        main()
