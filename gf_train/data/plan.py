"""The tokenize planner: every decision of `tokenize_corpus` about what to write, without running anything.

Owns: the storage layout fixed by the arguments before any input is read (`Layout`: sample size, dtype,
samples per part and per shard, the validation rule), the jobs of the two passes (`HashJob`, `UnitJob`,
`ShardJob`: what each job does, named, instead of positional tags) and the pass-2 plan (`ShardPlanner`):
which shards can be written once which pass-1 units are done, the splits' totals after pass 1, and the
order of the shard lists that `pack.merge_parts` joins. Pure: no files, no processes, no clock; the
scheduler in `tokenize.py` feeds it unit results and runs the jobs it returns.

Shards: part j of a split holds its samples [j*part_samples, (j+1)*part_samples); a shard is at most
`shard_samples` consecutive samples inside one part (None: MDSWriter writes the whole part as one job).
With `val_fraction` every unit knows its split streams as soon as it is tokenized, so each shard that
lies entirely inside the finished prefix of units is planned at once (pipelined with pass 1); with
`val_docs` the splits are only known after pass 1 (`pack.assign_splits`), so every shard waits for it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gf_train.data import pack
from gf_train.data.readers import DataPrepError
from gf_train.data.tokenizers import token_dtype

PART_BYTES = 256 << 20  # default part size: samples per part = this // sample bytes


class HashJob(NamedTuple):
    """Pass 0 (beside pass 1): the xxh3-128 of input file `file` for the manifest."""

    file: int


class UnitJob(NamedTuple):
    """Pass 1: tokenize work unit `unit` into the work folder."""

    unit: int


class ShardJob(NamedTuple):
    """Pass 2: write samples [s0, s1) of `split` as shard `shard` of part `part` (shard None: the whole part
    through MDSWriter). `urgent`: planned while pass 1 still runs, so it goes before queued pass-1 work."""

    split: str
    part: int
    shard: int | None
    s0: int
    s1: int
    urgent: bool


@dataclass(frozen=True)
class Layout:
    """How samples are cut and stored; fixed by the arguments and the vocabulary size."""

    seq_len: int
    dtype: str  # uint16 or uint32 (token_dtype of the vocabulary)
    part_samples: int  # samples per part (one MDS folder `part.NNNNN`)
    shard_samples: int | None  # samples per full shard; None: a sample exceeds a shard, MDSWriter writes parts
    shard_bytes: int  # MDSWriter's size_limit of a shard (0: no limit)
    val_cut: int | None  # xxh3-64 threshold of val_fraction (0: no val); None: val_docs, decided after pass 1
    splits: tuple[str, ...]  # the splits written: ("train",) or ("train", "val")

    @property
    def sample_tokens(self) -> int:
        """Tokens per stored sample: seq_len inputs + 1 shifted target."""
        return self.seq_len + 1


def layout(seq_len: int, vocab_size: int, *, val_fraction: float = 0.0, val_docs: int | None = None,
           part_samples: int | None = None, shard_bytes: int = 1 << 26) -> Layout:
    """The `Layout` of a run (arguments already checked by `tokenize_corpus`)."""
    dtype = token_dtype(vocab_size)
    sample_tokens = seq_len + 1
    per_part = part_samples or max(1, PART_BYTES // (sample_tokens * (2 if dtype == "uint16" else 4)))
    return Layout(seq_len=seq_len, dtype=dtype, part_samples=per_part,
                  shard_samples=pack.shard_samples(sample_tokens, dtype, shard_bytes), shard_bytes=shard_bytes,
                  val_cut=None if val_docs else pack.val_cut(val_fraction),
                  splits=pack.SPLITS if (val_fraction or val_docs) else ("train",))


def pass1_jobs(n_files: int, n_units: int) -> list[HashJob | UnitJob]:
    """The jobs known before anything runs, in queue order: every file's hash, then every unit."""
    return [*(HashJob(i) for i in range(n_files)), *(UnitJob(i) for i in range(n_units))]


