"""`gf-train generate --model DIR --prompt TEXT`: sample a continuation with the compressed-cache decoder.

Owner: `gf_train.cli`. Prints the prompt + continuation on stdout; on stderr, the pre-fill and decode
speeds (tokens/s) and the inference cache size in bytes next to what a Llama of the same width and depth
would keep for the same tokens (2 * n_layer * n_embd numbers per token, spec §10.4).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="export folder, or a run / checkpoint directory")
    parser.add_argument("--prompt", required=True, help="prompt text")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer spec, for a model that records none (default: the model's own; another "
                             "tokenizer than the model's is refused)")


@dataclass
class GenerationResult:
    text: str
    new_ids: list[int]
    prompt_tokens: int
    prefill_s: float
    decode_s: float
    cache_bytes: int
    cache_parts: dict[str, int]
    growing_bytes: int
    llama_bytes: int


def llama_cache_bytes(n_layer: int, n_embd: int, n_tokens: int, elem_bytes: int) -> int:
    """K and V of every layer for every token: 2 * L * C entries per token (spec §10.4)."""
    return 2 * n_layer * n_embd * n_tokens * elem_bytes


def generate_text(model: Any, tok: Any, prompt: str, max_new_tokens: int = 64, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None
                  ) -> GenerationResult:
    """Pre-fill then decode token by token (timed separately); stops at the tokenizer's EOS."""
    import torch

    from gf_train.model.generate import sample_next

    ids = tok.encode(prompt)
    if not ids:
        raise ValueError("the prompt encodes to no tokens; pass a non-empty --prompt")
    if max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    gen = None
    if seed is not None:
        gen = torch.Generator()
        gen.manual_seed(seed)
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        t0 = time.perf_counter()
        logits, cache = model.prefill(x)
        t1 = time.perf_counter()
        new: list[int] = []
        while True:
            nxt = sample_next(logits, temperature, top_k, top_p, gen)
            new.append(int(nxt[0]))
            if len(new) >= max_new_tokens or new[-1] == tok.eos_id:
                break
            logits, cache = model.decode(nxt, cache)
        t2 = time.perf_counter()
    elem = next(model.parameters()).element_size()
    cfg = model.cfg
    text = tok.decode([i for i in new if i != tok.eos_id])
    return GenerationResult(prompt + text, new, len(ids), t1 - t0, t2 - t1, cache.nbytes(), cache.nbytes_by_type(),
                            cache.nbytes_growing(),
                            llama_cache_bytes(cfg.n_layer, cfg.n_embd, cache.n_tokens, elem))


def report(r: GenerationResult, cfg: Any) -> str:
    n_dec = max(len(r.new_ids) - 1, 0)  # the first new token comes from the pre-fill logits
    parts = ", ".join(f"{k} {v:,}" for k, v in r.cache_parts.items() if v)
    ratio = r.llama_bytes / r.cache_bytes if r.cache_bytes else float("inf")
    return (f"prefill: {r.prompt_tokens} tokens in {r.prefill_s:.3f} s ({r.prompt_tokens / max(r.prefill_s, 1e-9):,.1f}"
            f" tokens/s)\n"
            f"decode: {n_dec} tokens in {r.decode_s:.3f} s ({n_dec / max(r.decode_s, 1e-9):,.1f} tokens/s)\n"
            f"cache: {r.cache_bytes:,} bytes ({parts}); {r.growing_bytes:,} of them grow with the context\n"
            f"a Llama of the same width and depth (L={cfg.n_layer}, C={cfg.n_embd}) would cache "
            f"{r.llama_bytes:,} bytes of K/V for these tokens ({ratio:,.1f}x more)")


def main(args: argparse.Namespace) -> int:
    from gf_train.data.tokenizers import load_tokenizer
    from gf_train.export.load import load_model
    from gf_train.tokenizer_identity import check_prompt_tokenizer

    if args.tokenizer is not None:
        check_prompt_tokenizer(args.model, args.tokenizer)
    loaded = load_model(args.model)
    spec = args.tokenizer or loaded.tokenizer_spec
    if spec is None:
        raise ValueError(f"{args.model} ships no tokenizer; pass --tokenizer rwkv_world or a tokenizer.json")
    tok = load_tokenizer(spec)
    r = generate_text(loaded.model, tok, args.prompt, args.max_new_tokens, args.temperature, args.top_k,
                      args.top_p, args.seed)
    print(r.text, flush=True)
    print(report(r, loaded.config), file=sys.stderr)
    return 0
