"""Decode benchmark (issue 15): GoldFinch ``kv`` and ``compressed`` caches vs our Llama baseline and HF
``LlamaForCausalLM`` (its ``DynamicCache``) of the same shape, interleaved in one run.

    .venv/bin/python benchmarks/bench_generate.py                       # L12 D768 V65536, fp32, 2 threads
    .venv/bin/python benchmarks/bench_generate.py --contexts 256 1024 --repeats 3 --only gf-kv hf-llama

For every context length and repeat, each contender pre-fills a random prompt (not timed) and then
decodes ``--steps`` greedy tokens (timed); contenders run one after the other inside each repeat, so
machine noise hits all of them alike. Prints medians of decode tokens/s, ratios to HF Llama, batch-8
decode throughput and the cache bytes of each mode. Random weights (timing does not depend on them).
Run from a checkout of an older gf-train (PYTHONPATH) with ``--only gf-compressed`` to compare versions:
a model without ``cache_mode`` runs its default (compressed) cache.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import date

import torch

CONTENDERS = ("gf-kv", "gf-compressed", "llama", "hf-llama")


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def build(args: argparse.Namespace) -> dict[str, tuple[torch.nn.Module, str]]:
    from gf_train.config.model import ModelConfig
    from gf_train.model import build_model

    out: dict[str, tuple[torch.nn.Module, str]] = {}
    torch.manual_seed(0)
    common = dict(n_layer=args.n_layer, n_embd=args.n_embd, vocab_size=args.vocab, ctx_len=8192,
                  wkv_backend="auto", attn_backend="auto")
    if {"gf-kv", "gf-compressed"} & set(args.only):
        gf = build_model(ModelConfig(arch="goldfinch", **common)).eval()  # type: ignore[arg-type]
        out["gf-kv"] = (gf, "kv")
        out["gf-compressed"] = (gf, "compressed")
    if "llama" in args.only or "hf-llama" in args.only:
        ours = build_model(ModelConfig(arch="llama", **common)).eval()  # type: ignore[arg-type]
        out["llama"] = (ours, "kv")
        if "hf-llama" in args.only:
            from transformers import LlamaConfig, LlamaForCausalLM

            hcfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.n_embd, intermediate_size=ours.cfg.ffn_dim,
                               num_hidden_layers=args.n_layer, num_attention_heads=args.n_embd // 64,
                               num_key_value_heads=args.n_embd // 64, max_position_embeddings=8192,
                               tie_word_embeddings=False, attn_implementation="sdpa")
            out["hf-llama"] = (LlamaForCausalLM(hcfg).eval(), "dynamic")
    return {k: v for k, v in out.items() if k in args.only}


def _ours(model: torch.nn.Module, mode: str) -> tuple[Callable, Callable, Callable]:
    def prefill(ids: torch.Tensor):
        try:
            return model.prefill(ids, cache_mode=mode)
        except TypeError:  # an older gf-train without cache modes (compressed cache)
            return model.prefill(ids)

    return prefill, model.decode, lambda cache: cache.nbytes()


def _hf(model: torch.nn.Module) -> tuple[Callable, Callable, Callable]:
    def prefill(ids: torch.Tensor):
        out = model(ids, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.past_key_values

    def decode(tok: torch.Tensor, cache):
        out = model(tok.view(-1, 1), past_key_values=cache, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    def nbytes(cache) -> int:
        layers = getattr(cache, "layers", None)
        if layers is not None:  # transformers >= 4.56
            ts = [t for lay in layers for t in (lay.keys, lay.values)]
        else:
            ts = list(cache.key_cache) + list(cache.value_cache)
        return sum(t.numel() * t.element_size() for t in ts)

    return prefill, decode, nbytes


def run_one(fns: tuple[Callable, Callable, Callable], batch: int, ctx: int, steps: int, vocab: int,
            seed: int) -> tuple[float, int]:
    """Pre-fill a random prompt, then time ``steps`` greedy decode steps -> (tokens/s, cache bytes)."""
    prefill, decode, nbytes = fns
    ids = torch.randint(0, vocab, (batch, ctx), generator=torch.Generator().manual_seed(seed))
    logits, cache = prefill(ids)
    tok = logits.argmax(-1)
    t0 = time.perf_counter()
    for _ in range(steps):
        logits, cache = decode(tok, cache)
        tok = logits.argmax(-1)
    dt = time.perf_counter() - t0
    return batch * steps / dt, nbytes(cache)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-context", type=int, default=1024, help="context of the batch-8 throughput rows")
    ap.add_argument("--batch", type=int, default=8, help="batch size of the throughput rows (0 = skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = build(args)
    fns = {k: (_hf(m) if mode == "dynamic" else _ours(m, mode)) for k, (m, mode) in models.items()}
    print(f"# bench_generate: {date.today()} | {_cpu_name()} | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()} | L{args.n_layer} D{args.n_embd} V{args.vocab} fp32 | "
          f"{args.steps} greedy tokens, median of {args.repeats}, interleaved\n")
    for f in fns.values():  # warm-up
        run_one(f, 1, 16, 2, args.vocab, 0)
    rows: list[tuple[int, int]] = [(1, c) for c in args.contexts]
    if args.batch:
        rows.append((args.batch, args.batch_context))
    speed: dict[tuple[int, int, str], list[float]] = {}
    nbytes: dict[tuple[int, int, str], int] = {}
    names = list(fns)
    print("| batch | context | " + " | ".join(f"{n} tok/s" for n in names)
          + (" | " + " | ".join(f"{n} / hf-llama" for n in names if n != "hf-llama") if "hf-llama" in names else "")
          + " |")
    n_cols = len(names) + (len(names) - 1 if "hf-llama" in names else 0)
    print("| --- | --- | " + " | ".join("---" for _ in range(n_cols)) + " |", flush=True)
    for batch, ctx in rows:  # each row printed as soon as it is measured
        for r in range(args.repeats):
            for name, f in fns.items():  # interleaved: every contender once per repeat
                tps, nb = run_one(f, batch, ctx, args.steps, args.vocab, seed=r)
                speed.setdefault((batch, ctx, name), []).append(tps)
                nbytes[(batch, ctx, name)] = nb
        med = {n: statistics.median(speed[(batch, ctx, n)]) for n in names}
        cells = [f"{med[n]:.2f}" for n in names]
        if "hf-llama" in names:
            cells += [f"{med[n] / med['hf-llama']:.2f}x" for n in names if n != "hf-llama"]
        print(f"| {batch} | {ctx} | " + " | ".join(cells) + " |", flush=True)
    print("\n| batch | context | " + " | ".join(f"{n} cache bytes" for n in names) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    for batch, ctx in rows:
        print(f"| {batch} | {ctx} | " + " | ".join(f"{nbytes[(batch, ctx, n)]:,}" for n in names) + " |")


if __name__ == "__main__":
    with torch.no_grad():
        main()
