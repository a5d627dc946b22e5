"""The one generation loop (CLI ``gf-train generate``, ``model.generate``, benchmarks) on top of
``prefill`` / ``decode``, the sampling rules (greedy, temperature, top-k, top-p) and their validation.

Owns sampling and the loop; all model state lives in the ``ModelCache``. Takes typed arguments only
(argument parsing lives with the CLI). A batch may be left-padded (HF ``attention_mask``): each row
then generates exactly what it would alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor


def check_generation_args(max_new_tokens: int, temperature: float, top_k: int | None,
                          top_p: float | None) -> None:
    """One-line ValueErrors for out-of-range generation arguments."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature >= 0:  # also rejects NaN
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")


def sample_next(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> Tensor:
    """logits [B, V] -> token ids [B]. temperature 0 = greedy (arg-max; top-k/top-p irrelevant)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    z = logits.float() / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]  # [B, 1]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        probs = torch.softmax(sorted_z, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly above each token
        drop_sorted = before >= top_p  # never drops the top token (before = 0 < top_p)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        z = z.masked_fill(drop, float("-inf"))
    probs = torch.softmax(z, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass
class GenerationOutput:
    """sequences [B, T + n] (prompt incl. its padding, then n <= max_new_tokens new tokens; a row that
    stopped keeps its stop token and repeats it); new_tokens[b]: row b's new tokens up to and including
    its stop token; timings of the pre-fill and the decode steps; the final cache's bytes per part."""

    sequences: Tensor
    new_tokens: list[list[int]]
    prompt_tokens: int
    prefill_s: float
    decode_s: float
    cache_mode: str
    cache_bytes: int
    cache_parts: dict[str, int] = field(default_factory=dict)
    growing_bytes: int = 0
    context_tokens: int = 0


@torch.no_grad()
def generate(model: torch.nn.Module, input_ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             stop_tokens: list[int] | tuple[int, ...] | None = None, attention_mask: Tensor | None = None,
             cache_mode: str | None = None) -> GenerationOutput:
    """Prompt [B, T] (or [T]), optionally left-padded (attention_mask [B, T], 1 = token, 0 = padding)
    -> ``GenerationOutput``. temperature 0 = greedy; top_k 0 / None and top_p 1 / None = off.

    A sequence that samples a stop token keeps it and is padded with that token afterwards;
    generation ends early once every sequence has stopped. ``seed`` makes sampling reproducible.
    cache_mode: "kv" or "compressed" (None = the model config's).
    """
    check_generation_args(max_new_tokens, temperature, top_k, top_p)
    top_k = top_k or None
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    ids = ids.long()
    if attention_mask is not None:
        attention_mask = attention_mask.view(ids.shape) if attention_mask.dim() == 1 else attention_mask
        if bool((attention_mask.sum(dim=-1) == 0).any()):
            raise ValueError("a prompt is empty (its attention_mask row has no 1); give every row a token")
    gen = None
    if seed is not None:
        gen = torch.Generator(device=ids.device)
        gen.manual_seed(seed)
    stops = torch.tensor(list(stop_tokens or []), dtype=torch.long, device=ids.device)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    fill = torch.zeros_like(done, dtype=torch.long)
    t0 = time.perf_counter()
    logits, cache = model.prefill(ids, attention_mask=attention_mask, cache_mode=cache_mode)
    t1 = time.perf_counter()
    out = [ids]
    for step in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, gen)  # [B]
        nxt = torch.where(done, fill, nxt)
        out.append(nxt.unsqueeze(1))
        if stops.numel():
            hit = torch.isin(nxt, stops) & ~done
            fill = torch.where(hit, nxt, fill)
            done = done | hit
            if bool(done.all()):
                break
        if step + 1 < max_new_tokens:
            logits, cache = model.decode(nxt, cache)
    t2 = time.perf_counter()
    seqs = torch.cat(out, dim=1)
    T = ids.shape[1]
    new_tokens = []
    for row in seqs[:, T:].tolist():
        hits = [j for j, tok in enumerate(row) if stops.numel() and tok in set(stops.tolist())]
        new_tokens.append(row[: hits[0] + 1] if hits else row)
    return GenerationOutput(seqs, new_tokens, T, t1 - t0, t2 - t1, cache.mode, cache.nbytes(),
                            cache.nbytes_by_type(), cache.nbytes_growing(), cache.n_tokens)


