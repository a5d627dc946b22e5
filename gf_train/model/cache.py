"""Inference state (spec §10.1): per-layer recurrent/shift states, the GOLD caches, token ids, padding.

Owns the cache objects and their memory accounting. Two cache modes for the GOLD layers
(``CACHE_MODES``, chosen by ``ModelConfig.cache_mode``, default ``"kv"``):

- ``"compressed"`` (the paper's cache, §5, §13.3): per context token the c = C/r wide compressed key
  c_t plus the token id, nothing per layer; every call re-derives kc and each GOLD layer's k, v over
  all N positions (O(N) work per layer and step).
- ``"kv"``: each GOLD layer keeps its own k, v (2·A numbers per token per GOLD layer), appended one
  position per step (a GOLD layer's k_t, v_t depend on positions t and t-1 only), so decode work per
  GOLD layer is one row of keys/values plus attention, like a Llama layer.

Finch layers keep a fixed-size state; Llama layers keep a classic per-layer K/V cache (post-RoPE keys).
A left-padded batch stores its padding mask [B, N] (False = padding) so later steps skip those keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

CACHE_MODES = ("compressed", "kv")


def _nbytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


class KVStore:
    """Append-only key/value storage [B, H, capacity, D] shared by successive caches of one sequence.

    Why: appending with ``torch.cat`` copies the whole K/V at every decode step (O(N) bytes per step and
    layer: 40% of a GoldFinch ``kv`` decode step at 4k context on CPU). Rows are written once into
    spare capacity that grows by 1.5x; k, v handed out are [B, N, H, D] views of the first N rows. The
    [B, H, N, D] layout makes each head's keys contiguous for attention (SDPA on CPU ~25% faster than
    over [B, N, H, D]). Old caches stay valid: their views cover rows that are never written again.
    Only the newest cache appends in place (``filled`` == its length); continuing an older cache
    (a branch) copies its rows into a new store first.
    """

    __slots__ = ("k", "v", "filled")

    def __init__(self, like: Tensor, n_rows: int) -> None:
        B, _, H, D = like.shape
        cap = max(64, -(-n_rows * 3 // 2 // 64) * 64)  # 1.5x, in whole 64-row blocks
        self.k = like.new_empty(B, H, cap, D)
        self.v = like.new_empty(B, H, cap, D)
        self.filled = 0

    @staticmethod
    def append(store: KVStore | None, k_old: Tensor | None, v_old: Tensor | None, k_new: Tensor,
               v_new: Tensor) -> tuple[KVStore, Tensor, Tensor]:
        """k/v_old [B, N, H, D] (None = empty), k/v_new [B, T, H, D] -> (store, k, v [B, N + T, H, D])."""
        n = 0 if k_old is None else k_old.shape[1]
        t = k_new.shape[1]
        if (store is None or store.filled != n or store.k.shape[2] < n + t or store.k.dtype != k_new.dtype
                or store.k.device != k_new.device or (n and k_old.data_ptr() != store.k.data_ptr())):
            fresh = KVStore(k_new, n + t)
            if n:
                assert k_old is not None and v_old is not None
                fresh.k[:, :, :n] = k_old.transpose(1, 2)
                fresh.v[:, :, :n] = v_old.transpose(1, 2)
            store = fresh
        store.k[:, :, n:n + t] = k_new.transpose(1, 2)
        store.v[:, :, n:n + t] = v_new.transpose(1, 2)
        store.filled = n + t
        return store, store.k[:, :, :n + t].transpose(1, 2), store.v[:, :, :n + t].transpose(1, 2)


@dataclass
class LayerState:
    """State carried by one block between calls (fields unused by a layer type stay None).

    att_shift / ffn_shift: [B, C] last input of the time / channel mix (§2.1).
    wkv: [B, H, K, V] fp32 WKV state (Finch-C2 / Finch layers).
    k, v: [B, N, H, D] per-layer key/value cache (Llama layers; GOLD layers in ``kv`` mode).
    kv_store: the append-only storage behind a GOLD layer's k, v in ``kv`` mode (``KVStore``), or None.
    nbytes counts the live k, v (N positions), not the store's spare capacity.
    """

    att_shift: Tensor | None = None
    ffn_shift: Tensor | None = None
    wkv: Tensor | None = None
    k: Tensor | None = None
    v: Tensor | None = None
    kv_store: KVStore | None = None

    def nbytes(self) -> int:
        return sum(_nbytes(t) for t in (self.att_shift, self.ffn_shift, self.wkv, self.k, self.v))


@dataclass
class ModelCache:
    """Everything needed to continue a batch of sequences.

    kinds[l] is the layer type of block l ("finch_c2", "finch", "gold", "llama").
    mode: "compressed" or "kv" (GoldFinch GOLD layers; see the module docstring).
    token_ids: [B, N] (GoldFinch "compressed" only; stored as ``token_dtype``).
    keys: [B, N, c] compressed keys c_t (GoldFinch "compressed" only).
    gold_prev: (kc [B, A], rms_norm(x_orig) [B, C]) of the last real position (GoldFinch "kv" only:
        the token shift of the next position's keys/values).
    mask: [B, N] bool, False at padding positions; None while every position is real.
    """

    kinds: list[str]
    layers: list[LayerState]
    batch_size: int
    mode: str = "kv"
    token_dtype: torch.dtype = torch.int32
    token_ids: Tensor | None = None
    keys: Tensor | None = None
    n_tokens: int = 0
    gold_prev: tuple[Tensor, Tensor] | None = None
    mask: Tensor | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in CACHE_MODES:
            raise ValueError(f"cache_mode={self.mode!r} is not one of {CACHE_MODES}")
        if self.token_dtype not in (torch.int32, torch.int64, torch.uint16, torch.int16):
            raise ValueError(f"token_dtype={self.token_dtype} must be int32, int64, uint16 or int16")

    @property
    def has_key_cache(self) -> bool:
        return "gold" in self.kinds

    def extend_mask(self, mask: Tensor | None, T: int) -> None:
        """Record the padding of T new positions (mask [B, T] bool or None = all real)."""
        if mask is None and self.mask is None:
            return
        B = self.batch_size
        old = self.mask if self.mask is not None else torch.ones(B, self.n_tokens, dtype=torch.bool,
                                                                 device=mask.device if mask is not None else None)
        new = mask.bool() if mask is not None else torch.ones(B, T, dtype=torch.bool, device=old.device)
        self.mask = torch.cat([old, new.to(old.device)], dim=1)

    def append_keys(self, token_ids: Tensor, keys: Tensor) -> None:
        """Append a chunk: token_ids [B, T] (long), keys [B, T, c]."""
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
        out = {"finch_state": 0, "gold_state": 0, "gold_kv": 0, "llama_kv": 0, "key_cache": 0,
               "token_ids": 0, "mask": _nbytes(self.mask)}
        for kind, st in zip(self.kinds, self.layers):
            if kind == "gold":
                out["gold_kv"] += _nbytes(st.k) + _nbytes(st.v)
                out["gold_state"] += st.nbytes() - _nbytes(st.k) - _nbytes(st.v)
            elif kind == "llama":
                out["llama_kv"] += st.nbytes()
            else:
                out["finch_state"] += st.nbytes()
        if self.gold_prev is not None:
            out["gold_state"] += sum(_nbytes(t) for t in self.gold_prev)
        out["key_cache"] = _nbytes(self.keys)
        out["token_ids"] = _nbytes(self.token_ids)
        return out

    def nbytes(self) -> int:
        return sum(self.nbytes_by_type().values())

    def nbytes_growing(self) -> int:
        """Bytes of the parts that grow with the context length N (key cache, ids, K/V, padding mask)."""
        d = self.nbytes_by_type()
        return d["key_cache"] + d["token_ids"] + d["llama_kv"] + d["gold_kv"] + d["mask"]

    def select(self, index: Tensor) -> ModelCache:
        """A cache for a subset / reordering of the batch rows (e.g. beam search or early stopping)."""

        def sel(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, index.to(t.device))

        layers = [LayerState(*(sel(getattr(s, f)) for f in ("att_shift", "ffn_shift", "wkv", "k", "v")))
                  for s in self.layers]
        prev = None if self.gold_prev is None else (sel(self.gold_prev[0]), sel(self.gold_prev[1]))
        return ModelCache(self.kinds, layers, int(index.numel()), self.mode, self.token_dtype,
                          sel(self.token_ids), sel(self.keys), self.n_tokens, prev, sel(self.mask))


def growth_bytes_per_token(kinds: list[str], n_embd: int, kv_dim: int, elem_bytes: int,
                           token_bytes: int, mode: str = "compressed") -> int:
    """Formula for the cache growth per context token without padding (§10.4): GoldFinch
    "compressed" c entries + one id, GoldFinch "kv" 2·C entries per GOLD layer, a Llama 2·C entries
    per layer, a Finch nothing."""
    if "llama" in kinds:
        return 2 * n_embd * elem_bytes * sum(k == "llama" for k in kinds)
    if "gold" in kinds:
        if mode == "kv":
            return 2 * n_embd * elem_bytes * sum(k == "gold" for k in kinds)
        return kv_dim * elem_bytes + token_bytes
    return 0
