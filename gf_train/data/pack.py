"""The two passes of data preparation: tokenize units to flat token files, then pack splits into MDS parts.

Pass 1 (`tokenize_unit`, one call per `Unit`, any process): documents -> ids + EOS, appended to
`units/NNNNNN.tok` (raw uint16/uint32) with per-document arrays (token count incl. EOS, UTF-8 bytes,
xxh3-64 of the text) in `units/NNNNNN.npz`.

Between the passes (`assign_splits`, main process) every document goes to train or val: with
`val_fraction`, a document is val when its text hash falls below the fraction (deterministic, and
duplicates never straddle the splits); with `val_docs`, the `val_docs` documents with the smallest
hashes. A split's token stream is its documents in input order (units in order, documents in order).

Pass 2 (`write_part`, one call per part, any process): part j of a split holds the samples
[j*part_samples, (j+1)*part_samples) of that stream, each sample being seq_len+1 consecutive tokens,
written with streaming's `MDSWriter` (zstd) to `<split>/part.NNNNN/`. `merge_parts` then writes the
split's `index.json` listing the parts' shards in order. Units and parts depend only on the inputs,
so any worker count gives byte-identical shards. Only the last `total % (seq_len+1)` tokens of each
split are dropped (reported as `remainder_tokens`).
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gf_train.data.readers import Unit, iter_texts
from gf_train.data.tokenizers import Tokenizer, load_tokenizer

BATCH_CHARS = 1 << 22  # texts per encode_batch call: about 4 MB of text
SPLITS = ("train", "val")


@dataclass
class UnitStats:
    index: int
    docs: int = 0
    empty_docs: int = 0
    tokens: int = 0
    utf8_bytes: int = 0
    nbytes: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)


_TOKENIZER: dict[tuple[str, str | None], Tokenizer] = {}


def worker_tokenizer(spec: str, eos: int | str | None) -> Tokenizer:
    """One tokenizer per process (pool workers load theirs on first use)."""
    key = (spec, None if eos is None else str(eos))
    if key not in _TOKENIZER:
        _TOKENIZER[key] = load_tokenizer(spec, eos)
    return _TOKENIZER[key]


def _hash64(data: bytes) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(data)


def tokenize_unit(unit: Unit, index: int, work_dir: str, spec: str, eos: int | str | None, dtype: str,
                  text_field: str, skip_bad: bool) -> UnitStats:
    """Pass 1 for one unit. Returns its counts; writes units/{index:06d}.tok and .npz under work_dir."""
    tok = worker_tokenizer(spec, eos)
    stats = UnitStats(index=index, nbytes=unit.nbytes)
    lens: list[int] = []
    nbytes: list[int] = []
    hashes: list[int] = []
    eos_tail = (tok.eos_id,)

    def on_skip(msg: str) -> None:
        stats.skipped += 1
        if len(stats.skipped_examples) < 5:
            stats.skipped_examples.append(msg)

    out_path = Path(work_dir) / "units" / f"{index:06d}.tok"
    with open(out_path, "wb") as out:

        def flush(batch: list[str]) -> None:
            ids = tok.encode_batch(batch)
            n = sum(map(len, ids)) + len(ids)
            flat = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(
                (x, eos_tail) for x in ids)), dtype=dtype, count=n)
            out.write(flat.tobytes())
            lens.extend(len(x) + 1 for x in ids)
            stats.tokens += n

        batch: list[str] = []
        chars = 0
        for text in iter_texts(unit, text_field, skip_bad, on_skip):
            if not text:
                stats.empty_docs += 1
                continue
            raw = text.encode("utf-8", "surrogatepass")
            nbytes.append(len(raw))
            hashes.append(_hash64(raw))
            batch.append(text)
            chars += len(text)
            if chars >= BATCH_CHARS:
                flush(batch)
                batch, chars = [], 0
        if batch:
            flush(batch)
    stats.docs = len(lens)
    stats.utf8_bytes = int(sum(nbytes))
    np.savez(Path(work_dir) / "units" / f"{index:06d}.npz", lens=np.asarray(lens, np.int64),
             nbytes=np.asarray(nbytes, np.int64), hashes=np.asarray(hashes, np.uint64))
    return stats


def assign_splits(work_dir: str, n_units: int, val_fraction: float, val_docs: int | None) -> dict[str, dict]:
    """Decide train/val per document; write units/NNNNNN.<split>.npy (doc start, length) and return totals."""
    metas = [np.load(Path(work_dir) / "units" / f"{i:06d}.npz") for i in range(n_units)]
    hashes = [m["hashes"] for m in metas]
    if val_docs:
        allh = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        if val_docs >= len(allh):
            raise ValueError(f"--val-docs {val_docs} leaves no training documents (the corpus has {len(allh)})")
        order = np.lexsort((np.arange(len(allh)), allh))  # smallest hashes, ties by position
        is_val_all = np.zeros(len(allh), bool)
        is_val_all[order[:val_docs]] = True
        bounds = np.cumsum([0] + [len(h) for h in hashes])
        is_val = [is_val_all[a:b] for a, b in zip(bounds, bounds[1:])]
    else:
        cut = np.uint64(min(int(val_fraction * 2.0**64), 2**64 - 1))
        is_val = [h < cut if val_fraction > 0 else np.zeros(len(h), bool) for h in hashes]
    totals = {s: {"docs": 0, "tokens": 0, "utf8_bytes": 0, "unit_tokens": []} for s in SPLITS}
    for i, (m, v) in enumerate(zip(metas, is_val)):
        starts = np.cumsum(m["lens"]) - m["lens"]
        for split, mask in (("train", ~v), ("val", v)):
            sel = np.stack([starts[mask], m["lens"][mask]], axis=1) if len(mask) else np.zeros((0, 2), np.int64)
            np.save(Path(work_dir) / "units" / f"{i:06d}.{split}.npy", sel.astype(np.int64))
            t = totals[split]
            t["docs"] += int(mask.sum())
            t["tokens"] += int(sel[:, 1].sum())
            t["utf8_bytes"] += int(m["nbytes"][mask].sum())
            t["unit_tokens"].append(int(sel[:, 1].sum()))
    return totals


def _gather(work_dir: str, split: str, unit_tokens: list[int], dtype: str, t0: int, t1: int) -> np.ndarray:
    """Tokens [t0, t1) of a split's stream."""
    starts = np.cumsum([0] + unit_tokens)
    pieces: list[np.ndarray] = []
    u = int(np.searchsorted(starts, t0, side="right")) - 1
    while t0 < t1:
        while t0 >= starts[u + 1]:  # skip units with no tokens in this split
            u += 1
        end = min(t1, int(starts[u + 1]))
        sel = np.load(Path(work_dir) / "units" / f"{u:06d}.{split}.npy")
        toks = np.memmap(Path(work_dir) / "units" / f"{u:06d}.tok", dtype=dtype, mode="r")
        ends = np.cumsum(sel[:, 1])
        lo, hi = t0 - int(starts[u]), end - int(starts[u])
        d = int(np.searchsorted(ends, lo, side="right"))
        while lo < hi:
            doc_start = int(ends[d] - sel[d, 1])
            a, b = lo - doc_start, min(hi, int(ends[d])) - doc_start
            pieces.append(np.array(toks[sel[d, 0] + a: sel[d, 0] + b]))
            lo += b - a
            d += 1
        del toks
        t0 = end
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype)


