"""Model architecture config: torch-free, shared by the model, FLOPs accounting, recipes and export.

Owner: the model package (`gf_train.model`). Named sizes live in `recipes/`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHS = ("goldfinch", "finch", "finch_c2", "llama")
WKV_BACKENDS = ("auto", "naive", "torch", "triton")
ATTN_BACKENDS = ("auto", "flash", "sdpa", "naive")
CACHE_MODES = ("compressed", "kv")


@dataclass
class ModelConfig:
    arch: str = "goldfinch"
    """Architecture: goldfinch, finch (stock RWKV-6 x060), finch_c2 or llama."""
    n_layer: int = 6
    """Number of blocks L."""
    n_embd: int = 256
    """Model width C."""
    head_size: int = 64
    """Width of one head (n_embd must be a multiple of it)."""
    vocab_size: int = 65536
    """Embedding rows; at least the tokenizer's vocabulary."""
    ctx_len: int = 512
    """Training sequence length T (must equal the data's seq_len)."""
    dim_ffn: int | None = None
    """Feed-forward width; null: floor(3.5C/32)*32 (RWKV channel mix), floor(8C/3/32)*32 (llama)."""
    gold_inv_ratio: int = 3
    """rho (goldfinch): the last 1/rho of the layers are GOLD (first GOLD = floor(L(rho-1)/rho))."""
    gold_layers: int | None = None
    """Explicit GOLD layer count (goldfinch), overrides gold_inv_ratio; 0: Finch-C2 only."""
    kv_compression: int = 16
    """r (goldfinch): the compressed key cache is floor(C / r) wide."""
    rope: bool = False
    """RoPE in the GOLD layers (ablation); the llama baseline always uses RoPE."""
    rope_base: float = 10000.0
    """RoPE base frequency (llama, or GOLD layers with rope=true)."""
    rope_rescale: float = 1.0
    """RoPE position interpolation factor (> 1 stretches positions)."""
    use_one_minus_w: bool = True
    """Finch-C2 layers: k' = k * (1 - w)."""
    use_v2: bool = True
    """Finch-C2 layers: a second value instead of the bonus u."""
    l2wrap: bool = True
    """L2Wrap logit regulariser of the reference training code."""
    wkv_backend: str = "auto"
    """WKV-6 kernel: auto, naive, torch (chunked) or triton."""
    attn_backend: str = "auto"
    """Attention kernel: auto, flash, sdpa or naive."""
    grad_cp: bool = False
    """Activation checkpointing per block (less memory, one more forward)."""
    tokenizer: str | None = None
    """Tokenizer the model is trained with (gf_train.tokenizer_identity); null: taken from the data manifests."""
    vocab_hash: str | None = None
    """Hash of that tokenizer's vocabulary; null: taken from the data manifests (checkpoints and exports record it)."""
    cache_mode: str = "kv"
    """GOLD inference cache: kv (per-layer keys/values, fast decode) or compressed (c + token id per position)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"model.arch={self.arch!r} is not one of {ARCHS}")
        for name in ("n_layer", "n_embd", "head_size", "vocab_size", "ctx_len", "gold_inv_ratio",
                     "kv_compression"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_layer < 2:
            raise ValueError("model.n_layer must be >= 2 (RWKV's layer-dependent init divides by L-1)")
        if self.n_embd % self.head_size:
            raise ValueError(
                f"model.n_embd={self.n_embd} must be a multiple of model.head_size={self.head_size}")
        if self.wkv_backend not in WKV_BACKENDS:
            raise ValueError(f"model.wkv_backend={self.wkv_backend!r} is not one of {WKV_BACKENDS}")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(f"model.attn_backend={self.attn_backend!r} is not one of {ATTN_BACKENDS}")
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(f"model.cache_mode={self.cache_mode!r} is not one of {CACHE_MODES}")
        if self.gold_layers is not None and not 0 <= self.gold_layers <= self.n_layer:
            raise ValueError(f"model.gold_layers={self.gold_layers} must be in [0, n_layer={self.n_layer}] or null")
        if self.dim_ffn is not None and self.dim_ffn < 1:
            raise ValueError("model.dim_ffn must be >= 1 or null")

    # ---- derived (computed here once, never stored twice) ----
    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    @property
    def ffn_dim(self) -> int:
        if self.dim_ffn is not None:
            return self.dim_ffn
        if self.arch == "llama":
            return int(8 * self.n_embd / 3 / 32) * 32
        return int(3.5 * self.n_embd / 32) * 32

    @property
    def first_gold_layer(self) -> int:
        """Index g of the first GOLD layer; n_layer when the model has none."""
        if self.arch != "goldfinch":
            return self.n_layer
        if self.gold_layers is not None:
            return self.n_layer - self.gold_layers
        return (self.n_layer * (self.gold_inv_ratio - 1)) // self.gold_inv_ratio

    @property
    def n_gold(self) -> int:
        return self.n_layer - self.first_gold_layer

    @property
    def kv_dim(self) -> int:
        """Width c of the compressed key cache."""
        return self.n_embd // self.kv_compression
