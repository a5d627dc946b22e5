"""Inference state (spec §10.1): per-layer recurrent/shift states, the shared key cache, token ids.

Owns the cache objects and their memory accounting. The GoldFinch cache stores, per context token,
the c = C/r wide compressed key c_t plus the token id (§5, §13.3); ``key_mode="decompressed"`` trades
memory for speed by storing kc_t (A wide) instead. Finch layers keep a fixed-size state; Llama layers
keep a classic per-layer K/V cache (post-RoPE keys) for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

KEY_MODES = ("compressed", "decompressed")


def _nbytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


@dataclass
class LayerState:
    """State carried by one block between calls (fields unused by a layer type stay None).

    att_shift / ffn_shift: [B, C] last input of the time / channel mix (§2.1).
    wkv: [B, H, K, V] fp32 WKV state (Finch-C2 / Finch layers).
    k, v: [B, N, H, D] per-layer key/value cache (Llama layers only).
    """

    att_shift: Tensor | None = None
    ffn_shift: Tensor | None = None
    wkv: Tensor | None = None
    k: Tensor | None = None
    v: Tensor | None = None

    def nbytes(self) -> int:
        return sum(_nbytes(t) for t in (self.att_shift, self.ffn_shift, self.wkv, self.k, self.v))


@dataclass
class ModelCache:
    """Everything needed to continue a batch of sequences.

    kinds[l] is the layer type of block l ("finch_c2", "finch", "gold", "llama").
    token_ids: [B, N] (GoldFinch only; stored as ``token_dtype``).
    keys: [B, N, c] compressed keys c_t (key_mode "compressed") or [B, N, A] kc_t ("decompressed").
    """

    kinds: list[str]
    layers: list[LayerState]
    batch_size: int
    key_mode: str = "compressed"
    token_dtype: torch.dtype = torch.int32
    token_ids: Tensor | None = None
    keys: Tensor | None = None
    n_tokens: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.key_mode not in KEY_MODES:
            raise ValueError(f"key_mode={self.key_mode!r} is not one of {KEY_MODES}")
        if self.token_dtype not in (torch.int32, torch.int64, torch.uint16, torch.int16):
            raise ValueError(f"token_dtype={self.token_dtype} must be int32, int64, uint16 or int16")

    @property
    def has_key_cache(self) -> bool:
        return "gold" in self.kinds

    def append_keys(self, token_ids: Tensor, keys: Tensor) -> None:
        """Append a chunk: token_ids [B, T] (long), keys [B, T, c or A]."""
        assert token_ids.shape[:2] == keys.shape[:2]
        ids = token_ids.to(self.token_dtype)
        if self.token_ids is None:
            self.token_ids, self.keys = ids, keys
        else:
            assert self.keys is not None
            self.token_ids = torch.cat([self.token_ids, ids], dim=1)
            self.keys = torch.cat([self.keys, keys.to(self.keys.dtype)], dim=1)

    def token_ids_long(self) -> Tensor:
        assert self.token_ids is not None
        return self.token_ids.to(torch.int64)

    # ---- memory accounting (§10.4) ----
    def nbytes_by_type(self) -> dict[str, int]:
        """Live bytes per part: fixed-size recurrent state per layer type and the growing caches."""
        out = {"finch_state": 0, "gold_state": 0, "llama_kv": 0, "key_cache": 0, "token_ids": 0}
        for kind, st in zip(self.kinds, self.layers):
            if kind == "gold":
                out["gold_state"] += st.nbytes()
            elif kind == "llama":
                out["llama_kv"] += st.nbytes()
            else:
                out["finch_state"] += st.nbytes()
        out["key_cache"] = _nbytes(self.keys)
        out["token_ids"] = _nbytes(self.token_ids)
        return out

    def nbytes(self) -> int:
        return sum(self.nbytes_by_type().values())

    def nbytes_growing(self) -> int:
        """Bytes of the parts that grow with the context length N (key cache, ids, Llama K/V)."""
        d = self.nbytes_by_type()
        return d["key_cache"] + d["token_ids"] + d["llama_kv"]

    def select(self, index: Tensor) -> ModelCache:
        """A cache for a subset / reordering of the batch rows (e.g. beam search or early stopping)."""

        def sel(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, index.to(t.device))

        layers = [LayerState(*(sel(getattr(s, f)) for f in ("att_shift", "ffn_shift", "wkv", "k", "v")))
                  for s in self.layers]
        return ModelCache(self.kinds, layers, int(index.numel()), self.key_mode, self.token_dtype,
                          sel(self.token_ids), sel(self.keys), self.n_tokens)


def growth_bytes_per_token(kinds: list[str], n_embd: int, kv_dim: int, elem_bytes: int,
                           token_bytes: int, key_mode: str = "compressed") -> int:
    """Formula for the cache growth per context token (§10.4): GoldFinch c (or A) entries + one id,
    a Llama 2·C entries per layer, a Finch nothing."""
    if "llama" in kinds:
        return 2 * n_embd * elem_bytes * sum(k == "llama" for k in kinds)
    if "gold" in kinds:
        width = kv_dim if key_mode == "compressed" else n_embd
        return width * elem_bytes + token_bytes
    return 0
