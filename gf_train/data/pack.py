"""The two passes of data preparation: tokenize units to flat token files, then pack splits into MDS parts.

Pass 1 (`tokenize_unit`, one call per `Unit`, any process): documents -> ids + EOS, appended to
`units/NNNNNN.tok` (raw uint16/uint32). Every document goes to train or val: with `val_fraction`, a
document is val when the xxh3-64 of its text falls below the fraction (`val_cut`; deterministic, and
duplicates never straddle the splits), decided in pass 1 itself (`unit_runs`); with `val_docs`, the
`val_docs` documents with the smallest hashes, decided between the passes (`assign_splits`, main process,
from the per-document arrays in `units/NNNNNN.npz`: token count incl. EOS, UTF-8 bytes, hash). A split's
token stream is its documents in input order (units in order, documents in order); `units/NNNNNN.<split>.npy`
holds a unit's part of it as (start, length) runs of its token file.

Pass 2 (`write_shards`, one call per shard, any process): part j of a split holds the samples
[j*part_samples, (j+1)*part_samples) of that stream, each sample being seq_len+1 consecutive tokens,
stored in MDS (zstd) shards under `<split>/part.NNNNN/`. The shards are built here with numpy, byte for
byte what streaming's `MDSWriter` writes for the same samples (`shard_samples` is its size rule;
tests/data checks the bytes against `MDSWriter`), so each shard is an independent job; a sample too
large for one shard falls back to `MDSWriter` for its whole part. `merge_parts` then writes the split's
`index.json` listing the parts' shards in order. Units, parts and shards depend only on the inputs, so
any worker count gives byte-identical shards. Only the last `total % (seq_len+1)` tokens of each split
are dropped (reported as `remainder_tokens`).

Cost per token matters here (rwkv_world encodes at ~60 ns/token): JSON lines are parsed with orjson
(see `readers`), ids become bytes with one `struct.pack` per document (about half the cost of
`np.fromiter`) and pass 2 does no per-sample Python work.
"""

from __future__ import annotations

import bisect
import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gf_train.data.readers import Unit, iter_texts
from gf_train.data.tokenizers import Tokenizer, load_tokenizer

BATCH_CHARS = 1 << 20  # texts per encode_batch call: about 1 MB of text (its ids stay in cache; 4 MB: ~5% slower)
PRELOAD_ENV = "GF_DATA_PRELOAD_TOKENIZER"  # see _preload
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
    replaced: int = 0  # records whose invalid Unicode became U+FFFD (--replace-invalid-unicode)
    replaced_examples: list[str] = field(default_factory=list)
    splits: dict[str, list] | None = None  # per split [docs, tokens, utf8_bytes], when decided in pass 1


_TOKENIZER: dict[tuple[str, str | None], Tokenizer] = {}


def worker_tokenizer(spec: str, eos: int | str | None) -> Tokenizer:
    """One tokenizer per process (pool workers load theirs on first use)."""
    key = (spec, None if eos is None else str(eos))
    if key not in _TOKENIZER:
        _TOKENIZER[key] = load_tokenizer(spec, eos)
    return _TOKENIZER[key]


_STRUCT_CODE = {"uint16": "H", "uint32": "I"}  # native order, like numpy's