@torch.no_grad()
def continue_cache(model: torch.nn.Module, input_ids: Tensor, cache: object | None,
                   attention_mask: Tensor | None = None, cache_mode: str | None = None) -> tuple[Tensor, object]:
    """One step of an external loop (the HF wrapper's forward): pre-fill input_ids [B, T] into a new
    cache (cache None) or continue ``cache`` with them -> (logits [B, T', V], cache), T' = 1 for a fresh
    pre-fill (its last position) and T for a continuation (one decode step per token).

    attention_mask: [B, T] for these tokens (HF passes the whole [B, N + T] mask: its last T columns
    are used); a continuation's tokens must be real (HF appends 1s for generated tokens)."""
    T = input_ids.shape[1]
    mask = None if attention_mask is None else attention_mask[:, -T:]
    if cache is None:
        last, cache = model.prefill(input_ids, attention_mask=mask, cache_mode=cache_mode)
        return last.unsqueeze(1), cache
    if mask is not None and not bool(mask.bool().all()):
        raise ValueError("tokens after the prompt cannot be padding; left-pad the prompt instead")
    logits = []
    for t in range(T):
        out, cache = model.decode(input_ids[:, t], cache)
        logits.append(out)
    return torch.stack(logits, dim=1), cache


# ---- text in, text out (``gf-train generate``, the quickstart) ----
def left_pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token id lists -> ids [B, T] and attention_mask [B, T] (1 = token, 0 = padding on the left)."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("a prompt encodes to no tokens; pass non-empty prompts")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, T - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[b, T - len(r):] = 1
    return ids, mask


@dataclass
class TextGeneration:
    """Texts (prompt + continuation) of a batch and the run's ``GenerationOutput``."""

    texts: list[str]
    prompt_tokens: list[int]
    out: GenerationOutput


def generate_texts(model: torch.nn.Module, tok: object, prompts: list[str], max_new_tokens: int = 64,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   seed: int | None = None, cache_mode: str | None = None) -> TextGeneration:
    """Encode ``prompts`` with ``tok`` (encode / decode / eos_id), generate them as one left-padded batch
    (stopping each at the tokenizer's EOS) and decode the continuations."""
    if not prompts:
        raise ValueError("no prompt given; pass --prompt TEXT (repeatable) or --prompts-file FILE")
    check_generation_args(max_new_tokens, temperature, top_k, top_p)
    rows = [list(tok.encode(p)) for p in prompts]  # type: ignore[attr-defined]
    for p, r in zip(prompts, rows):
        if not r:
            raise ValueError(f"the prompt {p!r} encodes to no tokens; pass non-empty prompts")
    eos = getattr(tok, "eos_id", None)
    ids, mask = left_pad(rows, 0 if eos is None else int(eos))
    out = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                   stop_tokens=None if eos is None else [int(eos)], attention_mask=mask, cache_mode=cache_mode)
    texts = [p + tok.decode([i for i in new if i != eos])  # type: ignore[attr-defined]
             for p, new in zip(prompts, out.new_tokens)]
    return TextGeneration(texts, [len(r) for r in rows], out)


def cache_bytes_per_token(cfg: object) -> dict[str, int]:
    """Growth of the cache per context token and sequence, per GOLD cache mode and for a Llama of the
    same width and depth (2·L·C entries, spec §10.4), in the model's parameter dtype (fp32 here)."""
    from gf_train.model.cache import growth_bytes_per_token
    from gf_train.model.common import layer_kinds

    kinds = layer_kinds(cfg)  # type: ignore[arg-type]
    C, c = cfg.n_embd, cfg.kv_dim  # type: ignore[attr-defined]
    out = {m: growth_bytes_per_token(kinds, C, c, 4, 4, m) for m in ("compressed", "kv")}
    out["llama"] = 2 * cfg.n_layer * C * 4  # type: ignore[attr-defined]
    return out


def report(r: TextGeneration, cfg: object) -> str:
    """The stderr summary of ``gf-train generate``: speeds, cache bytes per part and per mode."""
    o = r.out
    B = len(r.texts)
    n_dec = max(len(o.sequences[0]) - o.prompt_tokens - 1, 0)  # the first new token comes from the pre-fill
    parts = ", ".join(f"{k} {v:,}" for k, v in o.cache_parts.items() if v)
    per_tok = cache_bytes_per_token(cfg)
    llama = per_tok["llama"] * o.context_tokens * B
    ratio = llama / o.cache_bytes if o.cache_bytes else float("inf")
    n_prompt = sum(r.prompt_tokens)
    return (f"prefill: {n_prompt} tokens ({B} prompts) in {o.prefill_s:.3f} s "
            f"({n_prompt / max(o.prefill_s, 1e-9):,.1f} tokens/s)\n"
            f"decode: {n_dec} steps x {B} sequences in {o.decode_s:.3f} s "
            f"({n_dec * B / max(o.decode_s, 1e-9):,.1f} tokens/s)\n"
            f"cache ({o.cache_mode} mode): {o.cache_bytes:,} bytes ({parts}); {o.growing_bytes:,} of them grow "
            f"with the context\n"
            f"cache growth per context token and sequence: compressed {per_tok['compressed']:,} B, "
            f"kv {per_tok['kv']:,} B, Llama {per_tok['llama']:,} B (fp32)\n"
            f"a Llama of the same width and depth (L={cfg.n_layer}, C={cfg.n_embd}) would cache "  # type: ignore[attr-defined]
            f"{llama:,} bytes of K/V for these tokens ({ratio:,.1f}x more)")
