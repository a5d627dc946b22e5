"""gf_train.data: tokenizers, MDS dataset preparation, and the streaming loader with exact resume.

Knows no model. Importing this package is cheap: `build_loader` imports mosaicml-streaming (and with it
torch and transformers) only when called. Public API:

* `build_loader(cfg, split, *, seq_len, micro_batch, global_batch, world_size, rank) -> Loader`
* `open_split(paths, seq_len) -> Loader`: random access by sample id (`num_samples`, `sample(i)`), local or s3://
* `read_manifest(path)`, `check_vocab(source, model_vocab_size)`, `bits_per_byte(loss, manifest)`
* `tokenizers.load_tokenizer(spec)`, `tokenize.tokenize_corpus(...)`, `compat.ensure_torchvision()`
* `remote.tokenize_to_remote(...)`, `remote.upload_dataset(local, uri)`: datasets on s3:// (paths in
  `data.train`/`data.val`, `read_manifest`, `open_split`, `gf-train eval` and `data inspect` take s3:// URIs)
* `cache.clean_mirrors(cache_dir, uris)`, `cache.check_cache_limit(...)`: the local mirror of s3:// datasets
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gf_train.data.manifest import bits_per_byte, bytes_per_token, check_vocab, read_manifest

if TYPE_CHECKING:
    from gf_train.config.data import DataConfig
    from gf_train.data.loader import Loader

__all__ = ["build_loader", "open_split", "read_manifest", "check_vocab", "bits_per_byte", "bytes_per_token"]


def build_loader(cfg: DataConfig, split: str, *, seq_len: int, micro_batch: int, global_batch: int,
                 world_size: int, rank: int) -> Loader:
    """See `gf_train.data.loader.build_loader`."""
    from gf_train.data.loader import build_loader as _build

    return _build(cfg, split, seq_len=seq_len, micro_batch=micro_batch, global_batch=global_batch,
                  world_size=world_size, rank=rank)


def open_split(paths: list[str], seq_len: int, *, world_size: int = 1, rank: int = 0,
               cache_dir: str | None = None, cache_limit: str | None = None) -> Loader:
    """See `gf_train.data.loader.open_split`."""
    from gf_train.data.loader import open_split as _open

    return _open(paths, seq_len, world_size=world_size, rank=rank, cache_dir=cache_dir, cache_limit=cache_limit)