def tokenize_unit(unit: Unit, index: int, work_dir: str, spec: str, eos: int | str | None, dtype: str,
                  text_field: str, skip_bad: bool, cut: int | None, replace_invalid: bool = False) -> UnitStats:
    """Pass 1 for one unit (`replace_invalid`: the text policy of `readers.iter_texts`). Returns its counts;
    writes units/{index:06d}.tok under work_dir and, with `cut`
    (`val_cut`), the unit's split runs (`stats.splits`), else (`--val-docs`) the per-document .npz."""
    from xxhash import xxh3_64_intdigest

    tok = worker_tokenizer(spec, eos)
    stats = UnitStats(index=index, nbytes=unit.nbytes)
    lens: list[int] = []
    nbytes: list[int] = []
    hashes: list[int] = []
    code = _STRUCT_CODE[dtype]
    eos_bytes = np.array([tok.eos_id], dtype).tobytes()
    pack = struct.pack

    def on_skip(msg: str) -> None:
        stats.skipped += 1
        if len(stats.skipped_examples) < 5:
            stats.skipped_examples.append(msg)

    def on_replace(where: str) -> None:
        stats.replaced += 1
        if len(stats.replaced_examples) < 5:
            stats.replaced_examples.append(where)

    out_path = Path(work_dir) / "units" / f"{index:06d}.tok"
    with open(out_path, "wb") as out:

        def flush(batch: list[str]) -> None:
            pieces: list[bytes] = []
            add_piece, add_len = pieces.append, lens.append
            n = 0
            for x in tok.encode_batch(batch):
                k = len(x)
                add_piece(pack(f"{k}{code}", *x))  # one C call per document (np.fromiter: ~2x slower)
                add_piece(eos_bytes)
                add_len(k + 1)
                n += k + 1
            out.write(b"".join(pieces))
            stats.tokens += n

        batch: list[str] = []
        chars = 0
        for text in iter_texts(unit, text_field, skip_bad, on_skip, replace_invalid, on_replace):
            if not text:
                stats.empty_docs += 1
                continue
            raw = text.encode("utf-8")  # strict: iter_texts yields valid Unicode only
            nbytes.append(len(raw))
            hashes.append(xxh3_64_intdigest(raw))
            batch.append(text)
            chars += len(text)
            if chars >= BATCH_CHARS:
                flush(batch)
                batch, chars = [], 0
        if batch:
            flush(batch)
    stats.docs = len(lens)
    stats.utf8_bytes = int(sum(nbytes))
    a_lens, a_nbytes, a_hashes = np.asarray(lens, np.int64), np.asarray(nbytes, np.int64), np.asarray(hashes, np.uint64)
    if cut is None:
        np.savez(Path(work_dir) / "units" / f"{index:06d}.npz", lens=a_lens, nbytes=a_nbytes, hashes=a_hashes)
    else:
        stats.splits = unit_runs(work_dir, index, a_lens, a_nbytes, a_hashes < np.uint64(cut))
    return stats


def val_cut(val_fraction: float) -> int:
    """Documents whose xxh3-64 text hash is below this are validation documents."""
    return min(int(val_fraction * 2.0**64), 2**64 - 1) if val_fraction > 0 else 0


def unit_runs(work_dir: str, index: int, lens: np.ndarray, nbytes: np.ndarray, is_val: np.ndarray) -> dict[str, list]:
    """Write units/NNNNNN.<split>.npy for both splits: the (start, length) runs of the unit's token file that hold
    the split's documents, in order (adjacent documents merged into one run). Returns per split
    [docs, tokens, utf8_bytes]."""
    starts = np.cumsum(lens) - lens
    out: dict[str, list] = {}
    for split, mask in (("train", ~is_val), ("val", is_val)):
        st, ln = starts[mask].astype(np.int64), lens[mask].astype(np.int64)
        if len(st):
            first = np.r_[0, np.flatnonzero(st[1:] != st[:-1] + ln[:-1]) + 1]  # a new run starts here
            runs = np.stack([st[first], np.add.reduceat(ln, first)], axis=1)
        else:
            runs = np.zeros((0, 2), np.int64)
        np.save(Path(work_dir) / "units" / f"{index:06d}.{split}.npy", runs)
        out[split] = [int(mask.sum()), int(ln.sum()), int(nbytes[mask].sum())]
    return out


def assign_splits(work_dir: str, n_units: int, val_docs: int) -> list[dict[str, list]]:
    """`--val-docs`: the `val_docs` documents with the smallest hashes (ties by position) are val. Writes every
    unit's runs (`unit_runs`) and returns their per-split [docs, tokens, utf8_bytes]."""
    metas = [np.load(Path(work_dir) / "units" / f"{i:06d}.npz") for i in range(n_units)]
    hashes = [m["hashes"] for m in metas]
    allh = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    if val_docs >= len(allh):
        raise ValueError(f"--val-docs {val_docs} leaves no training documents (the corpus has {len(allh)})")
    order = np.lexsort((np.arange(len(allh)), allh))  # smallest hashes, ties by position
    is_val_all = np.zeros(len(allh), bool)
    is_val_all[order[:val_docs]] = True
    bounds = np.cumsum([0] + [len(h) for h in hashes])
    return [unit_runs(work_dir, i, m["lens"], m["nbytes"], is_val_all[a:b])
            for i, (m, a, b) in enumerate(zip(metas, bounds, bounds[1:]))]


