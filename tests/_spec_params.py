"""Spec §7.4 parameter counts: the one copy the tests share (tests/model builds these configs and counts,
tests/recipes checks the recipes' closed-form counts and README table against them).

Each entry: the `ModelConfig` fields that differ from the defaults (vocabulary 65536 is implied) and the
count obtained in the spec by instantiating the reference modules (it matches the HF checkpoint sizes).
"""

from __future__ import annotations

SPEC_7_4: list[tuple[dict[str, object], int]] = [
    (dict(arch="goldfinch", n_layer=24, n_embd=2048), 1_445_257_216),
    (dict(arch="goldfinch", n_layer=24, n_embd=2048, kv_compression=1), 1_453_121_536),
    (dict(arch="finch", n_layer=24, n_embd=2048), 1_599_873_024),
    (dict(arch="llama", n_layer=24, n_embd=2048), 1_473_454_080),
    (dict(arch="finch_c2", n_layer=24, n_embd=2048), 1_505_501_184),
    (dict(arch="goldfinch", n_layer=12, n_embd=768), 186_617_856),
    (dict(arch="goldfinch", n_layer=12, n_embd=768, gold_inv_ratio=2), 184_066_560),
    (dict(arch="goldfinch", n_layer=12, n_embd=768, gold_inv_ratio=6), 189_169_152),
    (dict(arch="finch_c2", n_layer=12, n_embd=768), 191_056_896),
    (dict(arch="finch", n_layer=12, n_embd=768), 196_955_136),
    (dict(arch="llama", n_layer=12, n_embd=768), 185_637_888),
]


def spec_count(arch: str, n_layer: int, n_embd: int) -> int | None:
    """The §7.4 count of the default-shaped model (no other field changed), or None when the spec has none."""
    for kw, n in SPEC_7_4:
        if kw == dict(arch=arch, n_layer=n_layer, n_embd=n_embd):
            return n
    return None
