"""The local mirror of remote datasets (`data.cache_dir`): what it holds, and its explicit removal.

Owns `check_cache_limit` (before work) and `list_mirrors` / `clean_mirrors` (`gf-train data cache-clean`).
Policy, as mosaicml-streaming and llm-foundry have it (a `local` folder per remote, an optional
`cache_limit`, nothing removed behind the user's back):

* Location: `<cache_dir>/s3/<bucket>/<prefix>/<manifest hash>/<split>` (`gf_train.data.remote.cache_dir`),
  deterministic per dataset URI and dataset version, so a restarted or resumed run, `gf-train eval` and
  `gf-train data inspect` reuse the shards already downloaded, and a dataset re-uploaded under the same URI
  gets a fresh folder (never stale shards). Streaming lets one job at a time read a folder on a node (its
  shm registry of local folders): a second job there needs its own `cache_dir` (the loader says so).
* Size while a run reads: `data.cache_limit` (streaming's `cache_limit`, least recently used shards
  evicted; each split's dataset on its own). Without it a mirror grows to the split's decompressed size.
  Streaming deletes the zstd form after decompressing a downloaded shard (`keep_zip=False`), so a mirror
  holds one copy of each shard.
* Removal: only explicit. `clean_mirrors` deletes whole mirror folders (every version, or those of given
  URIs, or with `stale` those that are no longer the dataset's current version on the store), and only
  folders of the layout above: anything else under `cache_dir` is left alone. A mirror that a live job on
  this node reads is kept (streaming's shm registry says which; jobs on other nodes sharing a network
  `cache_dir` cannot be seen: keep the cache node-local).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gf_train.data.compat import local_dirs_in_use

_DIGEST = re.compile(r"^[0-9a-f]{16}$")  # remote.cache_dir's manifest hash
_SPLIT_DIRS = {"train", "val", "data"}  # remote.cache_dir's split folder names


@dataclass(frozen=True)
class Mirror:
    """One dataset version mirrored under the cache: <root>/s3/<bucket>/<prefix>/<digest>/."""

    path: Path
    uri: str  # the dataset root, s3://bucket/prefix
    digest: str  # hash of the manifest the shards belong to
    nbytes: int


def check_cache_limit(streams: Iterable[Any], limit: str | None, where: str, option: str = "data.cache_limit"
                      ) -> None:
    """ValueError (one line) unless `limit` (the setting `option`) is at least streaming's minimum for one split
    of remote `streams` (`StreamConfig`s with s3:// paths): more than their index files and 4x their largest
    shard (zstd + raw both count while a shard is decompressed). Reads each split's index.json from the store."""
    from gf_train.config.data import parse_bytes
    from gf_train.data.remote import is_remote, read_index

    streams = list(streams)
    if limit is None or not streams or not all(is_remote(s.path) for s in streams):
        return
    nbytes = parse_bytes(limit, option)
    index_bytes, largest = 0, 0
    for s in streams:
        text = read_index(s.path)
        index_bytes += len(text.encode())
        index = json.loads(text)
        for shard in index.get("shards", []):
            zipped = (shard.get("zip_data") or {}).get("bytes", 0)
            largest = max(largest, int(shard["raw_data"]["bytes"]) + int(zipped))
    need = max(4 * largest, index_bytes + 1)
    if nbytes < need:
        raise ValueError(f"{option}={limit} ({nbytes:,} bytes) is too small for {where}: streaming needs at least 4x "
                         f"its largest shard, {need:,} bytes; raise {option} or leave it unset")


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _is_mirror(d: Path) -> bool:
    kids = list(d.iterdir())
    return (_DIGEST.match(d.name) is not None and bool(kids)
            and all(k.is_dir() and not k.is_symlink() and k.name in _SPLIT_DIRS for k in kids))


def list_mirrors(cache_dir: str | Path) -> list[Mirror]:
    """Every mirror folder under `cache_dir`, sorted by URI (symlinks are never followed)."""
    base = Path(cache_dir).expanduser().resolve() / "s3"
    out: list[Mirror] = []
    if not base.is_dir():
        return out
    stack = [base]
    while stack:
        d = stack.pop()
        for child in sorted(d.iterdir()):
            if not child.is_dir() or child.is_symlink():
                continue
            if d != base and _is_mirror(child):  # base's children are buckets
                parts = child.parent.relative_to(base).parts
                prefix = "/".join(parts[1:]) if parts[1:] != ("_",) else ""
                uri = f"s3://{parts[0]}/{prefix}".rstrip("/")
                out.append(Mirror(child, uri, child.name, _size(child)))
            else:
                stack.append(child)
    return sorted(out, key=lambda m: (m.uri, str(m.path)))


def _dataset_uri(uri: str) -> str:
    """s3://b/p/train/ -> s3://b/p (the folder a mirror is listed under)."""
    uri = uri.rstrip("/")
    head, _, last = uri.rpartition("/")
    return head if last in _SPLIT_DIRS and head.count("/") >= 2 else uri


def _current_digest(uri: str) -> str | None:
    """The manifest hash of the dataset now at `uri` (None: no finished dataset there any more)."""
    import hashlib

    from gf_train.data.remote import read_manifest_text

    try:
        text, _ = read_manifest_text(uri)
    except FileNotFoundError:
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clean_mirrors(cache_dir: str | Path, uris: Iterable[str] = (), *, stale: bool = False, dry_run: bool = False,
                  log: Callable[[str], Any] = print) -> list[Mirror]:
    """Remove mirrors under `cache_dir`: all of them, or those of the datasets `uris` (roots or split URIs);
    with `stale`, only versions that are not the current one on the store (the store is asked first: a
    RemoteError for credentials/bucket/endpoint stops before anything is removed). Mirrors a live job on this
    node reads (streaming's registry, `compat.local_dirs_in_use`) are kept. Returns what was (with `dry_run`:
    would be) removed."""
    wanted = {_dataset_uri(u) for u in uris}
    chosen = [m for m in list_mirrors(cache_dir) if not wanted or m.uri in wanted]
    if stale:
        current = {uri: _current_digest(uri) for uri in sorted({m.uri for m in chosen})}
        chosen = [m for m in chosen if current[m.uri] != m.digest]
    base = Path(cache_dir).expanduser().resolve() / "s3"
    in_use = local_dirs_in_use()
    busy = [m for m in chosen if any(str(split) in in_use for split in m.path.iterdir())]
    for m in busy:
        log(f"keeping {m.path} ({m.uri}): a running job on this node reads it")
    chosen = [m for m in chosen if m not in busy]
    for m in chosen:
        log(f"{'would remove' if dry_run else 'removing'} {m.path} ({m.uri}, {m.nbytes / 1e6:.1f} MB)")
        if dry_run:
            continue
        shutil.rmtree(m.path)
        d = m.path.parent
        while d != base and d.is_dir() and not any(d.iterdir()):  # empty <bucket>/<prefix> folders
            d.rmdir()
            d = d.parent
    total = sum(m.nbytes for m in chosen)
    log(f"{len(chosen)} mirror(s), {total / 1e6:.1f} MB {'to remove' if dry_run else 'removed'} under {base.parent}")
    return chosen
