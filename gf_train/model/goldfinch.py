"""The language model for all four architectures (spec §1, §9, §10): layer plan, blocks, the shared
compressed key cache, training forward, pre-fill and decode.

Layer plan: blocks 0 .. g-1 are recurrent ("finch_c2" for GoldFinch/Finch-C2, "finch" for the stock
baseline, "llama" for the transformer baseline); blocks g .. L-1 are "gold" (GoldFinch only, g =
``cfg.first_gold_layer``). Parameter names follow the reference checkpoints (§7.1).

Inference (§10.2): ``prefill`` runs the recurrent blocks over the whole chunk (chunked WKV kernel,
states carried), then either appends c_t = W_a h_t and the token ids to the cache (``compressed``
mode: every call re-derives each GOLD layer's keys/values over all N positions) or computes each
GOLD layer's k_t, v_t for the new positions once and appends them (``kv`` mode), and runs the GOLD
stack only on the last 2·n_gold+1 positions with zero shift states (exact, see README), attending
over the whole cache with a bottom-right aligned causal mask. ``decode`` is the same path for one
token. An HF ``attention_mask`` (left padding) is honoured everywhere (README "Padding"). The cache
passed in is never modified: a new ``ModelCache`` is returned (tensors are shared).
"""

from __future__ import annotations

import copy

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.cache import CACHE_MODES, KVStore, LayerState, ModelCache
from gf_train.model.channel_mix import ChannelMix
from gf_train.model.common import fill_padded, layer_kinds, rms_norm
from gf_train.model.finch import FinchTimeMix
from gf_train.model.finch_c2 import FinchC2TimeMix
from gf_train.model.gold import KV_TILE, GoldKVInputs, GoldTimeMix, gold_kv_inputs
from gf_train.model.llama import LlamaAttention, LlamaFFN
from gf_train.model.loss import lm_loss

_TMIX = {"finch_c2": FinchC2TimeMix, "finch": FinchTimeMix, "gold": GoldTimeMix, "llama": LlamaAttention}


class Block(nn.Module):
    """Pre-norm residual block: h += TMix(ln1(h)); h += CMix(ln2(h)). Block 0 also owns ``ln0``."""

    def __init__(self, cfg: ModelConfig, layer_id: int, kind: str) -> None:
        super().__init__()
        C = cfg.n_embd
        self.layer_id, self.kind = layer_id, kind
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C)
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        self.att = _TMIX[kind](cfg, layer_id)
        self.ffn = LlamaFFN(cfg, layer_id) if kind == "llama" else ChannelMix(cfg, layer_id)

    def forward(
        self, h: Tensor, state: LayerState | None, want_state: bool,
        k: Tensor | None = None, v: Tensor | None = None, key_mask: Tensor | None = None,
    ) -> tuple[Tensor, LayerState | None]:
        """h: [B, T, C]; for GOLD blocks k, v [B, N, H, D] of all N visible positions; key_mask [B, N]
        bool (False = padding; its last T columns are this chunk's) or None -> (h, new state or None).
        A GOLD block's new state keeps k, v (the ``kv`` cache; the caller drops them otherwise)."""
        st = state if state is not None else LayerState()
        new = LayerState()
        mask = None if key_mask is None else key_mask[:, -h.shape[1]:]  # [B, T]
        x = self.ln1(h)
        if self.kind == "gold":
            assert k is not None and v is not None
            x = fill_padded(x, st.att_shift, mask)
            dx, new.att_shift = self.att(x, k, v, st.att_shift, want_state, key_mask)
            new.k, new.v = k, v
        elif self.kind == "llama":
            dx, new.k, new.v = self.att(x, st.k, st.v, want_state, key_mask)
        else:
            x = fill_padded(x, st.att_shift, mask)
            dx, new.att_shift, new.wkv = self.att(x, st.att_shift, st.wkv, want_state, mask)
        h = h + dx
        x = self.ln2(h)
        if self.kind != "llama":
            x = fill_padded(x, st.ffn_shift, mask)
        dx, new.ffn_shift = self.ffn(x, st.ffn_shift, want_state)
        return h + dx, (new if want_state else None)


