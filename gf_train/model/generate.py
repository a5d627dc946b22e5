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
