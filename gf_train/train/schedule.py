"""Learning rate as a pure function of the optimizer step (spec §8.3).

Owner: `gf_train.train`. `lr_at(step)` is the lr of the update made by optimizer step `step`
(0-based). The trainer sets `param_group["lr"] = lr_at(step) * param_group["lr_scale"]` before every
update, so resuming at any step reproduces the schedule exactly (nothing is stored).

- Warm-up: for step < warmup_steps, lr is lr_init * (0.2 + 0.8 * step / warmup_steps) (the reference).
- Progress p = clip((step - warmup) / (max_steps - warmup), 0, 1); tokens are proportional to steps
  because the global batch is fixed, so this equals the reference's token-based progress.
- Decays from lr_init to lr_final: `cosine_half` (the paper's runs), `cosine_quarter` (reference HEAD),
  `linear`, `constant` (lr_init throughout).
"""

from __future__ import annotations

import math

from gf_train.config.train import DECAYS, OptimConfig, ScheduleConfig


def lr_at(step: int, *, lr_init: float, lr_final: float, warmup_steps: int, max_steps: int,
          decay: str = "cosine_half") -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    if decay not in DECAYS:
        raise ValueError(f"unknown decay {decay!r}; choose one of {DECAYS}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    span = max_steps - warmup_steps
    p = 1.0 if span <= 0 else min(max((step - warmup_steps) / span, 0.0), 1.0)
    if decay == "cosine_half":
        lr = lr_final + (lr_init - lr_final) * (1.0 + math.cos(math.pi * p)) / 2.0
    elif decay == "cosine_quarter":
        lr = lr_final + (lr_init - lr_final) * math.cos(math.pi / 2.0 * p)
    elif decay == "linear":
        lr = lr_init + (lr_final - lr_init) * p
    else:
        lr = lr_init
    if step < warmup_steps:
        # The reference multiplies the *initial* lr during warm-up (p is 0 there anyway).
        lr = lr_init * (0.2 + 0.8 * step / warmup_steps)
    return lr


def schedule_fn(optim: OptimConfig, schedule: ScheduleConfig, max_steps: int):
    """`lr_at` bound to a run's config: step -> lr."""

    def f(step: int) -> float:
        return lr_at(step, lr_init=optim.lr, lr_final=optim.lr_final, warmup_steps=schedule.warmup_steps,
                     max_steps=max_steps, decay=schedule.decay)

    return f
