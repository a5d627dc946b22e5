"""Evaluation: loss, perplexity and bits per byte of a model on a tokenized (MDS) split. One module for both
the trainer's validation (`gf_train.train.loop`) and `gf-train eval`, so the two report the same number for
the same model and the same set.

The set (`choose_samples`): the whole split when its predicted tokens fit the budget `max_tokens`
(`eval.max_tokens` in the run config, `--max-tokens` for `gf-train eval`; None = no budget), otherwise a
fixed random subset of `max_tokens // seq_len` samples drawn once with `seed` (the run's `dist.seed`), in
ascending sample order. Samples are read by global id from the split's streams in their natural order
(`gf_train.data.open_split`); a sample is `seq_len + 1` tokens, inputs the first `seq_len`, targets the
last `seq_len`.

Loss is the mean cross entropy in nats per predicted token over the whole set: every batch adds its mean
loss times its predicted tokens (float64) to a `LossTally`, ranks add their tallies. With W ranks, rank r
takes the set's samples r, r + W, ... (`rank_batches`); every rank runs the same number of forwards (a
rank with fewer samples runs a zero-weight one), as ZeRO-3 requires. Every forward has the same shape: a
short last batch is filled up with rows whose targets are all IGNORE (-100, which the loss skips), so a
compiled model (`dist.compile`) compiles validation once instead of once more per odd batch size. Bits per
byte converts the loss with the manifests' UTF-8 bytes per token of the split (`gf_train.data.bits_per_byte`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F


class SampleSource(Protocol):
    """Random access to a split's samples (`gf_train.data.loader.Loader` has it)."""

    @property
    def num_samples(self) -> int: ...

    def sample(self, i: int) -> np.ndarray: ...


@dataclass(frozen=True)
class EvalSet:
    """Which samples of a split are evaluated."""

    ids: np.ndarray  # global sample ids, ascending
    total: int  # samples in the split
    seq_len: int  # predicted tokens per sample
    seed: int | None  # the subset's seed; None: the whole split
    split: str = "val"

    def describe(self) -> str:
        if self.seed is None:
            return f"the whole {self.split} split ({self.total:,} samples, {self.total * self.seq_len:,} tokens)"
        return (f"a fixed random subset of the {self.split} split: {len(self.ids):,} of {self.total:,} samples "
                f"({len(self.ids) * self.seq_len:,} tokens, seed {self.seed})")


