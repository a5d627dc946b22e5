"""Data section of the run config: which MDS datasets feed training and validation, and how.

Owner: `gf_train.data`. Paths are local folders or URIs that mosaicml-streaming understands.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StreamConfig:
    path: str = "???"  # local MDS folder (output of data_prep/tokenize.py, its train/ split)
    remote: str | None = None  # optional remote URI (s3://, gs://, ...) mirrored into `path`
    proportion: float | None = None  # mixing weight; None everywhere = natural sizes

    def __post_init__(self) -> None:
        if self.proportion is not None and self.proportion <= 0:
            raise ValueError(f"data.train[].proportion must be > 0, got {self.proportion}")


@dataclass
class DataConfig:
    train: list[StreamConfig] = field(default_factory=list)
    val: list[StreamConfig] = field(default_factory=list)
    shuffle: bool = True
    shuffle_seed: int = 1337
    num_workers: int = 0
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