Span = tuple[int, int, list[int]]  # (first unit, its offset in the split's stream, tokens of each unit in the span)


def span_of(cum: list[int], t0: int, t1: int) -> Span:
    """The units holding tokens [t0, t1) of a split's stream, given every unit's start and then the end
    (`cum`, from 0): only those travel to the pass-2 job, not the whole corpus's list."""
    lo = bisect.bisect_right(cum, t0) - 1
    hi = min(len(cum) - 1, bisect.bisect_left(cum, t1))  # units starting before t1
    return lo, cum[lo], [cum[i + 1] - cum[i] for i in range(lo, hi)]


def _gather(work_dir: str, split: str, span: Span, dtype: str, t0: int, t1: int,
            dst: np.ndarray | None = None) -> np.ndarray:
    """Tokens [t0, t1) of a split's stream (all inside `span`), copied into `dst` (allocated when None)."""
    if dst is None:
        dst = np.empty(t1 - t0, dtype)
    assert len(dst) == t1 - t0, (len(dst), t0, t1)
    first, base, unit_tokens = span
    starts = base + np.cumsum([0] + unit_tokens)
    assert starts[0] <= t0 and t1 <= starts[-1], (starts[0], starts[-1], t0, t1)
    pos = 0  # next free position in dst
    u = int(np.searchsorted(starts, t0, side="right")) - 1
    while t0 < t1:
        while t0 >= starts[u + 1]:  # skip units with no tokens in this split
            u += 1
        end = min(t1, int(starts[u + 1]))
        runs = np.load(Path(work_dir) / "units" / f"{first + u:06d}.{split}.npy")
        toks = np.memmap(Path(work_dir) / "units" / f"{first + u:06d}.tok", dtype=dtype, mode="r")
        ends = np.cumsum(runs[:, 1])
        lo, hi = t0 - int(starts[u]), end - int(starts[u])
        d = int(np.searchsorted(ends, lo, side="right"))
        while lo < hi:
            run_start = int(ends[d] - runs[d, 1])
            a, b = lo - run_start, min(hi, int(ends[d])) - run_start
            dst[pos: pos + b - a] = toks[runs[d, 0] + a: runs[d, 0] + b]
            pos += b - a
            lo += b - a
            d += 1
        del toks
        t0 = end
    return dst


def _mds_config(dtype: str, sample_tokens: int, shard_bytes: int) -> dict:
    """`MDSWriter(columns={"tokens": f"ndarray:{dtype}:{sample_tokens}"}, compression="zstd",
    size_limit=shard_bytes).get_config()`, without importing streaming."""
    encoding = f"ndarray:{dtype}:{sample_tokens}"
    return {"version": 2, "format": "mds", "compression": "zstd", "hashes": [], "size_limit": shard_bytes or None,
            "column_names": ["tokens"], "column_encodings": [encoding],
            "column_sizes": [sample_tokens * np.dtype(dtype).itemsize]}


def shard_samples(sample_tokens: int, dtype: str, shard_bytes: int) -> int | None:
    """Samples per full shard under MDSWriter's size rule, or None when one sample does not fit in a shard
    (MDSWriter then writes an empty first shard; `write_shards` leaves that case to MDSWriter)."""
    if not shard_bytes:
        return 1 << 62  # no size limit: one shard per part
    config = json.dumps(_mds_config(dtype, sample_tokens, shard_bytes), sort_keys=True).encode()
    # MDSWriter starts a new shard when size_limit < 8 + len(config) + samples * (sample bytes + 4 offset bytes)
    per = (shard_bytes - 8 - len(config)) // (sample_tokens * np.dtype(dtype).itemsize + 4)
    return per if per >= 1 else None


def _sorted_json(obj: dict) -> dict:
    return json.loads(json.dumps(obj, sort_keys=True))


