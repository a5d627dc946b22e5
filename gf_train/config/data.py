"""Data section of the run config: which MDS datasets feed training and validation, and how.

Owner: `gf_train.data`. A stream's `path` is a local split folder (`<tokenize --out>/train`) or the same on
S3 (`s3://bucket/prefix/train`, also S3-compatible stores through S3_ENDPOINT_URL; see
`gf_train/data/remote.py`), whose shards mosaicml-streaming mirrors under `cache_dir`.
The sample order contract and resume rules are documented in `gf_train/data/loader.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """Local mirror of s3:// streams, keyed by manifest hash (node-local disk on clusters)."""

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.shuffle_algo not in ("py1e", "py1br", "py1s", "py2s", "naive"):
            raise ValueError(f"data.shuffle_algo must be one of py1e, py1br, py1s, py2s, naive; "
                             f"got {self.shuffle_algo!r}")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ValueError(f"data.epoch_size must be >= 1, got {self.epoch_size}")
        props = [s.proportion is None for s in self.train]
        if any(props) and not all(props):
            raise ValueError("data.train: give a proportion to every stream or to none")
