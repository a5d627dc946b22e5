"""The language model for all four architectures (spec §1, §9, §10): layer plan, blocks, the shared
compressed key cache, training forward, pre-fill and decode.

Layer plan: blocks 0 .. g-1 are recurrent ("finch_c2" for GoldFinch/Finch-C2, "finch" for the stock
baseline, "llama" for the transformer baseline); blocks g .. L-1 are "gold" (GoldFinch only, g =
``cfg.first_gold_layer``). Parameter names follow the reference checkpoints (§7.1).

Inference (§10.2): ``prefill`` runs the recurrent blocks over the whole chunk (chunked WKV kernel,
states carried), appends c_t = W_a h_t and the token ids to the cache, and runs the GOLD stack only
on the last 2·n_gold+1 positions with zero shift states (exact, see README), attending over the
whole cache with a bottom-right aligned causal mask. ``decode`` is the same path for one token.
The cache passed in is never modified: a new ``ModelCache`` is returned (tensors are shared).
"""

from __future__ import annotations

import copy

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.cache import KEY_MODES, LayerState, ModelCache
from gf_train.model.channel_mix import ChannelMix
from gf_train.model.common import rms_norm
from gf_train.model.finch import FinchTimeMix
from gf_train.model.finch_c2 import FinchC2TimeMix
from gf_train.model.gold import GoldTimeMix
from gf_train.model.llama import LlamaAttention, LlamaFFN
from gf_train.model.loss import lm_loss

_TMIX = {"finch_c2": FinchC2TimeMix, "finch": FinchTimeMix, "gold": GoldTimeMix, "llama": LlamaAttention}


