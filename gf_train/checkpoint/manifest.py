"""Integrity of a checkpoint: per-rank file manifests (size + xxh3_64), the `COMPLETE` record, verification.

Owner: `gf_train.checkpoint`. Every rank records, for each file it writes, its size and an xxh3_64 digest:
DeepSpeed's files are hashed from the page cache in a thread right after each is written, while the next
one is written (`Recorder.add_in_background`; DeepSpeed's own torch.save path stays untouched; streaming
torch.save through a hashing file object, `Recorder.open`, measured no faster: docs/benchmarks.md); our
JSON/YAML files are hashed from the bytes we write; DeepSpeed's copies of zero_to_*.py right after. Each rank writes
`manifest_rank_XXXXX.json`; rank 0 writes `COMPLETE` only once all of them are there, and `COMPLETE`
records each manifest's size and digest, so a checkpoint is a tree of digests rooted in `COMPLETE`.

Verification (`verify`) checks that every recorded file exists with its size (always) and its digest
(unless `checkpoint.verify_checksums=false`, which skips reading the bytes: a flipped byte is then only
found if unpickling fails). A `COMPLETE` that is not such a record (saved before manifests existed) is
accepted unverified. Problems are one-line strings naming the file and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from gf_train.checkpoint.layout import COMPLETE, atomic_write_text, fsync_dir

MANIFEST_GLOB = "manifest_rank_*.json"
CHUNK = 8 << 20  # bytes per read when hashing a file from disk


def manifest_name(rank: int) -> str:
    return f"manifest_rank_{rank:05d}.json"


def file_digest(path: Path) -> tuple[int, str]:
    """(size, xxh3_64 hex) of a file on disk."""
    h = xxhash.xxh3_64()
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


class _HashingWriter:
    """A binary file that hashes what goes through `write` (torch.save calls only write/flush)."""

    def __init__(self, path: Path, on_close: Any) -> None:
        self._f = open(path, "wb")
        self._h = xxhash.xxh3_64()
        self._size = 0
        self._path, self._on_close = path, on_close

    def write(self, data: Any) -> int:
        n = self._f.write(data)
        self._h.update(data)
        self._size += len(memoryview(data).cast("B"))
        return n

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
            self._on_close(self._path, self._size, self._h.hexdigest())

    def __enter__(self) -> _HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # failed write: close without recording
            self._f.close()
            return
        self.close()


@dataclass
class Recorder:
    """What one rank wrote into one step dir: relative path -> {size, xxh3_64}."""

    step_dir: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _pending: list[tuple[Path, Future[tuple[int, str]]]] = field(default_factory=list, repr=False)

    def _record(self, path: Path, size: int, digest: str) -> None:
        self.files[Path(path).resolve().relative_to(self.step_dir.resolve()).as_posix()] = {"size": size,
                                                                                             "xxh3_64": digest}

    def open(self, path: str | Path) -> _HashingWriter:
        """A writable binary file whose size and digest are recorded when it is closed."""
        return _HashingWriter(Path(path), self._record)

    def add_existing(self, path: Path) -> None:
        """Record a file written by code we do not control (hashed from disk, right after it was written)."""
        self._record(path, *file_digest(path))

    def add_in_background(self, path: str | Path) -> None:
        """Hash a file that was just written (still in the page cache) in a thread, while the next file is
        written; `write_manifest` waits for it. xxhash releases the GIL for large buffers."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckpt-hash")
        p = Path(path)
        self._pending.append((p, self._pool.submit(file_digest, p)))

    def wait(self) -> None:
        """Record every background hash (re-raising its error, e.g. a file that vanished)."""
        try:
            for p, fut in self._pending:
                self._record(p, *fut.result())
        finally:
            self._pending.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def write_text(self, path: Path, text: str) -> None:
        atomic_write_text(path, text)
        data = text.encode()
        self._record(path, len(data), xxhash.xxh3_64_hexdigest(data))

    def write_manifest(self, rank: int) -> Path:
        self.wait()
        path = self.step_dir / manifest_name(rank)
        atomic_write_text(path, json.dumps({"rank": rank, "files": self.files}, indent=0, sort_keys=True))
        return path


def write_complete(step_dir: Path, world_size: int) -> None:
    """Rank 0, after the barrier that follows every rank's manifest: record the manifests, then `COMPLETE`.
    Raises ValueError when a rank's manifest is missing (that rank's save did not finish)."""
    manifests: dict[str, dict[str, Any]] = {}
    for r in range(world_size):
        p = step_dir / manifest_name(r)
        if not p.is_file():
            raise ValueError(f"{p} is missing: rank {r} did not finish writing checkpoint {step_dir}")
        size, digest = file_digest(p)
        manifests[p.name] = {"size": size, "xxh3_64": digest}
    atomic_write_text(step_dir / COMPLETE, json.dumps({"world_size": world_size, "manifests": manifests},
                                                      indent=0, sort_keys=True))
    fsync_dir(step_dir)


def _check(step_dir: Path, rel: str, want: dict[str, Any], checksums: bool) -> str | None:
    p = step_dir / rel
    if not p.is_file():
        return f"{p}: missing"
    size = p.stat().st_size
    if size != want["size"]:
        return f"{p}: size {size} bytes, the manifest says {want['size']} (truncated or overwritten)"
    if checksums:
        got = file_digest(p)[1]
        if got != want["xxh3_64"]:
            return f"{p}: xxh3_64 checksum {got} differs from the manifest's {want['xxh3_64']} (corrupted bytes)"
    return None


def recorded_files(step_dir: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """(problems, [(relative path, {size, xxh3_64})...]) from `COMPLETE` and the manifests it records.
    A legacy `COMPLETE` (not a JSON record) gives no problems and no files."""
    c = step_dir / COMPLETE
    if not c.is_file():
        return [f"{c}: missing (the save was interrupted)"], []
    try:
        record = json.loads(c.read_text())
    except ValueError:
        record = None
    if not isinstance(record, dict) or "manifests" not in record:
        if any(step_dir.glob(MANIFEST_GLOB)):  # a manifest-era checkpoint whose COMPLETE record is damaged
            return [f"{c}: not a readable completion record (damaged)"], []
        return [], []  # saved before manifests existed: nothing to check against
    problems: list[str] = []
    files: list[tuple[str, dict[str, Any]]] = []
    for name, want in sorted(record["manifests"].items()):
        bad = _check(step_dir, name, want, checksums=True)  # small files: always hashed
        if bad:
            problems.append(bad)
            continue
        files += sorted(json.loads((step_dir / name).read_text())["files"].items())
    return problems, files


def check_files(step_dir: Path, files: Iterable[tuple[str, dict[str, Any]]], checksums: bool = True) -> list[str]:
    """One problem line per recorded file that is missing, has another size or (with `checksums`) digest."""
    return [bad for rel, want in files if (bad := _check(step_dir, rel, want, checksums))]


def verify(step_dir: Path, checksums: bool = True) -> list[str]:
    """All problems of a checkpoint (empty: it is intact as far as `checksums` allows to tell)."""
    problems, files = recorded_files(step_dir)
    return problems + check_files(step_dir, files, checksums)


def has_manifest(step_dir: Path) -> bool:
    return bool(recorded_files(step_dir)[1])