def write_shards(work_dir: str, split: str, part: int, shard: int | None, s0: int, s1: int, sample_tokens: int,
                 dtype: str, span: Span, shard_bytes: int, threads: int = 1) -> list[dict]:
    """Pass 2: samples [s0, s1) of a split as shard number `shard` of <split>/part.{part:05d}/ (MDS, zstd), the
    bytes MDSWriter would write. Returns the shard's index entry (basenames relative to the part), in a list.
    `shard=None`: the whole part [s0, s1) through MDSWriter itself (for samples larger than a shard).
    `threads`: zstd compression threads; the bytes do not depend on it (zstd's multi-threaded output is the
    same for any thread count, and equals MDSWriter's `zstd.compress(data, 3)`; tests check both)."""
    out = Path(work_dir) / split / f"part.{part:05d}"
    if shard is None:
        return _write_part_mdswriter(out, work_dir, split, s0, s1, sample_tokens, dtype, span, shard_bytes)
    import zstd  # what streaming's "zstd" compression calls: zstd.compress(data, 3)

    config = _mds_config(dtype, sample_tokens, shard_bytes)
    config_data = json.dumps(config, sort_keys=True).encode("utf-8")
    n, sample_bytes = s1 - s0, sample_tokens * np.dtype(dtype).itemsize
    head = 4 + 4 * (n + 1) + len(config_data)  # sample count, n + 1 offsets, config
    raw = np.empty(head + n * sample_bytes, np.uint8)
    raw[:4] = np.frombuffer(np.uint32(n).tobytes(), np.uint8)
    offsets = head + np.arange(n + 1, dtype=np.int64) * sample_bytes
    raw[4: 4 + 4 * (n + 1)] = np.frombuffer(offsets.astype(np.uint32).tobytes(), np.uint8)
    raw[4 + 4 * (n + 1): head] = np.frombuffer(config_data, np.uint8)
    _gather(work_dir, split, span, dtype, s0 * sample_tokens, s1 * sample_tokens, raw[head:].view(dtype))
    zipped = zstd.compress(raw, 3, threads)
    raw_name = f"shard.{shard:05d}.mds"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{raw_name}.zstd", "wb") as fh:
        fh.write(zipped)
    entry = {"samples": n, "raw_data": {"basename": raw_name, "bytes": len(raw), "hashes": {}},
             "zip_data": {"basename": f"{raw_name}.zstd", "bytes": len(zipped), "hashes": {}}, **config}
    return [_sorted_json(entry)]


def _write_part_mdswriter(out: Path, work_dir: str, split: str, s0: int, s1: int, sample_tokens: int, dtype: str,
                          span: Span, shard_bytes: int) -> list[dict]:
    from gf_train.data.compat import ensure_torchvision

    ensure_torchvision()
    from streaming import MDSWriter

    step = max(1, (16 << 20) // (sample_tokens * np.dtype(dtype).itemsize))  # ~16 MB of samples per gather
    with MDSWriter(out=str(out), columns={"tokens": f"ndarray:{dtype}:{sample_tokens}"}, compression="zstd",
                   size_limit=shard_bytes, exist_ok=False) as w:
        for a in range(s0, s1, step):
            b = min(s1, a + step)
            flat = _gather(work_dir, split, span, dtype, a * sample_tokens, b * sample_tokens)
            for row in flat.reshape(b - a, sample_tokens):
                w.write({"tokens": row})
    shards = json.loads((out / "index.json").read_text())["shards"]
    (out / "index.json").unlink()
    return shards


def merge_parts(split_dir: Path, parts: list[list[dict]]) -> int:
    """Write split_dir/index.json listing the shards of part.00000 .. in order (`parts[j]`: the index entries of
    part j's shards, basenames relative to the part). Returns the sample count."""
    shards: list[dict] = []
    for p, entries in enumerate(parts):
        name = f"part.{p:05d}"
        for shard in entries:
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(key):
                    shard[key]["basename"] = f"{name}/{shard[key]['basename']}"
            shards.append(shard)
    (split_dir / "index.json").write_text(json.dumps({"version": 2, "shards": shards}))
    return sum(int(s["samples"]) for s in shards)


def remove_units(work_dir: str) -> None:
    shutil.rmtree(Path(work_dir) / "units", ignore_errors=True)