class GoldFinchLM(nn.Module):
    """GoldFinch / Finch-C2 / Finch / Llama-like LM. Build it with ``build_model`` (which initialises)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, V = cfg.n_embd, cfg.vocab_size
        self.kinds = layer_kinds(cfg)
        self.emb = nn.Embedding(V, C)
        self.blocks = nn.ModuleList([Block(cfg, i, k) for i, k in enumerate(self.kinds)])
        self.ln_out = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)
        self.has_gold = "gold" in self.kinds
        if self.has_gold:
            self.w_kv_cache_a = nn.Linear(C, cfg.kv_dim, bias=False)
            self.w_kv_cache_b = nn.Linear(C + cfg.kv_dim, C, bias=False)

    # ---- pieces ----
    @property
    def first_gold_layer(self) -> int:
        return self.cfg.first_gold_layer

    def embed(self, ids: Tensor) -> Tensor:
        """x_orig = ln0(E[ids]): [B, T] -> [B, T, C]."""
        return self.blocks[0].ln0(self.emb(ids))

    def decompress(self, x_orig: Tensor, c: Tensor) -> Tensor:
        """kc = rms_norm(W_b [x_orig ; c]): x_orig [B, N, C], c [B, N, c] -> [B, N, A] (§5)."""
        return rms_norm(self.w_kv_cache_b(torch.cat([x_orig, c.to(x_orig.dtype)], dim=-1)))

    def _run_block(self, i: int, h: Tensor, k: Tensor | None = None, v: Tensor | None = None,
                   key_mask: Tensor | None = None) -> Tensor:
        block = self.blocks[i]
        if self.cfg.grad_cp and self.training and torch.is_grad_enabled():
            h, _ = torch.utils.checkpoint.checkpoint(block, h, None, False, k, v, key_mask, use_reentrant=False)
        else:
            h, _ = block(h, None, False, k, v, key_mask)
        return h

    def gold_keys_values(self, i: int, inp: GoldKVInputs, pos0: int) -> tuple[Tensor, Tensor]:
        """k, v [B, T, H, D] of GOLD block i for the positions in ``inp`` (first one at pos0)."""
        return self.blocks[i].att.keys_values(inp, pos0)

    # ---- training forward ----
    def forward(self, input_ids: Tensor, targets: Tensor | None = None, *, attention_mask: Tensor | None = None,
                hidden_states: list[Tensor] | None = None) -> Tensor:
        """input_ids [B, T] -> logits [B, T, V]; with targets [B, T] -> scalar mean CE (+ L2Wrap grad).

        attention_mask [B, T] (1 = token, 0 = padding, HF convention): padding changes no Finch state,
        is attended by no real query, and its own logits are meaningless. hidden_states: a list that
        receives the residual stream before every block and after the last (HF output_hidden_states).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        mask = self._check_mask(attention_mask, input_ids.shape)
        g = self.first_gold_layer
        x_orig = self.embed(input_ids)
        h = x_orig
        for i in range(g):
            if hidden_states is not None:
                hidden_states.append(h)
            h = self._run_block(i, h, key_mask=mask)
        if self.has_gold:
            kc = self.decompress(x_orig, self.w_kv_cache_a(h))
            inp = gold_kv_inputs(kc, rms_norm(x_orig), None, mask)
            for i in range(g, self.cfg.n_layer):
                if hidden_states is not None:
                    hidden_states.append(h)
                k, v = self.gold_keys_values(i, inp, 0)
                h = self._run_block(i, h, k, v, mask)
        if hidden_states is not None:
            hidden_states.append(h)
        logits = self.head(self.ln_out(h))
        if targets is None:
            return logits
        return lm_loss(logits, targets, self.cfg.l2wrap)

    # ---- inference ----
    def new_cache(self, batch_size: int, cache_mode: str | None = None,
                  token_dtype: torch.dtype = torch.int32) -> ModelCache:
        """An empty cache (zero states are implicit: None fields mean zeros). cache_mode None = config's."""
        mode = self.cfg.cache_mode if cache_mode is None else cache_mode
        if mode not in CACHE_MODES:
            raise ValueError(f"cache_mode={mode!r} is not one of {CACHE_MODES}")
        if token_dtype in (torch.uint16, torch.int16) and self.cfg.vocab_size > 65536:
            raise ValueError(f"token_dtype={token_dtype} cannot hold vocab_size={self.cfg.vocab_size}")
        return ModelCache(list(self.kinds), [LayerState() for _ in self.kinds], batch_size, mode, token_dtype)

    @torch.no_grad()
    def prefill(
        self, input_ids: Tensor, cache: ModelCache | None = None, *, attention_mask: Tensor | None = None,
        chunk_size: int | None = 1024, cache_mode: str | None = None, token_dtype: torch.dtype = torch.int32,
        gold_window: int | None = None, seed_gold_shift: bool = False,
    ) -> tuple[Tensor, ModelCache]:
        """Consume a prompt chunk: input_ids [B, T] -> (logits of its last token [B, V], new cache).

        attention_mask: [B, T] of this chunk (1 = token, 0 = padding; HF convention, left padding), or
            None = all tokens. The cache remembers the padding for every later call.
        chunk_size: run the recurrent blocks over at most this many tokens at a time, carrying their
            states (bounds activation memory; 1024 was fastest on CPU, see docs/benchmarks.md; None = all).
        cache_mode / token_dtype: only used when ``cache`` is None (see ``ModelCache``; None = config's).
        gold_window: GOLD query window (default 2·n_gold+1, exact with zero shift states);
        seed_gold_shift: seed the first GOLD time mix's shift state from the recurrent stream (then
        2·n_gold suffices). Both exist for the §12.5 tests.
        """
        ids = self._check_ids(input_ids)
        mask = self._check_mask(attention_mask, ids.shape)
        if cache is None:
            cache = self.new_cache(ids.shape[0], cache_mode, token_dtype)
        n_gold = self.cfg.n_layer - self.first_gold_layer
        window = 2 * n_gold + 1 if gold_window is None else gold_window
        if window < 1:
            raise ValueError(f"gold_window must be >= 1, got {window}")
        return self._advance(ids, cache, window, seed_gold_shift, chunk_size, mask)

    @torch.no_grad()
    def decode(self, token_ids: Tensor, cache: ModelCache,
               hidden_states: list[Tensor] | None = None) -> tuple[Tensor, ModelCache]:
        """One step: token_ids [B] or [B, 1] (real tokens) -> (logits [B, V], new cache).

        hidden_states: a list that receives the residual stream [B, 1, C] before every block and
        after the last (as ``forward``'s)."""
        ids = token_ids.view(-1, 1) if token_ids.dim() == 1 else token_ids
        if ids.dim() != 2 or ids.shape[1] != 1:
            raise ValueError(f"decode takes token_ids [B] or [B, 1], got {tuple(token_ids.shape)}")
        return self._advance(ids, cache, None, False, None, None, hidden_states)

    def generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 stop_tokens: list[int] | tuple[int, ...] | None = None, *,
                 attention_mask: Tensor | None = None, cache_mode: str | None = None) -> Tensor:
        """Sample a continuation; see ``gf_train.model.generate.generate``."""
        from gf_train.model.generate import generate

        return generate(self, input_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed, stop_tokens=stop_tokens, attention_mask=attention_mask,
                        cache_mode=cache_mode).sequences

    def _check_ids(self, input_ids: Tensor) -> Tensor:
        ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
        if ids.dim() != 2 or ids.shape[1] < 1:
            raise ValueError(f"input_ids must be [B, T] with T >= 1, got {tuple(input_ids.shape)}")
        if ids.dtype.is_floating_point:
            raise ValueError(f"input_ids must be integer token ids, got {ids.dtype}")
        return ids.long()

    @staticmethod
    def _check_mask(attention_mask: Tensor | None, shape: torch.Size | tuple[int, ...]) -> Tensor | None:
        """HF attention_mask [B, T] (1/0 or bool) -> bool mask, or None when it masks nothing."""
        if attention_mask is None:
            return None
        if tuple(attention_mask.shape) != tuple(shape):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(shape)}; "
                             "pass one 0/1 entry per token")
        mask = attention_mask.bool()
        return None if bool(mask.all()) else mask

    def _advance(self, ids: Tensor, cache: ModelCache, window: int | None, seed: bool,
                 chunk_size: int | None, mask: Tensor | None,
                 hidden: list[Tensor] | None = None) -> tuple[Tensor, ModelCache]:
        """Shared pre-fill / decode path. ids [B, T]; mask [B, T] bool or None; window None = run GOLD
        on all T with carried states; hidden (decode only) collects the residual stream per block."""
        B, T = ids.shape
        if cache.batch_size != B:
            raise ValueError(f"cache holds {cache.batch_size} sequences, input has batch {B}")
        if cache.kinds != self.kinds:
            raise ValueError("cache was built for a different layer plan")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        cache = copy.copy(cache)
        cache.layers = list(cache.layers)
        g, L = self.first_gold_layer, self.cfg.n_layer
        n0 = cache.n_tokens
        cache.extend_mask(mask, T)
        full_mask = cache.mask  # [B, n0 + T] or None
        kv_mode = self.has_gold and cache.mode == "kv"
        new_kv: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(g, L)]
        keep = T if window is None else min(T, window + 1)  # rows of h^(g) the GOLD stack may need
        step = T if chunk_size is None else chunk_size
        tail: Tensor | None = None
        for s in range(0, T, step):
            ids_c = ids[:, s:s + step]
            t = ids_c.shape[1]
            km = None if full_mask is None else full_mask[:, :n0 + s + t]  # keys visible to this chunk
            x_orig = self.embed(ids_c)
            h = x_orig
            for i in range(g):
                if hidden is not None:
                    hidden.append(h)
                h, cache.layers[i] = self.blocks[i](h, cache.layers[i], True, key_mask=km)
            if self.has_gold:
                c = self.w_kv_cache_a(h)  # [B, t, c]
                if kv_mode:  # k_t, v_t need positions t and t-1 only: compute them once, here
                    inp = gold_kv_inputs(self.decompress(x_orig, c), rms_norm(x_orig), cache.gold_prev,
                                         None if km is None else km[:, -t:])
                    cache.gold_prev = (inp.kc[:, -1], inp.xo[:, -1])
                    for j, i in enumerate(range(g, L)):
                        new_kv[j].append(self.gold_keys_values(i, inp, n0 + s))
                else:
                    cache.append_keys(ids_c, c)
            tail = h[:, -keep:] if tail is None else torch.cat([tail, h], dim=1)[:, -keep:]
        assert tail is not None
        cache.n_tokens += T
        if self.has_gold:
            stores: list[KVStore] = []
            kvs = self._gold_kv_all(cache, new_kv, full_mask, stores)
            if window is None or T <= window:
                hg = tail[:, -T:]
                states = [cache.layers[i] for i in range(g, L)]
            else:
                hg = tail[:, -window:]
                states = [LayerState() for _ in range(g, L)]
                if seed and T > window:
                    states[0].att_shift = self.blocks[g].ln1(tail[:, -window - 1])
            for j, i in enumerate(range(g, L)):
                if hidden is not None:
                    hidden.append(hg)
                k, v = kvs[j]
                hg, cache.layers[i] = self.blocks[i](hg, states[j], True, k, v, full_mask)
                if kv_mode:
                    cache.layers[i].kv_store = stores[j]
                else:
                    cache.layers[i].k = cache.layers[i].v = None  # re-derived from c_t at every call
            tail = hg
        if hidden is not None:
            hidden.append(tail[:, -1:])
        logits = self.head(self.ln_out(tail[:, -1]))  # [B, V]
        return logits, cache

    def _gold_kv_all(self, cache: ModelCache, new_kv: list[list[tuple[Tensor, Tensor]]],
                     full_mask: Tensor | None, stores: list[KVStore]) -> list[tuple[Tensor, Tensor]]:
        """Every GOLD layer's k, v [B, N, H, D] over all N positions of the (already extended) cache;
        in ``kv`` mode ``stores`` receives each layer's ``KVStore``."""
        g, L = self.first_gold_layer, self.cfg.n_layer
        out = []
        if cache.mode == "kv":  # append the new rows to each layer's store (no copy of the old ones)
            for j, i in enumerate(range(g, L)):
                st = cache.layers[i]
                store, k, v = st.kv_store, st.k, st.v
                for k_new, v_new in new_kv[j]:
                    store, k, v = KVStore.append(store, k, v, k_new, v_new)
                stores.append(store)
                out.append((k, v))
            return out
        # compressed: xo = rms_norm(x_orig) from the ids and kc = rms_norm(W_b [x_orig; c]) for all N
        # positions, with W_b [x_orig; c] = W_b[:, :C] x_orig + W_b[:, C:] c and both id-only terms memoised
        assert cache.keys is not None
        ids, keys = cache.token_ids_long(), cache.keys
        if full_mask is None and ids.shape[1] > KV_TILE:
            return self._gold_kv_tiled(ids, keys)
        xo, xb = self._token_rows(ids)
        inp = gold_kv_inputs(self._kc_rows(xb, keys), xo, None, full_mask)
        return [self.gold_keys_values(i, inp, 0) for i in range(g, L)]

    def _kc_rows(self, xb: Tensor, keys: Tensor) -> Tensor:
        """kc = rms_norm(W_b[:, :C] x_orig + W_b[:, C:] c): xb [B, n, A] (memoised first term), keys [B, n, c]."""
        wc = self.w_kv_cache_b.weight[:, self.cfg.n_embd:]  # [A, c]
        return rms_norm(torch.addmm(xb.flatten(0, 1), keys.to(xb.dtype).flatten(0, 1), wc.t()).view_as(xb))

    def _gold_kv_tiled(self, ids: Tensor, keys: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The compressed mode's k, v of every GOLD layer without padding, a tile of ``KV_TILE`` positions at
        a time through every layer: kc, rms_norm(x_orig) and their shifts are built per tile (one row of
        overlap for the token shift) and read by all GOLD layers while they are still in the CPU caches,
        instead of streaming [N, C] arrays through memory once per op (the step is memory-bound)."""
        g, L = self.first_gold_layer, self.cfg.n_layer
        B, N = ids.shape
        H, D = self.cfg.n_head, self.cfg.head_size
        out = [(keys.new_empty(B, N, H, D, dtype=self.emb.weight.dtype),
                keys.new_empty(B, N, H, D, dtype=self.emb.weight.dtype)) for _ in range(g, L)]
        for s in range(0, N, KV_TILE):
            e, lo = min(s + KV_TILE, N), max(s - 1, 0)
            xo, xb = self._token_rows(ids[:, lo:e])
            kc = self._kc_rows(xb, keys[:, lo:e])
            if s == 0:  # zero row before position 0
                inp = gold_kv_inputs(kc, xo, None, None)
            else:  # row lo = s - 1 is the previous position of row s
                kc, pk, xo, px = kc[:, 1:], kc[:, :-1], xo[:, 1:], xo[:, :-1]
                inp = GoldKVInputs(kc, pk - kc, xo, px - xo)
            for j, i in enumerate(range(g, L)):
                k, v = self.blocks[i].att.keys_values_rows(inp, s)
                out[j][0][:, s:e], out[j][1][:, s:e] = k, v
        return out

    def _token_rows(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids [B, N] -> rms_norm(x_orig) [B, N, C] and W_b[:, :C] x_orig [B, N, A] (x_orig = ln0(E[ids]);
        inference only).

        Both depend on the token id alone, so rows are computed once per id and memoised in a [V, *]
        table (a function of the weights, like a folded weight: nothing per position or sequence). The
        table is rebuilt whenever a weight it reads is replaced or modified in place (tensor versions),
        or the dtype / device changes. Saves the N x C x A matmul and an RMS norm over [N, C] of every
        compressed-mode step."""
        C, V = self.cfg.n_embd, self.cfg.vocab_size
        if self.emb.weight.device.type == "meta":  # shapes only (memory accounting tests): no memo
            x = self.embed(ids)
            return rms_norm(x), x @ self.w_kv_cache_b.weight[:, :C].t()
        ln0 = self.blocks[0].ln0
        weights = (self.emb.weight, ln0.weight, ln0.bias, self.w_kv_cache_b.weight)
        key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        memo = getattr(self, "_row_memo", None)
        if memo is None or memo[0] != key:
            w = self.emb.weight
            memo = (key, w.new_empty(V, C), w.new_empty(V, self.w_kv_cache_b.weight.shape[0]),
                    torch.zeros(V, dtype=torch.bool, device=w.device))
            self._row_memo = memo
        _, txo, tb, known = memo
        flat = ids.reshape(-1)
        new = flat[~known[flat]].unique()
        if new.numel():
            x = self.embed(new)  # [n, C]
            txo[new] = rms_norm(x)
            tb[new] = x @ self.w_kv_cache_b.weight[:, :C].t()
            known[new] = True
        return txo[ids], tb[ids]
