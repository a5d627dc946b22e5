"""Parameter count and training FLOPs per token for every architecture, from the config alone.

``param_count(cfg)`` reproduces spec §7.4 exactly (``time_faaaa`` included, as in the checkpoints) and
is checked against the built model in the tests.

``flops_per_token(cfg, seq_len=None)`` (training, forward + backward, used for MFU)::

    6 · N_matmul                      every weight applied as a matmul once per token (all 2-D/3-D
                                      weights except the embedding gather; the head included); the
                                      Finch-C2 W_v counts twice because v2 re-applies it
  + 12 · A · T   per attention layer  QK^T and AV, 2·T·A MACs forward, x3 for training, over the full
                                      T x T square (PaLM / nanoGPT convention, causal masking not halved)
  + 18 · A · N_h per WKV layer        ~3 MACs per state element per token forward (decay, k^T v update,
                                      r·S read-out), x2 FLOPs per MAC, x3 for training

T = ``seq_len`` or ``cfg.ctx_len``. Element-wise work (ddlerp, norms, activations) is not counted.
"""

from __future__ import annotations

from gf_train.config.model import ModelConfig

MIX_RANK = 32
DECAY_RANK = 64


def _gold_rank(C: int) -> int:
    return max(C // 16, 64)


def _layer_params(cfg: ModelConfig, kind: str) -> tuple[int, int]:
    """(all parameters, matmul parameters) of one block of type ``kind`` (LayerNorms included)."""
    C = A = cfg.n_embd
    H, N, F = cfg.n_head, cfg.head_size, cfg.ffn_dim
    block_ln = 4 * C  # ln1 + ln2, weight and bias
    if kind == "llama":
        mm = 4 * C * A + 3 * C * F
        return mm + block_ln, mm
    cmix_mm = 2 * C * F + C * C
    cmix = cmix_mm + 2 * C
    if kind == "finch_c2":
        mm = 4 * C * A + C * 5 * MIX_RANK + 5 * MIX_RANK * C + 2 * (C * DECAY_RANK + DECAY_RANK * A)
        vec = 6 * C + A + H * N + 2 * A  # μ's, time_decay, time_faaaa, ln_x
        extra = C * A  # v2 = W_v x_v2 re-applies W_v (FLOPs only)
    elif kind == "finch":
        mm = 5 * C * A + C * 5 * MIX_RANK + 5 * MIX_RANK * C + C * DECAY_RANK + DECAY_RANK * A
        vec = 6 * C + A + H * N + 2 * A
        extra = 0
    elif kind == "gold":
        R = _gold_rank(C)
        mm = 2 * C * A + 2 * C * MIX_RANK + C * 2 * MIX_RANK + 2 * MIX_RANK * C + 2 * (C * R + R * A)
        vec = 5 * C + 4 * 2 * A  # μ's, ln_q/k/v/x
        extra = 0
    else:
        raise ValueError(f"unknown layer kind {kind!r}")
    return mm + vec + cmix + block_ln, mm + cmix_mm + extra


def _kinds(cfg: ModelConfig) -> list[str]:
    base = {"goldfinch": "finch_c2", "finch_c2": "finch_c2", "finch": "finch", "llama": "llama"}[cfg.arch]
    return [base if i < cfg.first_gold_layer else "gold" for i in range(cfg.n_layer)]


def _key_cache_params(cfg: ModelConfig) -> int:
    if cfg.n_gold == 0:
        return 0
    C, c = cfg.n_embd, cfg.kv_dim
    return c * C + C * (C + c)


def param_count(cfg: ModelConfig) -> int:
    """Exact number of parameters of ``build_model(cfg)`` (spec §7.4)."""
    C, V = cfg.n_embd, cfg.vocab_size
    total = 2 * V * C + 2 * 2 * C  # emb, head, ln0, ln_out
    total += sum(_layer_params(cfg, k)[0] for k in _kinds(cfg))
    return total + _key_cache_params(cfg)


def matmul_params(cfg: ModelConfig) -> int:
    """N_matmul of the module docstring (per-token matmul weights, head included, emb excluded)."""
    mm = cfg.vocab_size * cfg.n_embd  # head
    mm += sum(_layer_params(cfg, k)[1] for k in _kinds(cfg))
    return mm + _key_cache_params(cfg)


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token (forward + backward), see the module docstring for the formula."""
    T = cfg.ctx_len if seq_len is None else seq_len
    A, N = cfg.n_embd, cfg.head_size
    kinds = _kinds(cfg)
    n_attn = sum(k in ("gold", "llama") for k in kinds)
    n_wkv = sum(k in ("finch", "finch_c2") for k in kinds)
    return float(6 * matmul_params(cfg) + 12 * A * T * n_attn + 18 * A * N * n_wkv)