def choose_samples(total: int, seq_len: int, max_tokens: int | None, seed: int, split: str = "val") -> EvalSet:
    """The whole split if `total * seq_len <= max_tokens` (or no budget), else a seeded random subset."""
    if total < 1:
        raise ValueError(f"the {split} split has no samples to evaluate; re-tokenize with more validation data")
    if max_tokens is None or total * seq_len <= max_tokens:
        return EvalSet(np.arange(total, dtype=np.int64), total, seq_len, None, split)
    k = max(1, max_tokens // seq_len)
    ids = np.sort(np.random.default_rng(seed).choice(total, size=k, replace=False)).astype(np.int64)
    return EvalSet(ids, total, seq_len, seed, split)


IGNORE = -100  # a target the loss skips (F.cross_entropy's default ignore_index)


def rank_batches(source: SampleSource, ids: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(inputs [batch_size, T], targets [batch_size, T], real rows) for this rank's samples
    ids[rank::world_size], `batch_size` at a time. Every rank yields the same number of batches, all of
    `batch_size` rows: the rows after the real ones repeat a sample with IGNORE targets. A batch with 0 real
    rows (a rank with fewer samples) keeps the targets of its first row so that its loss is finite; the
    caller does not count it."""
    mine = ids[rank::world_size]
    per_rank = math.ceil(len(ids) / world_size)  # the most samples a rank gets
    n_batches = math.ceil(per_rank / batch_size)  # the same on every rank
    for j in range(n_batches):
        chunk = mine[j * batch_size:(j + 1) * batch_size]
        real = len(chunk)
        rows = torch.from_numpy(np.stack([np.asarray(source.sample(int(i)), np.int64)
                                          for i in (chunk if real else ids[:1])]))
        rows = torch.cat([rows, rows[:1].expand(batch_size - len(rows), -1)])  # the fill: copies of row 0, read once
        x, y = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
        y[max(real, 1):] = IGNORE
        yield x, y, real


@dataclass
class LossTally:
    """Sum of per-token losses (nats, float64), predicted tokens and samples; ranks add theirs."""

    nats: float = 0.0
    tokens: int = 0
    samples: int = 0

    def add(self, mean_loss: float | torch.Tensor, targets: torch.Tensor) -> None:
        """A batch's mean loss over its counted targets (those that are not IGNORE)."""
        counted = targets != IGNORE  # [b, T]
        n = int(counted.sum())
        self.nats += float(mean_loss) * n
        self.tokens += n
        self.samples += int(counted.any(dim=1).sum())

    def vector(self) -> torch.Tensor:
        return torch.tensor([self.nats, float(self.tokens), float(self.samples)], dtype=torch.float64)

    @staticmethod
    def from_vector(v: torch.Tensor) -> LossTally:
        return LossTally(float(v[0]), int(v[1]), int(v[2]))


@dataclass
class EvalResult:
    loss: float  # nats per predicted token
    perplexity: float
    bits_per_byte: float | None
    tokens: int
    samples: int
    split: str
    set: str  # EvalSet.describe()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bytes_per_token(manifests: Sequence[dict[str, Any]], split: str) -> float | None:
    """UTF-8 bytes per stored token of `split` over all its streams (None without byte counts)."""
    try:
        nbytes = sum(int(m["splits"][split]["utf8_bytes"]) for m in manifests)
        tokens = sum(int(m["splits"][split]["tokens"]) for m in manifests)
    except (KeyError, TypeError, ValueError):
        return None
    return nbytes / tokens if nbytes > 0 and tokens > 0 else None


def eval_result(tally: LossTally, eval_set: EvalSet, manifests: Sequence[dict[str, Any]] = ()) -> EvalResult:
    if tally.tokens == 0:
        raise ValueError(f"the {eval_set.split} split yielded no samples to evaluate")
    loss = tally.nats / tally.tokens
    bpt = bytes_per_token(manifests, eval_set.split)
    bpb = loss / math.log(2) / bpt if bpt else None
    return EvalResult(loss, math.exp(min(loss, 700.0)), bpb, tally.tokens, tally.samples, eval_set.split,
                      eval_set.describe())


def loss_tally(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], source: SampleSource, eval_set: EvalSet,
        batch_size: int, rank: int = 0, world_size: int = 1, device: torch.device | None = None) -> LossTally:
    """This rank's tally: `loss_fn(inputs, targets)` returns the mean token cross entropy of a batch over
    its targets that are not IGNORE."""
    tally = LossTally()
    with torch.no_grad():
        for x, y, real in rank_batches(source, eval_set.ids, batch_size, rank, world_size):
            loss = loss_fn(x.to(device), y.to(device)) if device is not None else loss_fn(x, y)
            if real:
                tally.add(loss.detach().double().cpu(), y)
    return tally


def model_loss_fn(model: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean token cross entropy of a gf-train model's logits (refuses ids outside its vocabulary)."""
    vocab = model.cfg.vocab_size

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        top = int(torch.maximum(x.max(), y.max()))
        if top >= vocab:
            raise ValueError(f"the data holds token id {top} >= the model's vocab_size {vocab}; was it tokenized "
                             "with this model's tokenizer?")
        return F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())

    return loss_fn


def resolve_split(data: str | Path, split: str = "val") -> tuple[str | Path, str]:
    """A dataset root (with train/ and val/) or a split folder -> (split folder, split name). Local folders and
    s3:// URIs (whose manifest is read here: missing credentials, bucket or endpoint fail in one line)."""
    from gf_train.data.remote import is_remote

    if is_remote(str(data)):
        from gf_train.data import read_manifest

        uri = str(data).rstrip("/")
        m = read_manifest(uri)
        root = str(m["_path"]).rsplit("/", 1)[0]  # the manifest sits next to the split folders
        name = split if uri == root else uri.rsplit("/", 1)[1]
        if name not in m.get("splits", {}):
            raise ValueError(f"{root} has no {name!r} split (splits: {', '.join(m.get('splits', {}))}); pass "
                             "--split or the URI of one of its split folders")
        return f"{root}/{name}", name
    p = Path(data)
    if (p / "index.json").is_file():
        return p, p.name
    if (p / split / "index.json").is_file():
        return p / split, split
    raise ValueError(f"{p} is not a tokenized dataset (no index.json in it or in {p / split}); "
                     "pass the --out folder of data_prep/tokenize.py or one of its split folders")


def evaluate(model: Any, data: str | Path, split: str = "val", batch_size: int = 8, max_tokens: int | None = None,
             seed: int = 0, *, cache_dir: str | None = None, cache_limit: str | None = None) -> EvalResult:
    """`gf-train eval`: `model` (eval mode) on a dataset root or split folder, in this process. An s3:// split
    is mirrored under `cache_dir` within `cache_limit` (`data.cache_dir` / `data.cache_limit`, their defaults
    when None), as the trainer does."""
    from gf_train.data import open_split, read_manifest

    split_dir, split_name = resolve_split(data, split)
    manifest = read_manifest(split_dir)
    with open_split([str(split_dir)], int(manifest["seq_len"]), cache_dir=cache_dir,
                    cache_limit=cache_limit) as source:
        eval_set = choose_samples(source.num_samples, int(manifest["seq_len"]), max_tokens, seed, split_name)
        return eval_result(loss_tally(model_loss_fn(model), source, eval_set, batch_size), eval_set, [manifest])
