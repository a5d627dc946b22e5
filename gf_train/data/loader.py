"""The training/validation loader: mosaicml-streaming reads the MDS shards, we own the global sample order.

Owns `build_loader` and `Loader`. Design (chosen for exact and elastic resume):

* One `StreamingDataset` per split reads the streams (mixing via `Stream(proportion=...)`, local folders,
  or s3:// paths mirrored under `data.cache_dir/<manifest hash>/`, see `gf_train.data.remote`; a split of
  mirrors only is held to `data.cache_limit` by streaming's least-recently-used eviction, which changes
  what is on disk, never the sample order). Its
  `resample_streams(epoch)` gives the epoch's mixed sample ids
  and streaming's `get_shuffle` (algo `data.shuffle_algo`, seed `data.shuffle_seed`, one canonical node)
  permutes them. This *global order* depends on the data and the seed only, never on ranks or workers.
* Ordering contract. Global batch t of an epoch is `order[t*G:(t+1)*G]` (G = global_batch). It is cut
  into `world_size` contiguous chunks of G/W samples, rank r gets chunk r, and its k-th micro-batch is
  the k-th run of `micro_batch` samples inside the chunk (k = 0 .. A-1, A = G / (micro_batch * W) grad
  accumulation steps). So the micro-batches of rank 0 (k = 0..A-1), then rank 1, ... concatenate to
  exactly global batch t, whatever the world size. An epoch ends after floor(len(order) / G) global
  batches (the tail is dropped); the next epoch resamples and reshuffles with epoch+1.
* Samples are read by global index (`StreamingDataset[i]`) in a map-style torch DataLoader driven by a
  batch sampler, so worker processes (fork) only fetch: batches come back in order for any num_workers.
* State = (epoch, step in epoch, micro-batch within the step), identical on all ranks. A state saved on
  W ranks loads on W' ranks with the same G at a step boundary (the trainer saves there); a state saved
  mid-step needs the same world size and micro batch.
* Validation: unshuffled natural order, one pass of floor(N / (micro_batch * W)) steps, `iter(max_batches)`;
  or random access by global sample id (`num_samples`, `sample(i)`), which `gf_train.evaluate` uses.
* `close()` (or `with`) frees streaming's shared memory now: processes that open many splits (eval,
  inspect, notebooks) would otherwise hold it, and its descriptors, until exit.

Environment: call `build_loader` on every rank (streaming's shm registration uses barriers when
torch.distributed is initialised). RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE, which streaming reads,
are written by `gf_train.distributed.info.ensure_dist_env` (also under plain srun), and stale shm of
crashed runs is removed safely first (`compat.clean_stale_shm`, also with two jobs on one node). Zstd
shards are decompressed next to the compressed ones on first read, so local dataset folders must be
writable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from gf_train.config.data import DataConfig, StreamConfig
from gf_train.data.compat import clean_stale_shm, ensure_torchvision, local_dirs_in_use, open_dataset, release_shm
from gf_train.data.manifest import read_manifest
from gf_train.data.remote import cache_dir, is_remote, read_manifest_text
from gf_train.distributed.info import ensure_dist_env

STATE_VERSION = 1


class _Samples(torch.utils.data.Dataset):
    """Map-style view of a StreamingDataset: item i = global sample id i's tokens."""

    def __init__(self, ds: Any, sample_tokens: int) -> None:
        self.ds, self.sample_tokens = ds, sample_tokens

    def __len__(self) -> int:
        return int(self.ds.num_samples)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ds[int(i)]["tokens"]