def write_part(work_dir: str, split: str, part: int, s0: int, s1: int, sample_tokens: int, dtype: str,
               unit_tokens: list[int], shard_bytes: int) -> int:
    """Pass 2: samples [s0, s1) of a split into <split>/part.{part:05d}/ (MDS, zstd). Returns samples written."""
    from gf_train.data.compat import ensure_torchvision

    ensure_torchvision()
    from streaming import MDSWriter

    out = Path(work_dir) / split / f"part.{part:05d}"
    step = max(1, (16 << 20) // (sample_tokens * np.dtype(dtype).itemsize))  # ~16 MB of samples per gather
    with MDSWriter(out=str(out), columns={"tokens": f"ndarray:{dtype}:{sample_tokens}"}, compression="zstd",
                   size_limit=shard_bytes, exist_ok=False) as w:
        for a in range(s0, s1, step):
            b = min(s1, a + step)
            flat = _gather(work_dir, split, unit_tokens, dtype, a * sample_tokens, b * sample_tokens)
            assert len(flat) == (b - a) * sample_tokens, (len(flat), a, b)
            for row in flat.reshape(b - a, sample_tokens):
                w.write({"tokens": row})
    return s1 - s0


def merge_parts(split_dir: Path, parts: int) -> int:
    """Write split_dir/index.json listing the shards of part.00000 .. in order. Returns the sample count."""
    shards: list[dict] = []
    for p in range(parts):
        name = f"part.{p:05d}"
        index = json.loads((split_dir / name / "index.json").read_text())
        for shard in index["shards"]:
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(key):
                    shard[key]["basename"] = f"{name}/{shard[key]['basename']}"
            shards.append(shard)
        (split_dir / name / "index.json").unlink()
    (split_dir / "index.json").write_text(json.dumps({"version": 2, "shards": shards}))
    return sum(int(s["samples"]) for s in shards)


def remove_units(work_dir: str) -> None:
    shutil.rmtree(Path(work_dir) / "units", ignore_errors=True)
