"""The typed run config (`RunConfig`) and the numbers derived from it once (`Derived`).

Owner: `gf_train.config`. Sections live in model.py, data.py and train.py; this file composes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gf_train.config.data import DataConfig
from gf_train.config.model import ModelConfig
from gf_train.config.train import (
    CheckpointConfig,
    DistConfig,
    EvalConfig,
    LogConfig,
    OptimConfig,
    ScheduleConfig,
)


@dataclass
class RunConfig:
    run_name: str = "run"
    """Name of the run: the default run dir runs/<run_name> and the wandb run name."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Architecture and sizes."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training and validation datasets."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Run length and learning-rate schedule."""
    dist: DistConfig = field(default_factory=DistConfig)
    """Batching, DeepSpeed and precision."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """When checkpoints are written and how many are kept."""
    log: LogConfig = field(default_factory=LogConfig)
    """Metrics, progress bar and Weights & Biases."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Validation during training."""

    def __post_init__(self) -> None:
        if self.dist.micro_batch > self.dist.global_batch:
            raise ValueError(
                f"dist.micro_batch={self.dist.micro_batch} is larger than dist.global_batch="
                f"{self.dist.global_batch}; lower dist.micro_batch")


@dataclass(frozen=True)
class Derived:
    """Numbers computed from a RunConfig and the world size: the only place they are computed."""

    world_size: int
    micro_batch: int  # per device
    grad_accum: int
    global_batch: int  # sequences per optimizer step
    tokens_per_step: int
    max_steps: int


def derive(cfg: RunConfig, world_size: int) -> Derived:
    """Per-device micro-batch and gradient accumulation for `world_size` ranks (global batch fixed)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    gb, mb = cfg.dist.global_batch, cfg.dist.micro_batch
    if gb % world_size:
        raise ValueError(
            f"dist.global_batch={gb} is not divisible by the world size {world_size}; choose a global "
            f"batch that is a multiple of the number of ranks")
    per_rank = gb // world_size
    mb = min(mb, per_rank)
    if per_rank % mb:
        raise ValueError(
            f"dist.global_batch={gb} over {world_size} ranks gives {per_rank} sequences per rank, "
            f"not a multiple of dist.micro_batch={mb}; pick a micro-batch that divides {per_rank}")
    tokens = gb * cfg.model.ctx_len
    if cfg.schedule.max_steps is not None:
        steps = cfg.schedule.max_steps
    elif cfg.schedule.max_tokens is not None:
        steps = -(-cfg.schedule.max_tokens // tokens)
    else:
        raise ValueError("the run has no length: set schedule.max_steps or schedule.max_tokens")
    return Derived(world_size=world_size, micro_batch=mb, grad_accum=per_rank // mb, global_batch=gb,
                   tokens_per_step=tokens, max_steps=steps)