class _Collate:
    def __init__(self, sample_tokens: int) -> None:
        self.sample_tokens = sample_tokens

    def __call__(self, rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        if any(len(r) != self.sample_tokens for r in rows):
            raise ValueError(f"an MDS sample has {len(rows[0])} tokens but seq_len + 1 = {self.sample_tokens}; "
                             "set the model's ctx_len/seq_len to the dataset's seq_len or re-tokenize")
        t = torch.from_numpy(np.stack(rows).astype(np.int64))
        return t[:, :-1], t[:, 1:]


class _BatchSampler:
    """Yields this rank's micro-batches of sample ids from a starting position (its own cursor)."""

    def __init__(self, loader: Loader, pos: tuple[int, int, int], limit: int | None) -> None:
        self.loader, self.pos, self.limit = loader, pos, limit

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.loader
        epoch, step, micro = self.pos
        n = 0
        while self.limit is None or n < self.limit:
            order = lo.epoch_order(epoch)
            if step >= len(order) // lo.step_samples:
                if not lo.train:
                    return
                epoch, step, micro = epoch + 1, 0, 0
                continue
            a = step * lo.step_samples + lo.rank * lo.rank_samples + micro * lo.micro_batch
            yield order[a:a + lo.micro_batch].tolist()
            n += 1
            micro += 1
            if micro == lo.accum:
                step, micro = step + 1, 0


class Loader:
    """Iterate `(input_ids, targets)` LongTensors [micro_batch, seq_len]; `state_dict`/`load_state_dict`."""

    def __init__(self, cfg: DataConfig, split: str, *, seq_len: int, micro_batch: int, global_batch: int,
                 world_size: int, rank: int) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        streams_cfg: list[StreamConfig] = list(cfg.train if split == "train" else cfg.val)
        if not streams_cfg:
            raise ValueError(f"data.{split} is empty: list at least one MDS folder (data_prep/tokenize.py --out X "
                             f"gives X/{split})")
        if micro_batch < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad loader geometry: micro_batch={micro_batch} world_size={world_size} rank={rank}")
        self.train, self.split, self.cfg = split == "train", split, cfg
        self.micro_batch, self.world_size, self.rank, self.seq_len = micro_batch, world_size, rank, seq_len
        if self.train:
            if global_batch % (micro_batch * world_size):
                raise ValueError(f"global_batch {global_batch} is not divisible by micro_batch {micro_batch} x "
                                 f"world_size {world_size}; change dist.global_batch or dist.micro_batch")
            self.global_batch = global_batch
        else:
            self.global_batch = micro_batch * world_size  # validation: no accumulation
        self.step_samples = self.global_batch
        self.rank_samples = self.global_batch // world_size
        self.accum = self.rank_samples // micro_batch
        for s in streams_cfg:
            self._check_seq_len(s, seq_len)
        ensure_dist_env(rank, world_size)  # streaming reads RANK/WORLD_SIZE/LOCAL_* from the environment
        if cfg.clean_stale_shm:
            clean_stale_shm()
        ensure_torchvision()
        from streaming import Stream

        pairs = [self._local_remote(s) for s in streams_cfg]
        streams = [Stream(local=local, remote=remote, proportion=s.proportion)
                   for s, (local, remote) in zip(streams_cfg, pairs)]
        # streaming evicts shards of every stream of the dataset: only a split that is all mirrors gets a limit
        # (DataConfig refuses a limit on a split mixing local and remote streams)
        limit = cfg.cache_limit_bytes() if all(remote for _, remote in pairs) else None
        mirrors = [local for local, remote in pairs if remote]
        if mirrors and set(map(os.path.abspath, mirrors)) & set(map(os.path.abspath, local_dirs_in_use())):
            raise ValueError(self._busy(mirrors))  # streaming would retry 100 times, leaking descriptors, then raise
        try:
            self.ds = open_dataset(streams=streams, batch_size=micro_batch, shuffle=self.train and cfg.shuffle,
                                   shuffle_seed=cfg.shuffle_seed, shuffle_algo=cfg.shuffle_algo,
                                   num_canonical_nodes=1, epoch_size=cfg.epoch_size if self.train else None,
                                   cache_limit=limit)
        except ValueError as e:
            if str(e).startswith("Reused local directory") and mirrors:
                raise ValueError(self._busy(mirrors)) from None
            if limit is None or "cache limit" not in str(e).lower():
                raise
            why = str(e).split(". ")[0]
            raise ValueError(f"data.cache_limit={cfg.cache_limit} is too small for data.{split} ({why}); raise it to "
                             "at least 4x the largest shard") from None
        self._order_epoch, self._order = -1, np.zeros(0, np.int64)
        self.epoch, self.step, self.micro = 0, 0, 0

    @staticmethod
    def _busy(mirrors: list[str]) -> str:
        # streaming lets one job at a time use a mirror folder (its shm registry), e.g. an eval next to the
        # training run on the same node
        return (f"another job on this node reads the mirror {', '.join(mirrors)} (mosaicml-streaming allows one job "
                "per local folder); give this one its own data.cache_dir (gf-train eval / data inspect: --cache-dir)")

    def _local_remote(self, s: StreamConfig) -> tuple[str, str | None]:
        """(local, remote) for streaming: an s3:// path is mirrored under data.cache_dir (see data/remote.py)."""
        if not is_remote(s.path):
            return s.path, s.remote
        text, _ = read_manifest_text(s.path)  # checked by _check_seq_len already: finished dataset
        return str(cache_dir(s.path, text, self.cfg.cache_dir)), s.path.rstrip("/")

    @staticmethod
    def _check_seq_len(s: StreamConfig, seq_len: int) -> None:
        try:
            m = read_manifest(s.path)
        except FileNotFoundError:
            if s.remote is None:
                raise
            return  # remote stream not mirrored yet: the collate checks the sample length
        if int(m["seq_len"]) != seq_len:
            raise ValueError(f"{m['_path']}: the data has seq_len {m['seq_len']} but the loader was asked for "
                             f"{seq_len}; set the model's ctx_len to {m['seq_len']} or re-tokenize with --seq-len")

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Global sample ids of `epoch`, in training order (see module docstring)."""
        if epoch != self._order_epoch:
            units, ids = self.ds.resample_streams(epoch)
            if self.train and self.cfg.shuffle:
                from streaming.base.shuffle import get_shuffle

                block = self.cfg.shuffle_block_size or 4_000_000
                ids = ids[get_shuffle(self.cfg.shuffle_algo, units, 1, self.cfg.shuffle_seed, epoch, block)]
            self._order_epoch, self._order = epoch, np.asarray(ids, np.int64)
        return self._order

    @property
    def num_samples(self) -> int:
        """Samples of all streams (natural sizes)."""
        return int(self.ds.num_samples)

    def sample(self, i: int) -> np.ndarray:
        """Tokens [seq_len + 1] of global sample id `i` (the streams' samples one after the other)."""
        row = self.ds[int(i)]["tokens"]
        if len(row) != self.seq_len + 1:
            raise ValueError(f"an MDS sample has {len(row)} tokens but seq_len + 1 = {self.seq_len + 1}; set the "
                             "model's ctx_len to the dataset's seq_len or re-tokenize")
        return row

    def __len__(self) -> int:
        """Micro-batches per rank in one epoch (one validation pass)."""
        return len(self.epoch_order(0)) // self.step_samples * self.accum

    def iter(self, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches from the current position (train: endless, across epochs; val: one pass from the start)."""
        pos = (self.epoch, self.step, self.micro) if self.train else (0, 0, 0)
        dl = torch.utils.data.DataLoader(
            _Samples(self.ds, self.seq_len + 1), batch_sampler=_BatchSampler(self, pos, max_batches),
            num_workers=self.cfg.num_workers, collate_fn=_Collate(self.seq_len + 1), pin_memory=self.cfg.pin_memory,
            multiprocessing_context="fork" if self.cfg.num_workers else None)
        for batch in dl:
            if self.train:
                self.micro += 1
                if self.micro == self.accum:
                    self.step, self.micro = self.step + 1, 0
                    if self.step >= len(self.epoch_order(self.epoch)) // self.step_samples:
                        self.epoch, self.step = self.epoch + 1, 0
            yield batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter()

    def close(self) -> None:
        """Free streaming's shared memory of this split now rather than at exit (see `compat.release_shm`);
        the loader is unusable afterwards. `with open_split(...) as source:` closes it."""
        release_shm(self.ds)

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position; identical on every rank."""
        return {"version": STATE_VERSION, "split": self.split, "epoch": self.epoch, "step": self.step,
                "micro": self.micro, "global_batch": self.global_batch, "micro_batch": self.micro_batch,
                "world_size": self.world_size, "shuffle": bool(self.cfg.shuffle), "shuffle_seed": self.cfg.shuffle_seed,
                "shuffle_algo": self.cfg.shuffle_algo, "epoch_samples": int(len(self.epoch_order(0))),
                "num_samples": int(self.ds.num_samples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` was saved (elastic across world sizes at step boundaries)."""
        if int(state.get("version", 0)) != STATE_VERSION:
            raise ValueError(f"data loader state version {state.get('version')} != {STATE_VERSION}")
        mine = self.state_dict()
        for key in ("split", "global_batch", "shuffle", "shuffle_seed", "shuffle_algo", "epoch_samples", "num_samples"):
            if state[key] != mine[key]:
                raise ValueError(f"cannot resume the data order exactly: checkpoint has {key}={state[key]!r}, this run "
                                 f"{mine[key]!r}; keep data.* and dist.global_batch as in the checkpointed run")
        micro = int(state["micro"])
        if micro and (state["world_size"] != self.world_size or state["micro_batch"] != self.micro_batch):
            raise ValueError(f"the data state was saved in the middle of an optimizer step (micro-batch {micro}); "
                             "it can only be resumed with the same world_size and micro_batch")
        self.epoch, self.step, self.micro = int(state["epoch"]), int(state["step"]), micro


def build_loader(cfg: DataConfig, split: str, *, seq_len: int, micro_batch: int, global_batch: int,
                 world_size: int, rank: int) -> Loader:
    """The loader of `split` for this rank (see module docstring for the ordering contract)."""
    return Loader(cfg, split, seq_len=seq_len, micro_batch=micro_batch, global_batch=global_batch,
                  world_size=world_size, rank=rank)


def open_split(paths: list[str], seq_len: int, *, world_size: int = 1, rank: int = 0,
               cache_dir: str | None = None, cache_limit: str | None = None) -> Loader:
    """Random access (`num_samples`, `sample(i)`) to the samples of MDS split folders (local, or s3:// mirrored
    under `cache_dir` within `cache_limit`: `DataConfig`'s fields and defaults), in their natural order."""
    cfg = DataConfig(val=[StreamConfig(path=p) for p in paths], shuffle=False, cache_limit=cache_limit,
                     **({} if cache_dir is None else {"cache_dir": cache_dir}))
    return Loader(cfg, "val", seq_len=seq_len, micro_batch=1, global_batch=world_size, world_size=world_size,
                  rank=rank)
