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
    lr: float = 6e-4  # lr_init (after warm-up)
    lr_final: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    weight_decay: float = 0.001
    grad_clip: float = 1.0  # 0 disables clipping
    decay_kv_cache_proj: bool = True  # weight decay on W_a/W_b (the reference code does; paper says no)
    layerwise_lr: bool = True  # RWKV lr multipliers (time_decay 2x), spec 8.4
    max_nonfinite_in_row: int = 5  # skipped steps (non-finite loss/grad) in a row before the run stops

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
    warmup_steps: int = 10  # lr multiplied by 0.2 + 0.8*s/warmup for s < warmup (reference)
    decay: str = "cosine_half"  # the paper's half cosine; cosine_quarter is the reference HEAD
    max_steps: int | None = None  # the run length: one of max_steps / max_tokens
    max_tokens: int | None = None

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
    global_batch: int = 8  # sequences per optimizer step, over all ranks (kept fixed across world sizes)
    micro_batch: int = 8  # sequences per device per forward
    zero_stage: int = 2
    precision: str = "bf16"
    offload_optimizer: bool = False  # ZeRO-Offload: optimizer states + step on the CPU (DeepSpeedCPUAdam)
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU
    compile: bool = False  # torch.compile the model (DeepSpeed engine.compile; GPU or CPU)
    seed: int = 1337
    bucket_mb: int = 200  # ZeRO reduce/allgather bucket size (RWKV-LM: 2 on consumer GPUs, 200 on A100/H100)
    timeout_minutes: float = 30.0  # collective timeout of the process group

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
    every_minutes: float | None = None
    keep_last: int = 2
    save_final: bool = True
    # Loading re-reads every file to compare its xxh3_64 digest (about 1 s per 2-5 GB); false checks sizes only.
    verify_checksums: bool = True

    def __post_init__(self) -> None:
        if self.keep_last < 2:
            raise ValueError("checkpoint.keep_last must be >= 2 (a newer checkpoint may be incomplete)")


@dataclass
class LogConfig:
    every_steps: int = 10
    wandb: str = "disabled"
    wandb_project: str = "gf-train"
    wandb_run_name: str | None = None
    wandb_tags: list[str] = field(default_factory=list)
    progress_bar: bool = True
    peak_tflops: float | None = None  # per device; None: looked up from the device name

    def __post_init__(self) -> None:
        if self.wandb not in WANDB_MODES:
            raise ValueError(f"log.wandb={self.wandb!r} is not one of {WANDB_MODES}")
        if self.every_steps < 1:
            raise ValueError("log.every_steps must be >= 1")


@dataclass
class EvalConfig:
    every_steps: int | None = None  # None: only at the end (if data.val is set)
    max_batches: int = 20
