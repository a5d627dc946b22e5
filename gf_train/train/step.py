"""One optimizer step and the ranks' agreement on its outcome.

Owner: `gf_train.train`. `train_step(...)` runs `grad_accum` micro-batches (forward, backward, engine step)
on this rank, then `agree(...)` does the step's one collective: a small all-reduce of what each rank saw
(loss sum, non-finite losses, update not applied, preemption signal, timed-save vote). Every rank gets the
same sums, so every rank takes the same decisions (skip accounting, checkpoint, exit). The result is a
`StepResult` with named fields; the vector layout lives only in `agree`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gf_train.distributed.engine import all_reduce_sum, global_grad_norm_stage0, skip_nonfinite_step_stage0
from gf_train.train.faults import FaultInjector

Reduce = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RankTally:
    """What one rank saw in a step, before the ranks agree."""

    loss_sum: float  # sum of this rank's micro-batch losses (float64, exact)
    nonfinite_losses: int  # micro-batches whose loss was NaN or infinite
    update_skipped: bool  # the optimizer did not apply the update (overflow check, dropped gradients)
    preempted: bool  # SIGUSR1/SIGTERM arrived in this process
    timed_save_due: bool  # this rank's vote for a timed save (only rank 0 votes)


@dataclass(frozen=True)
class Agreement:
    """The sums over every rank of their `RankTally`: identical on every rank."""

    loss_sum: float
    nonfinite_loss: bool  # some rank had a non-finite micro-batch loss
    update_skipped: bool  # some rank's optimizer skipped the update
    preempted: bool  # a preemption signal arrived on some rank
    timed_save_due: bool  # rank 0's clock says a timed save is due


def agree(tally: RankTally, reduce: Reduce = all_reduce_sum) -> Agreement:
    """The step's one collective: build the vector, sum it over the ranks, unpack it into named fields."""
    vector = torch.tensor([tally.loss_sum, tally.nonfinite_losses, float(tally.update_skipped),
                           float(tally.preempted), float(tally.timed_save_due)], dtype=torch.float64)
    loss_sum, nonfinite, skipped, preempted, timed = (float(v) for v in reduce(vector))
    return Agreement(loss_sum=loss_sum, nonfinite_loss=nonfinite > 0, update_skipped=skipped > 0,
                     preempted=preempted > 0, timed_save_due=timed > 0)


@dataclass(frozen=True)
class StepResult:
    """One completed optimizer step as every rank agreed on it (timings are this rank's)."""

    loss: float  # mean loss over every micro-batch of every rank (not finite when any was not)
    grad_norm: float | None  # global L2 norm of the gradients before clipping (None: the engine keeps none)
    tokens: int  # tokens the step trained on, all ranks together
    nonfinite_loss: bool
    update_skipped: bool
    preempted: bool
    timed_save_due: bool
    seconds: float  # wall time of the step on this rank
    data_wait_s: float  # of which waiting for batches

    @property
    def skipped(self) -> bool:
        """The step did not change the weights (a non-finite loss or gradient on some rank)."""
        return self.nonfinite_loss or self.update_skipped


@dataclass(frozen=True)
class StepShape:
    """What stays the same from step to step."""

    grad_accum: int  # micro-batches per rank and step
    world_size: int
    tokens_per_step: int
    zero_stage: int
    precision: str


def _grad_norm(engine: Any, stage0_norm: float | None, zero_stage: int, skipped: bool) -> float | None:
    if zero_stage != 0:
        norm = engine.get_global_grad_norm()
        return None if norm is None else float(norm)
    # ZeRO 1-3 report inf for a skipped step (DeepSpeed's overflow marker): stage 0 says the same
    return float("inf") if skipped or stage0_norm is None else stage0_norm


def train_step(engine: Any, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], step: int, shape: StepShape,
               device: torch.device, faults: FaultInjector, preempted: Callable[[], bool],
               timed_save_due: Callable[[], bool], reduce: Reduce = all_reduce_sum) -> StepResult:
    """Optimizer step `step` (0-based): `shape.grad_accum` micro-batches from `batches`, the engine step, then
    the ranks' agreement. `preempted` and `timed_save_due` are asked after the micro-batches (a signal that
    arrives during the step counts for this step)."""
    t0, wait = time.perf_counter(), 0.0
    loss_sum, nonfinite = torch.zeros((), dtype=torch.float64), 0
    stage0_norm: float | None = None
    last = shape.grad_accum - 1
    for micro in range(shape.grad_accum):
        t_wait = time.perf_counter()
        x, y = next(batches)
        wait += time.perf_counter() - t_wait
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = faults.poison_loss(step, engine(x, y))
        value = loss.detach().double().cpu()
        nonfinite += int(not torch.isfinite(value))
        loss_sum += value
        engine.backward(loss)
        faults.after_backward(step, micro)
        if micro == last and shape.zero_stage == 0:  # DeepSpeed keeps no gradient norm at stage 0
            # fp32 has no overflow check there: the trainer's guard skips the update (bf16's optimizer does)
            if not (shape.precision == "fp32" and skip_nonfinite_step_stage0(engine)):
                stage0_norm = global_grad_norm_stage0(engine)
        engine.step()
    tally = RankTally(loss_sum=float(loss_sum), nonfinite_losses=nonfinite,
                      update_skipped=not engine.was_step_applied(), preempted=preempted(),
                      timed_save_due=timed_save_due())
    agreed = agree(tally, reduce)
    return StepResult(loss=agreed.loss_sum / (shape.world_size * shape.grad_accum),
                      grad_norm=_grad_norm(engine, stage0_norm, shape.zero_stage,
                                           agreed.nonfinite_loss or agreed.update_skipped),
                      tokens=shape.tokens_per_step,
                      nonfinite_loss=agreed.nonfinite_loss, update_skipped=agreed.update_skipped,
                      preempted=agreed.preempted, timed_save_due=agreed.timed_save_due,
                      seconds=time.perf_counter() - t0, data_wait_s=wait)