def shard_ranges(lay: Layout, start: int, end: int, *, full_only: bool) -> list[tuple[int, int]]:
    """Consecutive sample ranges [s0, s1) from `start` up to `end`, none crossing a part boundary and none
    longer than a shard. `full_only`: stop before a range that would be cut short by `end` (the prefix of
    the stream known so far); otherwise the last range ends at `end` (the split's total)."""
    out: list[tuple[int, int]] = []
    a, per = start, lay.part_samples
    while a < end:
        b = (a // per + 1) * per  # the next part boundary
        if lay.shard_samples is not None:
            b = min(b, a + lay.shard_samples)
        if full_only and b > end:
            break
        b = min(b, end)
        out.append((a, b))
        a = b
    return out


@dataclass
class ShardPlanner:
    """The pass-2 plan, fed pass-1 results in completion order (any order: units finish out of order).

    `cum[split]`: each finished-in-order unit's first token in the split's stream, then the end of the
    last one; pass-2 jobs read their tokens from the units `span(job)` names.
    """

    lay: Layout
    n_units: int
    stats: list[pack.UnitStats | None] = field(init=False)
    done_units: int = field(default=0, init=False)  # units 0 .. done_units-1 are finished
    cum: dict[str, list[int]] = field(init=False)
    planned: dict[str, int] = field(init=False)  # samples already given to shard jobs, per split
    splits: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)  # totals, after pass 1

    def __post_init__(self) -> None:
        assert self.n_units > 0, "discover_inputs refuses empty inputs"
        self.stats = [None] * self.n_units
        self.cum = {sp: [0] for sp in pack.SPLITS}
        self.planned = dict.fromkeys(pack.SPLITS, 0)

    @property
    def pass1_done(self) -> bool:
        return self.done_units == self.n_units

    def unit_done(self, index: int, stats: pack.UnitStats) -> list[ShardJob]:
        """Record unit `index`'s result; returns the shards that became writable (val_fraction only)."""
        assert self.stats[index] is None, f"unit {index} reported twice"
        self.stats[index] = stats
        while self.done_units < self.n_units and (s := self.stats[self.done_units]) is not None:
            for sp in pack.SPLITS:
                self.cum[sp].append(self.cum[sp][-1] + (s.splits[sp][1] if self.lay.val_cut is not None else 0))
            self.done_units += 1
        if self.lay.val_cut is None or self.lay.shard_samples is None:
            return []  # splits unknown until pass 1 ends, or whole parts (MDSWriter): nothing before the end
        return self._take(full_only=True)

    def finish(self, per_unit: list[dict[str, list]]) -> list[ShardJob]:
        """After pass 1, given every unit's per-split [docs, tokens, utf8_bytes]: the splits' totals
        (`splits`) and every shard not planned yet. Raises `DataPrepError` for a split without one sample."""
        assert self.pass1_done and not self.splits, "finish() runs once, after every unit"
        st = self.lay.sample_tokens
        for sp in self.lay.splits:
            docs, tokens, nb = (sum(u[sp][k] for u in per_unit) for k in range(3))
            self.cum[sp] = [0, *itertools.accumulate(u[sp][1] for u in per_unit)]  # (val_docs: known only now)
            n = tokens // st
            if n == 0:
                raise DataPrepError(f"the {sp} split has {tokens} tokens, fewer than one sample of "
                                    f"seq_len+1 = {st}; add data, lower --seq-len"
                                    + (" or raise --val-fraction/--val-docs" if sp == "val" else ""))
            self.splits[sp] = {"docs": docs, "tokens": tokens, "samples": n,
                               "remainder_tokens": tokens - n * st, "utf8_bytes": nb}
        return self._take(full_only=False)

    def pass1_splits(self) -> list[dict[str, list]]:
        """Every unit's per-split totals as pass 1 decided them (val_fraction; val_docs: `assign_splits`)."""
        assert self.pass1_done and self.lay.val_cut is not None
        return [s.splits for s in self.stats]  # type: ignore[union-attr]

    def span(self, job: ShardJob) -> pack.Span:
        """The units holding the tokens of `job`'s samples."""
        st = self.lay.sample_tokens
        return pack.span_of(self.cum[job.split], job.s0 * st, job.s1 * st)

    def _take(self, *, full_only: bool) -> list[ShardJob]:
        jobs: list[ShardJob] = []
        per, per_shard = self.lay.part_samples, self.lay.shard_samples
        for sp in self.lay.splits:
            end = self.cum[sp][-1] // self.lay.sample_tokens if full_only else self.splits[sp]["samples"]
            for s0, s1 in shard_ranges(self.lay, self.planned[sp], end, full_only=full_only):
                shard = (s0 % per) // per_shard if per_shard is not None else None
                jobs.append(ShardJob(sp, s0 // per, shard, s0, s1, urgent=full_only))
                self.planned[sp] = s1
        return jobs


def parts_of(entries: dict[ShardJob, list[dict]], split: str) -> list[list[dict]]:
    """The index entries of `split`'s shards grouped per part, parts and shards in order (for merge_parts)."""
    parts: list[list[dict]] = []
    for job in sorted((j for j in entries if j.split == split), key=lambda j: j.s0):
        parts += [[] for _ in range(job.part + 1 - len(parts))]
        parts[job.part] += entries[job]
    return parts
