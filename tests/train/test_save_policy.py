"""`gf_train.train.save_policy`: save now, and why (no DeepSpeed, a fake clock)."""

from __future__ import annotations

from gf_train.config import RunConfig
from gf_train.train.save_policy import SavePolicy, SaveReason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reasons(policy: SavePolicy, steps: range) -> dict[int, SaveReason]:
    return {s: r for s in steps if (r := policy.reason(s)) is not None}


def test_interval_final_and_stop_saves() -> None:
    policy = SavePolicy(max_steps=10, every_steps=4)
    assert _reasons(policy, range(1, 11)) == {4: SaveReason.INTERVAL, 8: SaveReason.INTERVAL,
                                              10: SaveReason.FINAL}
    assert _reasons(SavePolicy(max_steps=10, save_final=False), range(1, 11)) == {}
    stop = SavePolicy(max_steps=10, every_steps=4, stop_at_step=6)
    assert _reasons(stop, range(1, 8)) == {4: SaveReason.INTERVAL, 6: SaveReason.STOP_AT_STEP,
                                           7: SaveReason.STOP_AT_STEP}
    assert not stop.stops_at(5) and stop.stops_at(6) and stop.stops_at(7)
    assert not SavePolicy(max_steps=10).stops_at(10)
    # --stop-at-step at the last step with save_final=false still saves (the user asked to stop there)
    assert SavePolicy(max_steps=10, save_final=False, stop_at_step=10).reason(10) is SaveReason.STOP_AT_STEP


def test_the_reasons_rank_nonfinite_then_preemption_then_the_rest() -> None:
    policy = SavePolicy(max_steps=8, every_steps=2, stop_at_step=8)
    assert policy.reason(8, nonfinite_stop=True, preempted=True, timed_save_due=True) is SaveReason.NONFINITE
    assert policy.reason(8, preempted=True, timed_save_due=True) is SaveReason.PREEMPTED
    assert policy.reason(3, preempted=True) is SaveReason.PREEMPTED
    assert policy.reason(8, timed_save_due=True) is SaveReason.FINAL
    assert policy.reason(2, timed_save_due=True) is SaveReason.INTERVAL
    assert policy.reason(3, timed_save_due=True) is SaveReason.TIMED
    assert policy.reason(3) is None


def test_timed_saves_follow_rank_0s_clock_from_the_last_save() -> None:
    clock = Clock()
    policy = SavePolicy(max_steps=100, every_minutes=2, clock=clock)
    other_rank = SavePolicy(max_steps=100, every_minutes=2, keeps_time=False, clock=clock)
    clock.now += 119
    assert not policy.timed_save_due()
    clock.now += 1
    assert policy.timed_save_due() and not other_rank.timed_save_due()
    policy.restart_clock()  # a checkpoint was written
    assert not policy.timed_save_due()
    clock.now += 120
    assert policy.timed_save_due()
    assert not SavePolicy(max_steps=100, clock=clock).timed_save_due()  # no every_minutes: never


def test_for_run_reads_the_checkpoint_section() -> None:
    cfg = RunConfig()
    cfg.checkpoint.every_steps, cfg.checkpoint.every_minutes, cfg.checkpoint.save_final = 5, 0.5, False
    policy = SavePolicy.for_run(cfg, max_steps=12, stop_at_step=7, is_main=False)
    assert (policy.max_steps, policy.every_steps, policy.every_minutes, policy.save_final, policy.stop_at_step,
            policy.keeps_time) == (12, 5, 0.5, False, 7, False)
