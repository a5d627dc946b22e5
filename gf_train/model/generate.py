"""Autoregressive sampling on top of ``prefill`` / ``decode`` (greedy, temperature, top-k, top-p).

Owns the sampling rules only; all model state lives in the ``ModelCache``.
"""

from __future__ import annotations

import torch
from torch import Tensor


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


@torch.no_grad()
def generate(model: torch.nn.Module, input_ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             stop_tokens: list[int] | tuple[int, ...] | None = None) -> Tensor:
    """Prompt [B, T] (or [T]) -> LongTensor [B, T + n] with n <= max_new_tokens new tokens.

    A sequence that samples a stop token keeps it and is padded with that token afterwards;
    generation ends early once every sequence has stopped. ``seed`` makes sampling reproducible.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    ids = ids.long()
    if max_new_tokens == 0:
        return ids
    gen = None
    if seed is not None:
        gen = torch.Generator(device=ids.device)
        gen.manual_seed(seed)
    stops = torch.tensor(list(stop_tokens or []), dtype=torch.long, device=ids.device)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    fill = torch.zeros_like(done, dtype=torch.long)
    logits, cache = model.prefill(ids)
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
    return torch.cat(out, dim=1)
