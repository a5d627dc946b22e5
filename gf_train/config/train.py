"""Training sections of the run config: optimizer, schedule, distribution, checkpoints, logging, eval.

Owner: `gf_train.train` (the trainer reads these; nothing here imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DECAYS = ("cosine_half", "cosine_quarter", "linear", "constant")
PRECISIONS = ("bf16", "fp32")
WANDB_MODES = ("disabled", "offline", "online")


@dataclass
class OptimConfig:
    lr: float = 6e-4
    """Peak learning rate (lr_init): reached at the end of warm-up, then decayed to lr_final."""
    lr_final: float = 2e-4
    """Learning rate at the last step (the end of the decay; unused by decay=constant)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    """Adam beta1, beta2."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.001
    """Decoupled weight decay of the matrices (AdamW); biases, norms and RWKV time parameters get none."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables clipping."""
    decay_kv_cache_proj: bool = True
    """Weight decay on the GOLD key-cache projections W_a/W_b (the reference code does; the paper says no)."""
    layerwise_lr: bool = True
    """RWKV learning-rate multipliers (time_decay 2x), spec 8.4."""
    max_nonfinite_in_row: int = 5
    """Skipped steps (non-finite loss or gradient) in a row before the run stops with exit code 3."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.lr_final < 0:
            raise ValueError(f"optim.lr must be > 0 and optim.lr_final >= 0 (got {self.lr}, {self.lr_final})")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.weight_decay and optim.grad_clip must be >= 0")
        if self.max_nonfinite_in_row < 1:
            raise ValueError("optim.max_nonfinite_in_row must be >= 1")


@dataclass
class ScheduleConfig:
    warmup_steps: int = 10
    """Warm-up steps: lr = lr_init * (0.2 + 0.8 * step / warmup_steps) before them (the reference)."""
    decay: str = "cosine_half"
    """lr decay after warm-up: cosine_half (the paper), cosine_quarter (reference HEAD), linear, constant."""
    max_steps: int | None = None
    """Run length in optimizer steps (set this or max_tokens)."""
    max_tokens: int | None = None
    """Run length in training tokens, rounded up to whole steps (set this or max_steps)."""

    def __post_init__(self) -> None:
        if self.decay not in DECAYS:
            raise ValueError(f"schedule.decay={self.decay!r} is not one of {DECAYS}")
        if self.warmup_steps < 0:
            raise ValueError("schedule.warmup_steps must be >= 0")
        if self.max_steps is not None and self.max_tokens is not None:
            raise ValueError("set only one of schedule.max_steps and schedule.max_tokens (the other to null)")
        if (self.max_steps or 1) < 1 or (self.max_tokens or 1) < 1:
            raise ValueError("schedule.max_steps / schedule.max_tokens must be >= 1")


@dataclass
class DistConfig:
    global_batch: int = 8
    """Sequences per optimizer step over all ranks (kept fixed across world sizes: accumulation adapts)."""
    micro_batch: int = 8
    """Sequences per device per forward pass (capped at global_batch / world size)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage: 0 (plain data parallel), 1, 2 or 3."""
    precision: str = "bf16"
    """Training precision: bf16 (mixed, fp32 master weights) or fp32."""
    offload_optimizer: bool = False
    """ZeRO-Offload: optimizer states and step on the CPU (DeepSpeedCPUAdam)."""
    backend: str = "auto"
    """Process-group backend: auto (nccl on CUDA, gloo on CPU), nccl or gloo."""
    compile: bool = False
    """torch.compile the model (DeepSpeed engine.compile; GPU or CPU)."""
    seed: int = 1337
    """Seed of the model init (same on every rank) and of the per-rank random streams."""
    bucket_mb: int = 200
    """ZeRO reduce/allgather bucket size in MB (RWKV-LM: 2 on consumer GPUs, 200 on A100/H100)."""
    timeout_minutes: float = 30.0
    """Collective timeout of the process group, in minutes."""

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"dist.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"dist.precision={self.precision!r} is not one of {PRECISIONS}")
        if self.global_batch < 1 or self.micro_batch < 1:
            raise ValueError("dist.global_batch and dist.micro_batch must be >= 1")
        if self.backend not in ("auto", "nccl", "gloo"):
            raise ValueError(f"dist.backend={self.backend!r} is not one of auto, nccl, gloo")


@dataclass
class CheckpointConfig:
    every_steps: int | None = None
    """Save a checkpoint every N optimizer steps; null: no step-based saves."""
    every_minutes: float | None = None
    """Save a checkpoint when this many minutes passed since the last save; null: no timed saves."""
    keep_last: int = 2
    """Complete checkpoints kept in the run dir (>= 2: the newest may be incomplete after a crash)."""
    save_final: bool = True
    """Save a checkpoint after the last step."""
    verify_checksums: bool = True
    """Loading re-reads every file to compare its xxh3_64 digest (about 1 s per 2-5 GB); false: sizes only."""

    def __post_init__(self) -> None:
        if self.keep_last < 2:
            raise ValueError("checkpoint.keep_last must be >= 2 (a newer checkpoint may be incomplete)")


@dataclass
class LogConfig:
    every_steps: int = 10
    """Write a metrics.jsonl row every N steps (and at step 1, the last step and any skipped step)."""
    wandb: str = "disabled"
    """Weights & Biases mode: disabled, offline or online."""
    wandb_project: str = "gf-train"
    """Weights & Biases project (used when wandb is not disabled)."""
    wandb_run_name: str | None = None
    """Weights & Biases run name; null: the run's run_name."""
    wandb_tags: list[str] = field(default_factory=list)
    """Weights & Biases tags."""
    progress_bar: bool = True
    """A tqdm progress bar on rank 0's stderr."""
    peak_tflops: float | None = None
    """Peak TFLOP/s of one device at dist.precision, for MFU; null: looked up from the device name."""

    def __post_init__(self) -> None:
        if self.wandb not in WANDB_MODES:
            raise ValueError(f"log.wandb={self.wandb!r} is not one of {WANDB_MODES}")
        if self.every_steps < 1:
            raise ValueError("log.every_steps must be >= 1")


@dataclass
class EvalConfig:
    every_steps: int | None = None
    """Validate every N steps (when data.val is set); null: only after the last step."""
    max_tokens: int | None = 1 << 20
    """Validation budget in predicted tokens: the whole val split when it fits, else a fixed random subset
    of max_tokens // ctx_len samples drawn once with dist.seed; null: always the whole split."""

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"eval.max_tokens must be >= 1 or null (the whole val split), got {self.max_tokens}")
