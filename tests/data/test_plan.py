"""gf_train.data.plan: the tokenize planner's decisions, without tokenizing anything (pure, fast)."""

from __future__ import annotations

import random

import pytest

from gf_train.data import pack, plan
from gf_train.data.readers import DataPrepError


def _stats(i: int, train_tokens: int, val_tokens: int = 0) -> pack.UnitStats:
    """A finished pass-1 unit whose documents gave these token counts per split (docs = tokens // 10)."""
    return pack.UnitStats(index=i, splits={"train": [train_tokens // 10, train_tokens, 3 * train_tokens],
                                           "val": [val_tokens // 10, val_tokens, 3 * val_tokens]})


def _check_cover(jobs: list[plan.ShardJob], lay: plan.Layout, split: str, n: int) -> None:
    """The shards of `split` cover samples [0, n) once, in order, inside parts, none longer than a shard."""
    mine = [j for j in jobs if j.split == split]
    assert [j.s0 for j in mine] == [0] + [j.s1 for j in mine[:-1]] and mine[-1].s1 == n
    for j in mine:
        assert j.s0 < j.s1 and j.part == j.s0 // lay.part_samples == (j.s1 - 1) // lay.part_samples
        if lay.shard_samples is not None:
            assert j.s1 - j.s0 <= lay.shard_samples
            assert j.shard == (j.s0 % lay.part_samples) // lay.shard_samples
        else:
            assert j.shard is None and j.s1 - j.s0 == min(lay.part_samples, n - j.s0)  # whole parts


def test_layout_follows_the_arguments() -> None:
    lay = plan.layout(63, 65536, val_fraction=0.1)
    assert lay.dtype == "uint16" and lay.sample_tokens == 64 and lay.splits == ("train", "val")
    assert lay.part_samples == (256 << 20) // (64 * 2) and lay.val_cut == pack.val_cut(0.1) > 0
    assert lay.shard_samples == pack.shard_samples(64, "uint16", 1 << 26)
    big = plan.layout(63, 65537, val_docs=5, part_samples=7, shard_bytes=0)
    assert big.dtype == "uint32" and big.part_samples == 7 and big.val_cut is None and big.splits == ("train", "val")
    train_only = plan.layout(10, 1000)
    assert train_only.splits == ("train",) and train_only.val_cut == 0
    assert plan.layout(10, 1000, shard_bytes=50).shard_samples is None  # one sample exceeds a shard


def test_pass1_jobs_hash_every_file_before_the_units() -> None:
    assert plan.pass1_jobs(2, 3) == [plan.HashJob(0), plan.HashJob(1), plan.UnitJob(0), plan.UnitJob(1),
                                     plan.UnitJob(2)]
    assert [type(j) for j in plan.pass1_jobs(1, 2)] == [plan.HashJob, plan.UnitJob, plan.UnitJob]


@pytest.mark.parametrize("per_part,per_shard", [(10, 3), (10, 10), (7, 100), (1, 1)])
def test_shard_ranges_stay_inside_parts(per_part: int, per_shard: int) -> None:
    lay = plan.Layout(seq_len=7, dtype="uint16", part_samples=per_part, shard_samples=per_shard, shard_bytes=1,
                      val_cut=0, splits=("train",))
    for start, end in [(0, 25), (3, 4), (9, 31), (5, 5)]:
        got = plan.shard_ranges(lay, start, end, full_only=False)
        if start == end:
            assert got == [] and plan.shard_ranges(lay, start, end, full_only=True) == []
            continue
        assert [a for a, _ in got] == [start] + [b for _, b in got[:-1]] and got[-1][1] == end
        assert all((b - a) <= per_shard and a // per_part == (b - 1) // per_part for a, b in got)
        full = plan.shard_ranges(lay, start, end, full_only=True)
        assert full == got[:len(full)]  # the same cuts, without one cut short by `end`
        assert all(b - a == min(per_shard, per_part - a % per_part) for a, b in full)
        if full != got:
            assert len(got) == len(full) + 1


def test_pipelined_shards_wait_for_the_finished_prefix() -> None:
    """val_fraction: units finish out of order; only shards entirely inside the units finished in order are
    planned (urgent), the rest after pass 1; together they cover each split once, whatever the order."""
    lay = plan.Layout(seq_len=9, dtype="uint16", part_samples=8, shard_samples=3, shard_bytes=1, val_cut=1,
                      splits=("train", "val"))
    tokens = [(95, 10), (40, 3), (230, 55), (0, 0), (71, 20)]  # (train, val) tokens per unit
    for seed in range(5):
        order = list(range(len(tokens)))
        random.Random(seed).shuffle(order)
        planner = plan.ShardPlanner(lay, len(tokens))
        jobs: list[plan.ShardJob] = []
        for i in order:
            before = planner.done_units
            new = planner.unit_done(i, _stats(i, *tokens[i]))
            if planner.done_units == before:
                assert new == []  # a unit past a gap adds nothing to the known prefix
            known = {sp: sum(t[k] for t in tokens[:planner.done_units]) for k, sp in enumerate(lay.splits)}
            for j in new:
                assert j.urgent and j.s1 * lay.sample_tokens <= known[j.split]
                assert j.s1 - j.s0 == min(3, 8 - j.s0 % 8)  # full shards only (a part of 8 is cut 3 + 3 + 2)
            jobs += new
        assert planner.pass1_done
        final = planner.finish(planner.pass1_splits())
        assert all(not j.urgent for j in final)
        jobs += final
        for k, sp in enumerate(lay.splits):
            total = sum(t[k] for t in tokens)
            want = {"docs": sum(t[k] // 10 for t in tokens), "tokens": total, "samples": total // 10,
                    "remainder_tokens": total % 10, "utf8_bytes": 3 * total}
            assert planner.splits[sp] == want
            _check_cover(jobs, lay, sp, total // 10)
        for j in jobs:  # the span names the units that hold exactly the job's tokens
            first, base, unit_tokens = planner.span(j)
            k = lay.splits.index(j.split)
            assert base == sum(t[k] for t in tokens[:first])
            assert base <= j.s0 * 10 and j.s1 * 10 <= base + sum(unit_tokens)
            assert unit_tokens == [t[k] for t in tokens[first:first + len(unit_tokens)]]


def test_val_docs_plans_every_shard_after_pass_1() -> None:
    lay = plan.layout(9, 1000, val_docs=3, part_samples=5, shard_bytes=1 << 26)
    planner = plan.ShardPlanner(lay, 3)
    for i in range(3):
        assert planner.unit_done(i, pack.UnitStats(index=i)) == []  # splits unknown during pass 1
    per_unit = [{"train": [5, 120, 400], "val": [1, 20, 60]}, {"train": [2, 33, 90], "val": [0, 0, 0]},
                {"train": [9, 200, 700], "val": [2, 41, 100]}]
    jobs = planner.finish(per_unit)
    assert planner.splits["train"]["samples"] == 35 and planner.splits["val"]["samples"] == 6
    assert planner.cum["train"] == [0, 120, 153, 353] and planner.cum["val"] == [0, 20, 20, 61]
    _check_cover(jobs, lay, "train", 35)
    _check_cover(jobs, lay, "val", 6)
    assert [(j.part, j.shard) for j in jobs if j.split == "val"] == [(0, 0), (1, 0)]


def test_whole_parts_when_a_sample_exceeds_a_shard() -> None:
    lay = plan.layout(39, 1000, val_fraction=0.5, part_samples=4, shard_bytes=50)
    assert lay.shard_samples is None
    planner = plan.ShardPlanner(lay, 2)
    assert planner.unit_done(0, _stats(0, 400, 200)) == []  # MDSWriter parts: nothing pipelined
    jobs = planner.unit_done(1, _stats(1, 410, 0)) + planner.finish(planner.pass1_splits())
    _check_cover(jobs, lay, "train", 20)
    _check_cover(jobs, lay, "val", 5)


def test_a_split_without_one_sample_is_a_user_error() -> None:
    lay = plan.layout(99, 1000, val_fraction=0.1)
    planner = plan.ShardPlanner(lay, 1)
    planner.unit_done(0, _stats(0, 5000, 99))
    with pytest.raises(DataPrepError, match=r"the val split has 99 tokens.*raise --val-fraction"):
        planner.finish(planner.pass1_splits())
    train_only = plan.ShardPlanner(plan.layout(99, 1000), 1)
    train_only.unit_done(0, _stats(0, 50))
    with pytest.raises(DataPrepError, match="the train split has 50 tokens"):
        train_only.finish(train_only.pass1_splits())


def test_parts_of_orders_shards_by_sample() -> None:
    jobs = [plan.ShardJob("train", s0 // 4, (s0 % 4) // 2, s0, s0 + 2, urgent=False) for s0 in (0, 2, 4, 6, 8)]
    entries = {j: [{"at": j.s0}] for j in reversed(jobs)}  # results arrive in any order
    entries[plan.ShardJob("val", 0, 0, 0, 2, urgent=True)] = [{"at": "val"}]
    assert plan.parts_of(entries, "train") == [[{"at": 0}, {"at": 2}], [{"at": 4}, {"at": 6}], [{"at": 8}]]
    assert plan.parts_of(entries, "val") == [[{"at": "val"}]]
