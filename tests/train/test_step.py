"""`gf_train.train.step`: one optimizer step and the ranks' agreement, on a real torch model and optimizer
behind the engine calls the step makes, with the ZeRO 0 + fp32 guard (no DeepSpeed; the trainer tests run it
through DeepSpeed)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from gf_train.distributed.engine import guard_stage0_fp32
from gf_train.train.faults import FaultInjector
from gf_train.train.signals import PreemptionFlag
from gf_train.train.step import Agreement, RankTally, StepShape, agree, train_step


class PlainEngine:
    """A torch module and AdamW behind DeepSpeed's engine calls, with DeepSpeed's accumulation contract:
    `backward` scales the loss by 1/grad_accum, `step` is called after every micro-batch and applies the
    update only at the accumulation boundary, where it reads the optimizer's `overflow` flag (what ZeRO 0 +
    fp32 gets from `guard_stage0_fp32`, as DeepSpeed's engine does after `optimizer.step()`)."""

    def __init__(self, grad_accum: int = 2) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=0.1, foreach=False)
        guard_stage0_fp32(self)
        self.grad_accum, self.micro_steps, self.applied = grad_accum, 0, False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((self.module(x).squeeze(-1) - y) ** 2).mean()

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum:
            return
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.applied = not self.optimizer.overflow

    def was_step_applied(self) -> bool:
        return self.applied

    def state(self) -> list[torch.Tensor]:
        """Weights and optimizer state, cloned."""
        opt = [t for s in self.optimizer.state.values() for t in s.values()]
        return [t.detach().clone() for t in [*self.module.parameters(), *opt]]


def _batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    while True:
        yield torch.randn(3, 4, generator=g), torch.randn(3, generator=g)


SHAPE = StepShape(grad_accum=2, world_size=1, tokens_per_step=6, zero_stage=0, precision="fp32")


def _step(engine: PlainEngine, batches: Iterator, step: int, faults: FaultInjector = FaultInjector(),
          preempted: bool = False, timed: bool = False):
    return train_step(engine, batches, step, SHAPE, torch.device("cpu"), faults, preempted=lambda: preempted,
                      timed_save_due=lambda: timed)


def _vector_of(tally: RankTally) -> torch.Tensor:
    """The vector `agree` sends for `tally` (what another rank contributes to the all-reduce)."""
    sent: list[torch.Tensor] = []
    agree(tally, reduce=lambda v: sent.append(v) or v)
    return sent[0]


def test_agree_sums_every_rank_and_names_the_fields() -> None:
    rank0 = RankTally(loss_sum=3.0, nonfinite_losses=0, update_skipped=False, preempted=False, timed_save_due=True)
    rank1 = RankTally(loss_sum=5.5, nonfinite_losses=1, update_skipped=True, preempted=True, timed_save_due=False)
    assert _vector_of(rank0).dtype == torch.float64  # exact loss sums
    # what all_reduce_sum returns on rank 0 with rank 1 beside it
    assert agree(rank0, reduce=lambda v: v + _vector_of(rank1)) == Agreement(
        loss_sum=8.5, nonfinite_loss=True, update_skipped=True, preempted=True, timed_save_due=True)
    quiet = RankTally(loss_sum=0.25, nonfinite_losses=0, update_skipped=False, preempted=False, timed_save_due=False)
    assert agree(quiet, reduce=lambda v: v + _vector_of(quiet)) == Agreement(0.5, False, False, False, False)


def test_a_step_averages_the_micro_batch_losses_and_updates() -> None:
    engine, batches = PlainEngine(), _batches()
    check, check_batches = PlainEngine(), _batches()
    before = [p.detach().clone() for p in engine.module.parameters()]
    losses = []
    for _ in range(2):  # the same two micro-batches by hand
        x, y = next(check_batches)
        loss = check(x, y)
        losses.append(loss.item())
        (loss / 2).backward()
    grad_norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in check.module.parameters()]))
    result = _step(engine, batches, 0, timed=True)
    assert result.loss == torch.tensor(losses, dtype=torch.float64).sum().item() / 2
    assert abs(result.grad_norm - grad_norm.item()) < 1e-6
    assert result.tokens == 6 and not result.skipped and not result.preempted and result.timed_save_due
    assert result.seconds >= result.data_wait_s >= 0
    assert all(not torch.equal(a, b) for a, b in zip(before, engine.module.parameters()))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_nan_fault_skips_the_update_and_says_so() -> None:
    engine, batches = PlainEngine(), _batches()
    assert not _step(engine, batches, 2).skipped  # AdamW has state now
    before = engine.state()
    result = _step(engine, batches, 3, FaultInjector(nan_steps=frozenset({3})))
    assert result.nonfinite_loss and result.update_skipped and result.skipped
    assert result.loss != result.loss and result.grad_norm == float("inf")  # NaN loss; the norm as at ZeRO 1-3
    assert _same(before, engine.state())  # weights and AdamW state (its step count too) unchanged
    assert not _step(engine, batches, 4, FaultInjector(nan_steps=frozenset({3}))).skipped
    assert not _same(before, engine.state())


def test_a_nonfinite_gradient_under_a_finite_loss_is_skipped_too() -> None:
    """An infinite gradient with a finite loss: only the ZeRO 0 guard sees it (no loss is NaN)."""
    engine, batches = PlainEngine(), _batches()
    assert not _step(engine, batches, 0).skipped
    before = engine.state()
    engine.module.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    result = _step(engine, batches, 1)
    assert not result.nonfinite_loss and result.update_skipped and result.skipped and result.loss == result.loss
    assert result.grad_norm == float("inf") and _same(before, engine.state())


def test_a_signal_during_the_step_counts_for_that_step() -> None:
    flag = PreemptionFlag().install()
    try:
        engine, batches = PlainEngine(), _batches()
        faults = FaultInjector(signal_step=1)
        assert not train_step(engine, batches, 0, SHAPE, torch.device("cpu"), faults, lambda: flag.is_set,
                              lambda: False).preempted
        assert train_step(engine, batches, 1, SHAPE, torch.device("cpu"), faults, lambda: flag.is_set,
                          lambda: False).preempted
    finally:
        flag.uninstall()
