"""GOLD attention time mix (spec §6; reference ``tmix/tmix_gold.py``): layers g .. L-1 of GoldFinch.

Queries come from the residual stream (token-shifted ddlerp, W_q, LN_q); keys from the shared
decompressed key stream kc (zero-padded shift, per-layer mix, rank-R LoRA, LN_k); values only from
rms_norm(x_orig) (zero-padded shift, mix, LoRA, LN_v). No positional encoding unless ``cfg.rope``
(the RoPE ablation, §6.1). Attention is causal and bottom-right aligned: the T queries are the last T
of the N visible positions (training: T == N; pre-fill window / decode: T < N). Keys and values are
computed by ``keys_values`` from ``GoldKVInputs`` (shared by all GOLD layers of a call); k_t, v_t
depend only on positions t and t-1, which the ``kv`` cache mode exploits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gf_kernels import causal_attention
from torch import Tensor, nn

from gf_train.config.model import ModelConfig
from gf_train.model.common import apply_rope, fill_padded, lora, rope_angles, token_shift

MIX_RANK = 32
KV_TILE = 256  # rows per tile of inference-time keys/values (see keys_values)


def gold_lora_rank(n_embd: int) -> int:
    """R = max(floor(C/16), 64) (§0)."""
    return max(n_embd // 16, 64)


class GoldTimeMix(nn.Module):
    kind = "gold"

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = A = cfg.n_embd
        R = gold_lora_rank(C)
        self.layer_id = layer_id
        self.n_layer = cfg.n_layer
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.rope, self.rope_base, self.rope_rescale = cfg.rope, cfg.rope_base, cfg.rope_rescale
        self.backend = cfg.attn_backend

        def vec(n: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(1, 1, n))

        self.time_maa_x, self.time_maa_q, self.time_maa_v_cache = vec(C), vec(C), vec(C)
        self.time_maa_k, self.time_maa_v = vec(C), vec(C)
        self.time_maa_q_w1 = nn.Parameter(torch.empty(C, MIX_RANK))
        self.time_maa_q_w2 = nn.Parameter(torch.empty(MIX_RANK, C))
        self.time_maa_kv_w1 = nn.Parameter(torch.empty(C, MIX_RANK * 2))
        self.time_maa_kv_w2 = nn.Parameter(torch.empty(2, MIX_RANK, C))
        self.time_key_w1 = nn.Parameter(torch.empty(C, R))
        self.time_key_w2 = nn.Parameter(torch.empty(R, A))
        self.time_value_w1 = nn.Parameter(torch.empty(C, R))
        self.time_value_w2 = nn.Parameter(torch.empty(R, A))
        self.query = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_q = nn.LayerNorm(A)
        self.ln_k = nn.LayerNorm(A)
        self.ln_v = nn.LayerNorm(A)
        self.ln_x = nn.LayerNorm(A)

    def keys_values(self, inp: GoldKVInputs, pos0: int) -> tuple[Tensor, Tensor]:
        """Per-layer keys and values of the positions in ``inp`` (§6 steps 2-5, 7) -> k, v [B, T, H, D].

        k_t and v_t depend on positions t and t-1 only, so the ``kv`` cache computes them once per
        position. The ``compressed`` cache runs this over all N positions at every step, where it is
        bound by memory traffic: each element-wise pass over [N, C] costs as much as a small matmul.
        So without autograd long inputs run in tiles of ``KV_TILE`` rows, whose ~10 intermediates
        ([256, C]) stay in the CPU caches (about +20% decode speed at 4k, docs/benchmarks.md), and the
        additions are folded into the GEMMs (baddbmm / addmm) with the ddlerp input as one addcmul.
        pos0: absolute position of the first row (RoPE on k when ``cfg.rope``)."""
        B, T, _ = inp.kc.shape
        if T > KV_TILE and not torch.is_grad_enabled():
            k = inp.kc.new_empty(B, T, self.n_head, self.head_size)
            v = inp.kc.new_empty(B, T, self.n_head, self.head_size)
            for s in range(0, T, KV_TILE):
                e = s + KV_TILE
                tile = GoldKVInputs(inp.kc[:, s:e], inp.dkc[:, s:e], inp.xo[:, s:e], inp.dxo[:, s:e])
                k[:, s:e], v[:, s:e] = self.keys_values_rows(tile, pos0 + s)
            return k, v
        return self.keys_values_rows(inp, pos0)

    def keys_values_rows(self, inp: GoldKVInputs, pos0: int) -> tuple[Tensor, Tensor]:
        """``keys_values`` in one piece (no tiling)."""
        kc, dkc, xo, dxo = inp.kc, inp.dkc, inp.xo, inp.dxo
        B, T, C = kc.shape
        H, D = self.n_head, self.head_size
        # ddlerp (§6 steps 2, 4) with the μ_k, μ_v offsets folded into the LoRA's output GEMM:
        # m[0] = μ_k + mk, m[1] = μ_v + mv, each [B*T, C]
        z = torch.tanh(torch.addcmul(xo, dxo, self.time_maa_v_cache).view(B * T, C) @ self.time_maa_kv_w1)
        z = z.view(B * T, 2, MIX_RANK).transpose(0, 1)  # [2, B*T, r]
        mu = torch.cat([self.time_maa_k, self.time_maa_v]).view(2, 1, C)
        m = torch.baddbmm(mu, z, self.time_maa_kv_w2)  # [2, B*T, C]
        kbar = torch.addcmul(kc.reshape(B * T, C), dkc.reshape(B * T, C), m[0])  # kc + (kc_{t-1} - kc) * mix
        vbar = torch.addcmul(xo.reshape(B * T, C), dxo.reshape(B * T, C), m[1])
        k = self.ln_k(torch.addmm(kbar, torch.tanh(kbar @ self.time_key_w1), self.time_key_w2)).view(B, T, H, D)
        v = self.ln_v(torch.addmm(vbar, torch.tanh(vbar @ self.time_value_w1), self.time_value_w2)).view(B, T, H, D)
        if self.rope:
            cos, sin = rope_angles(torch.arange(pos0, pos0 + T, device=k.device), D, self.rope_base,
                                   self.rope_rescale)
            k = apply_rope(k, cos, sin)
        return k, v

    def forward(
        self, x: Tensor, k: Tensor, v: Tensor, shift: Tensor | None, want_state: bool,
        key_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, C] (= ln1(h), the last T of N positions); k, v [B, N, H, D] from ``keys_values``
        (all N visible positions); key_mask [B, N] bool (False = padding) or None.

        Returns (out [B, T, C], new query-side shift state [B, C] or None).
        """
        B, T, C = x.shape
        N = k.shape[1]
        H, D = self.n_head, self.head_size
        if N < T:
            raise ValueError(f"GOLD: {N} key positions for {T} queries")
        dx = token_shift(x, shift) - x
        mq = lora(x + dx * self.time_maa_x, self.time_maa_q_w1, self.time_maa_q_w2)
        xq = x + dx * (self.time_maa_q + mq)
        q = self.ln_q(self.query(xq)).view(B, T, H, D)
        if self.rope:
            cos, sin = rope_angles(torch.arange(N - T, N, device=x.device), D, self.rope_base, self.rope_rescale)
            q = apply_rope(q, cos, sin)
        y = causal_attention(q, k, v, backend=self.backend, key_mask=key_mask)  # [B, T, H, D], 1/sqrt(D)
        out = self.output(self.ln_x(y.reshape(B, T, C)))
        return out, (x[:, -1].clone() if want_state else None)


@dataclass
class GoldKVInputs:
    """What every GOLD layer's keys / values read, computed once per call for all GOLD layers.

    kc [B, T, A] decompressed key stream, dkc = kc_{t-1} - kc_t; xo [B, T, C] = rms_norm(x_orig),
    dxo = xo_{t-1} - xo_t (padding skipped by ``fill_padded``; zeros before the first position).
    """

    kc: Tensor
    dkc: Tensor
    xo: Tensor
    dxo: Tensor


def gold_kv_inputs(kc: Tensor, xo: Tensor, prev: tuple[Tensor, Tensor] | None,
                   mask: Tensor | None) -> GoldKVInputs:
    """kc [B, T, A], xo = rms_norm(x_orig) [B, T, C] of new positions; prev = (kc, xo) rows [B, A], [B, C]
    of the last real position before them (None: these are the first); mask [B, T] bool or None."""
    pk, px = (None, None) if prev is None else prev
    kc, xo = fill_padded(kc, pk, mask), fill_padded(xo, px, mask)
    return GoldKVInputs(kc, token_shift(kc, pk) - kc, xo, token_shift(xo, px) - xo)