def layer_kinds(cfg: ModelConfig) -> list[str]:
    """Time-mix type of every block (the layer plan of §1 / §9)."""
    base = {"goldfinch": "finch_c2", "finch_c2": "finch_c2", "finch": "finch", "llama": "llama"}[cfg.arch]
    g = cfg.first_gold_layer
    return [base if i < g else "gold" for i in range(cfg.n_layer)]


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
        kc: Tensor | None = None, x_orig: Tensor | None = None,
    ) -> tuple[Tensor, LayerState | None]:
        """h: [B, T, C]; kc [B, N, A] and x_orig [B, N, C] for GOLD blocks -> (h, new state or None)."""
        st = state if state is not None else LayerState()
        new = LayerState()
        x = self.ln1(h)
        if self.kind == "gold":
            assert kc is not None and x_orig is not None
            dx, new.att_shift = self.att(x, kc, x_orig, st.att_shift, want_state)
        elif self.kind == "llama":
            dx, new.k, new.v = self.att(x, st.k, st.v, want_state)
        else:
            dx, new.att_shift, new.wkv = self.att(x, st.att_shift, st.wkv, want_state)
        h = h + dx
        dx, new.ffn_shift = self.ffn(self.ln2(h), st.ffn_shift, want_state)
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

    def _run_block(self, i: int, h: Tensor, kc: Tensor | None = None, x_orig: Tensor | None = None) -> Tensor:
        block = self.blocks[i]
        if self.cfg.grad_cp and self.training and torch.is_grad_enabled():
            h, _ = torch.utils.checkpoint.checkpoint(block, h, None, False, kc, x_orig, use_reentrant=False)
        else:
            h, _ = block(h, None, False, kc, x_orig)
        return h

    # ---- training forward ----
    def forward(self, input_ids: Tensor, targets: Tensor | None = None) -> Tensor:
        """input_ids [B, T] -> logits [B, T, V]; with targets [B, T] -> scalar mean CE (+ L2Wrap grad)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        g = self.first_gold_layer
        x_orig = self.embed(input_ids)
        h = x_orig
        for i in range(g):
            h = self._run_block(i, h)
        if self.has_gold:
            kc = self.decompress(x_orig, self.w_kv_cache_a(h))
            for i in range(g, self.cfg.n_layer):
                h = self._run_block(i, h, kc, x_orig)
        logits = self.head(self.ln_out(h))
        if targets is None:
            return logits
        return lm_loss(logits, targets, self.cfg.l2wrap)

    # ---- inference ----
    def new_cache(self, batch_size: int, key_mode: str = "compressed",
                  token_dtype: torch.dtype = torch.int32) -> ModelCache:
        """An empty cache (zero states are implicit: None fields mean zeros)."""
        if key_mode not in KEY_MODES:
            raise ValueError(f"key_mode={key_mode!r} is not one of {KEY_MODES}")
        if token_dtype in (torch.uint16, torch.int16) and self.cfg.vocab_size > 65536:
            raise ValueError(f"token_dtype={token_dtype} cannot hold vocab_size={self.cfg.vocab_size}")
        return ModelCache(list(self.kinds), [LayerState() for _ in self.kinds], batch_size, key_mode, token_dtype)

    @torch.no_grad()
    def prefill(
        self, input_ids: Tensor, cache: ModelCache | None = None, *, chunk_size: int | None = 1024,
        key_mode: str = "compressed", token_dtype: torch.dtype = torch.int32,
        gold_window: int | None = None, seed_gold_shift: bool = False,
    ) -> tuple[Tensor, ModelCache]:
        """Consume a prompt chunk: input_ids [B, T] -> (logits of its last token [B, V], new cache).

        chunk_size: run the recurrent blocks over at most this many tokens at a time, carrying their
            states (bounds activation memory; 1024 was fastest on CPU, see docs/benchmarks.md; None = all).
        key_mode / token_dtype: only used when ``cache`` is None (see ``ModelCache``).
        gold_window: GOLD query window (default 2·n_gold+1, exact with zero shift states);
        seed_gold_shift: seed the first GOLD time mix's shift state from the recurrent stream (then
        2·n_gold suffices). Both exist for the §12.5 tests.
        """
        ids = self._check_ids(input_ids)
        if cache is None:
            cache = self.new_cache(ids.shape[0], key_mode, token_dtype)
        n_gold = self.cfg.n_layer - self.first_gold_layer
        window = 2 * n_gold + 1 if gold_window is None else gold_window
        if window < 1:
            raise ValueError(f"gold_window must be >= 1, got {window}")
        return self._advance(ids, cache, window, seed_gold_shift, chunk_size)

    @torch.no_grad()
    def decode(self, token_ids: Tensor, cache: ModelCache) -> tuple[Tensor, ModelCache]:
        """One step: token_ids [B] or [B, 1] -> (logits [B, V], new cache)."""
        ids = token_ids.view(-1, 1) if token_ids.dim() == 1 else token_ids
        if ids.dim() != 2 or ids.shape[1] != 1:
            raise ValueError(f"decode takes token_ids [B] or [B, 1], got {tuple(token_ids.shape)}")
        return self._advance(ids, cache, None, False, None)

    def generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 stop_tokens: list[int] | tuple[int, ...] | None = None) -> Tensor:
        """Sample a continuation; see ``gf_train.model.generate.generate``."""
        from gf_train.model.generate import generate

        return generate(self, input_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed, stop_tokens=stop_tokens)

    def _check_ids(self, input_ids: Tensor) -> Tensor:
        ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
        if ids.dim() != 2 or ids.shape[1] < 1:
            raise ValueError(f"input_ids must be [B, T] with T >= 1, got {tuple(input_ids.shape)}")
        if ids.dtype.is_floating_point:
            raise ValueError(f"input_ids must be integer token ids, got {ids.dtype}")
        return ids.long()

    def _advance(self, ids: Tensor, cache: ModelCache, window: int | None, seed: bool,
                 chunk_size: int | None) -> tuple[Tensor, ModelCache]:
        """Shared pre-fill / decode path. ids [B, T]; window None = run GOLD on all T with carried states."""
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
        keep = T if window is None else min(T, window + 1)  # rows of h^(g) the GOLD stack may need
        step = T if chunk_size is None else chunk_size
        tail: Tensor | None = None
        for s in range(0, T, step):
            ids_c = ids[:, s:s + step]
            x_orig = self.embed(ids_c)
            h = x_orig
            for i in range(g):
                h, cache.layers[i] = self.blocks[i](h, cache.layers[i], True)
            if self.has_gold:
                c = self.w_kv_cache_a(h)  # [B, t, c]
                cache.append_keys(ids_c, c if cache.key_mode == "compressed" else self.decompress(x_orig, c))
            tail = h[:, -keep:] if tail is None else torch.cat([tail, h], dim=1)[:, -keep:]
        assert tail is not None
        cache.n_tokens += T
        if self.has_gold:
            x_all = self.embed(cache.token_ids_long())  # x_orig for all N positions, from the ids
            assert cache.keys is not None
            kc = self.decompress(x_all, cache.keys) if cache.key_mode == "compressed" else cache.keys
            if window is None or T <= window:
                hg = tail[:, -T:]
                states = [cache.layers[i] for i in range(g, L)]
            else:
                hg = tail[:, -window:]
                states = [LayerState() for _ in range(g, L)]
                if seed and T > window:
                    states[0].att_shift = self.blocks[g].ln1(tail[:, -window - 1])
            for j, i in enumerate(range(g, L)):
                hg, cache.layers[i] = self.blocks[i](hg, states[j], True, kc, x_all)
            tail = hg
        logits = self.head(self.ln_out(tail[:, -1]))  # [B, V]
        return logits, cache
