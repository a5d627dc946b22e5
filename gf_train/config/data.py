"""Data section of the run config: which MDS datasets feed training and validation, and how.

Owner: `gf_train.data`. A stream's `path` is a local split folder (`<tokenize --out>/train`) or the same on
S3 (`s3://bucket/prefix/train`, also S3-compatible stores through S3_ENDPOINT_URL; see
`gf_train/data/remote.py`), whose shards mosaicml-streaming mirrors under `cache_dir`, within `cache_limit`.
The sample order contract and resume rules are documented in `gf_train/data/loader.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# streaming's `bytes_to_int` units (powers of 1024), so a limit means the same here and there
_BYTE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def parse_bytes(text: str | int, what: str = "data.cache_limit") -> int:
    """`"20gb"` / `"512mb"` / `"1000000"` / 1000000 -> bytes (kb, mb, gb, tb are powers of 1024, as in streaming)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b)?\s*", str(text).lower())
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"{what} must be a positive size like 50gb, 512mb or a number of bytes, got {text!r}")
    return int(float(m.group(1)) * _BYTE_UNITS[m.group(2) or "b"])


def is_remote_path(path: str) -> bool:
    """An object-store URI (`s3://...`), as `gf_train.data.remote.is_remote` (no boto3 import here)."""
    return "://" in path and not path.startswith("file://")


@dataclass
class StreamConfig:
    path: str = "???"
    """MDS split folder: local (e.g. <tokenize --out>/train) or s3://bucket/prefix/train."""
    remote: str | None = None
    """Optional remote URI mirrored into a local path (streaming's own remote/local pair)."""
    proportion: float | None = None
    """Mixing weight of this stream; null on every stream: natural sizes."""

    def __post_init__(self) -> None:
        if self.proportion is not None and self.proportion <= 0:
            raise ValueError(f"data.train[].proportion must be > 0, got {self.proportion}")
        if "://" in self.path and self.remote is not None:
            raise ValueError(f"data stream {self.path}: a remote path is cached under data.cache_dir; drop "
                             f"remote: {self.remote}")


@dataclass
class DataConfig:
    train: list[StreamConfig] = field(default_factory=list)
    """Training streams (at least one)."""
    val: list[StreamConfig] = field(default_factory=list)
    """Validation streams; empty: no validation."""
    shuffle: bool = True
    """Shuffle the training samples (validation is always read in order)."""
    shuffle_seed: int = 1337
    """Seed of the global training order (the same on every rank and world size)."""
    num_workers: int = 0
    """DataLoader worker processes per rank (0: read in the training process)."""
    pin_memory: bool = False
    """Pin host memory of the batches (faster copies to the GPU)."""
    shuffle_algo: str = "py1e"
    """mosaicml-streaming shuffle algorithm: py1e, py1br, py1s, py2s or naive."""
    shuffle_block_size: int | None = None
    """Samples per shuffle block; null: streaming's default (4,000,000)."""
    epoch_size: int | None = None
    """Samples per training epoch when mixing streams; null: all samples of all streams."""
    clean_stale_shm: bool = True
    """Remove streaming shared memory left by crashed runs (never a live job's) before loading."""
    allow_new_tokenizer: bool = False
    """Deliberate: accept --init-from weights trained with another tokenizer (continued pretraining with a new one)."""
    cache_dir: str = "~/.cache/gf-train/data"
    """Local mirror of s3:// streams: <cache_dir>/s3/<bucket>/<prefix>/<manifest hash>/<split>, the same folder
    for every run of the same dataset version, so restarts reuse the downloaded shards (node-local disk on
    clusters). Never cleaned by training: remove it with `gf-train data cache-clean`."""
    cache_limit: str | None = None
    """Most bytes the mirror of one split may hold while a run reads it (e.g. 50gb; kb/mb/gb/tb are powers of
    1024): streaming's cache_limit, evicting the least recently used shards (train and val each have their own;
    at least 4x the largest shard). null: shards stay until `gf-train data cache-clean`. Only for splits whose
    streams are all remote."""

    def cache_limit_bytes(self) -> int | None:
        """`cache_limit` in bytes (None: no limit)."""
        return None if self.cache_limit is None else parse_bytes(self.cache_limit)

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.shuffle_algo not in ("py1e", "py1br", "py1s", "py2s", "naive"):
            raise ValueError(f"data.shuffle_algo must be one of py1e, py1br, py1s, py2s, naive; "
                             f"got {self.shuffle_algo!r}")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ValueError(f"data.epoch_size must be >= 1, got {self.epoch_size}")
        if self.cache_limit is not None:
            parse_bytes(self.cache_limit)
            for split in ("train", "val"):
                kinds = {is_remote_path(s.path) or s.remote is not None for s in getattr(self, split)}
                if kinds == {True, False}:  # streaming's limit spans all streams and would evict local shards
                    raise ValueError(f"data.cache_limit evicts shards of every stream of a split, and data.{split} "
                                     "mixes local and remote streams (the local ones would be deleted); upload the "
                                     "local ones too, or set data.cache_limit=null")
        props = [s.proportion is None for s in self.train]
        if any(props) and not all(props):
            raise ValueError("data.train: give a proportion to every stream or to none")
