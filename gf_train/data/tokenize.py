"""`tokenize_corpus`: raw text corpora -> MDS train/val datasets + manifest; and its command line.

Owns the `data_prep/tokenize.py` / `gf-train data tokenize` flags (`add_arguments`, `main`) and the
run around the two passes of `gf_train.data.pack`: output checks, the temporary folder, the worker
pool, the progress bar, the manifest and the final rename.

Safety: everything is written to `<out>/../.<name>.tmp-<id>/` and renamed to `<out>` at the very end,
so a crash leaves no finished-looking output (a rerun removes the stale temporary folder). A non-empty
`<out>` is refused without `--overwrite`, except when it is the finished result of the same arguments
on unchanged inputs (same paths, sizes, mtimes), which is a no-op that says so.

Workers: `--workers N` runs both passes in N processes (forkserver, see `_preload`: started first and loads
the tokenizer once for all workers); with N = 1 they run in this process. Pool workers keep the tokenizer
to one thread (`TOKENIZERS_PARALLELISM=false`, `RAYON_NUM_THREADS=1`; pyrwkv-tokenizer and HF tokenizers
both use rayon in `encode_batch`), so N workers use N cores; the command line (`main`) does the same for
this process. Pass-2 shards compress with N zstd threads each (same bytes). Work units (2 MB
of jsonl by default: small enough to balance 2+ workers on small inputs), parts and shards depend only on
the inputs, so the output is byte-identical for any N.
`--out s3://bucket/prefix`: built in a local staging folder by `tokenize_corpus`, then uploaded with the
manifest last (`gf_train.data.remote.tokenize_to_remote`).
Exit status: 0 done or no-op, 2 user error.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from gf_train.data import pack, remote
from gf_train.data.jobs import Jobs, WorkerDied
from gf_train.data.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME, write_manifest
from gf_train.data.readers import DataPrepError, InputFile, discover_inputs, plan_units
from gf_train.data.tokenizers import token_dtype


def _version() -> str:
    from gf_train import __version__

    return __version__


def _fingerprint(files: list[InputFile], tok_info: dict[str, Any], settings: dict[str, Any]) -> str:
    data = {"inputs": [(f.path, f.size, f.mtime_ns) for f in files], "tokenizer": tok_info, "settings": settings,
            "tool_version": _version(), "format_version": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def _hash_file(path: str) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def _check_output(out: Path, fingerprint: str, overwrite: bool) -> bool:
    """True when `out` already holds this exact result. Raises when it holds something else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataPrepError(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return False
    mf = out / MANIFEST_NAME
    if not overwrite and mf.is_file():
        try:
            if json.loads(mf.read_text()).get("fingerprint") == fingerprint:
                return True
        except json.JSONDecodeError:
            pass
    if not overwrite:
        raise DataPrepError(f"--out {out} is not empty and is not the result of these arguments; "
                            "pass --overwrite to replace it, or choose another --out")
    return False


class _Progress:
    def __init__(self, total_bytes: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenize", disable=not enabled,
                        file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        self.t0, self.docs, self.tokens, self.nbytes = time.perf_counter(), 0, 0, 0

    def update(self, s: pack.UnitStats) -> None:
        self.docs, self.tokens, self.nbytes = self.docs + s.docs, self.tokens + s.tokens, self.nbytes + s.nbytes
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.docs / dt:,.0f} docs/s, {self.tokens / dt / 1e6:.2f} Mtok/s, "
                                 f"{self.nbytes / dt / 1e6:.1f} MB/s", refresh=False)
        self.bar.update(s.nbytes)

    def close(self) -> None:
        self.bar.close()


_ONE_THREAD = {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}


def _init_worker(spec: str, eos: int | str | None) -> None:
    """Pool worker start: one tokenizer thread per worker (N workers = N cores), then load the tokenizer."""
    for k, v in _ONE_THREAD.items():
        os.environ.setdefault(k, v)
    pack.worker_tokenizer(spec, eos)


def _start_forkserver(spec: str, eos: int | str | None) -> None:
    """Start the pool's forkserver now (asynchronously), preloading our modules and this run's tokenizer, so
    that workers inherit a loaded tokenizer. A server that already runs (an earlier call in this process) is
    kept: its workers load a different tokenizer themselves."""
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(["gf_train.data._preload"])
    old = os.environ.get(pack.PRELOAD_ENV)
    os.environ[pack.PRELOAD_ENV] = json.dumps([spec, eos])  # the server copies the environment when spawned
    try:
        forkserver.ensure_running()
    finally:
        if old is None:
            del os.environ[pack.PRELOAD_ENV]
        else:
            os.environ[pack.PRELOAD_ENV] = old


def tokenize_corpus(inputs: list[str], out: str | Path, tokenizer: str, seq_len: int, *, text_field: str = "text",
                    val_fraction: float = 0.0, val_docs: int | None = None, workers: int = 1,
                    overwrite: bool = False, skip_bad_records: bool = False, eos: int | str | None = None,
                    progress: bool = True, part_samples: int | None = None, shard_bytes: int = 1 << 26,
                    chunk_bytes: int = 2 << 20, log: Any = print) -> dict[str, Any]:
    """Tokenize `inputs` into `out` (see module docstring). Returns the manifest (`status`: written | noop)."""
    if seq_len < 1:
        raise DataPrepError(f"--seq-len must be >= 1, got {seq_len}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataPrepError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if val_docs is not None and (val_docs < 1 or val_fraction > 0):
        raise DataPrepError("--val-docs must be >= 1 and cannot be combined with --val-fraction")
    if workers < 1:
        raise DataPrepError(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        _start_forkserver(tokenizer, eos)  # its start and its tokenizer load overlap with this process's
    try:
        tok = pack.worker_tokenizer(tokenizer, eos)  # loaded once per process (also pass 1's with 1 worker)
    except ValueError as e:
        raise DataPrepError(str(e)) from e
    files = discover_inputs(inputs)
    out = Path(out).expanduser().resolve()
    dtype, sample_tokens = token_dtype(tok.vocab_size), seq_len + 1
    settings = {"seq_len": seq_len, "text_field": text_field, "val_fraction": val_fraction, "val_docs": val_docs,
                "skip_bad_records": skip_bad_records, "dtype": dtype}
    fp = _fingerprint(files, tok.info(), settings)
    if _check_output(out, fp, overwrite):
        log(f"{out} already holds this dataset (same inputs and arguments): nothing to do")
        m = json.loads((out / MANIFEST_NAME).read_text())
        m["status"] = "noop"
        return m
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        log(f"removing the unfinished output of an earlier run: {stale}")
        shutil.rmtree(stale, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    (work / "units").mkdir(parents=True)
    pool = None
    try:
        units = plan_units(files, chunk_bytes)
        assert units, "discover_inputs refuses empty inputs"
        if workers > 1:
            pool = mp.get_context("forkserver").Pool(workers, initializer=_init_worker, initargs=(tok.spec, eos))
        with_val = bool(val_fraction or val_docs)
        cut = None if val_docs else pack.val_cut(val_fraction)  # None: splits decided after pass 1
        per = part_samples or max(1, (256 << 20) // (sample_tokens * (2 if dtype == "uint16" else 4)))
        per_shard = pack.shard_samples(sample_tokens, dtype, shard_bytes)  # None: MDSWriter writes whole parts
        jobs = Jobs(pool, workers)
        for i, f in enumerate(files):
            jobs.add(("hash", i), _hash_file, (f.path,))
        for i, u in enumerate(units):
            jobs.add(("unit", i), pack.tokenize_unit,
                     (u, i, str(work), tok.spec, eos, dtype, text_field, skip_bad_records, cut))
        bar = _Progress(sum(u.nbytes for u in units), progress)
        stats: list[pack.UnitStats | None] = [None] * len(units)
        hashes: list[str | None] = [None] * len(files)
        done_units = 0  # units 0 .. done_units-1 are finished: their split streams are known
        cum: dict[str, list[int]] = {sp: [0] for sp in pack.SPLITS}  # per split, each done unit's start, then the end
        planned = dict.fromkeys(pack.SPLITS, 0)  # samples already given to pass-2 jobs, per split
        entries: dict[tuple[str, int, int], list[dict]] = {}  # (split, part, shard) -> index entries
        splits: dict[str, dict[str, Any]] = {}

        def add_shard(split: str, s0: int, s1: int, urgent: bool) -> None:
            """Queue pass 2 for samples [s0, s1) of `split` (a shard, or a whole part through MDSWriter)."""
            part, k = (s0 // per, (s0 % per) // per_shard) if per_shard is not None else (s0 // per, None)
            span = pack.span_of(cum[split], s0 * sample_tokens, s1 * sample_tokens)
            # zstd with `workers` threads: same bytes; no CPU lost when all workers compress (measured), and a
            # shard that runs last, or beside the end of pass 1, finishes sooner
            jobs.add(("shard", split, part, k), pack.write_shards,
                     (str(work), split, part, k, s0, s1, sample_tokens, dtype, span, shard_bytes, workers),
                     urgent=urgent)

        while len(jobs):
            try:
                tag, res = jobs.next()
            except WorkerDied as e:
                raise DataPrepError(str(e)) from e
            if tag[0] == "hash":
                hashes[tag[1]] = res
                continue
            if tag[0] == "shard":
                entries[tag[1:]] = res
                continue
            stats[tag[1]] = res
            bar.update(res)
            while done_units < len(units) and stats[done_units] is not None:
                for sp in pack.SPLITS:
                    cum[sp].append(cum[sp][-1] + (stats[done_units].splits[sp][1] if cut is not None else 0))
                done_units += 1
            if cut is not None and per_shard is not None:  # pass 2 for every full shard inside the known prefix
                for sp in pack.SPLITS if with_val else ("train",):
                    ready = cum[sp][-1] // sample_tokens
                    while (b := min((a := planned[sp]) + per_shard, (a // per + 1) * per)) <= ready:
                        add_shard(sp, a, b, urgent=True)
                        planned[sp] = b
            if done_units < len(units) or splits:
                continue
            # pass 1 is done: the splits' totals, then every shard not yet planned
            bar.close()
            if cut is None:
                try:
                    per_unit = pack.assign_splits(str(work), len(units), val_docs or 0)
                except ValueError as e:
                    raise DataPrepError(str(e)) from e
            else:
                per_unit = [s.splits for s in stats]  # type: ignore[union-attr]
            for sp in pack.SPLITS if with_val else ("train",):
                docs, tokens, nb = (sum(u[sp][k] for u in per_unit) for k in range(3))
                cum[sp] = [0, *itertools.accumulate(u[sp][1] for u in per_unit)]  # (val_docs: known only now)
                n = tokens // sample_tokens
                if n == 0:
                    raise DataPrepError(f"the {sp} split has {tokens} tokens, fewer than one sample of "
                                        f"seq_len+1 = {sample_tokens}; add data, lower --seq-len"
                                        + (" or raise --val-fraction/--val-docs" if sp == "val" else ""))
                splits[sp] = {"docs": docs, "tokens": tokens, "samples": n,
                              "remainder_tokens": tokens - n * sample_tokens, "utf8_bytes": nb}
                a = planned[sp]
                while a < n:  # shards (or whole parts through MDSWriter) up to the next part boundary
                    b = min(n, (a // per + 1) * per, a + per_shard if per_shard is not None else n)
                    add_shard(sp, a, b, urgent=False)
                    a = b
        for sp, info in splits.items():
            parts: list[list[dict]] = []
            for (_, p, _), shard_entries in sorted((k, v) for k, v in entries.items() if k[0] == sp):
                parts += [[] for _ in range(p + 1 - len(parts))]
                parts[p] += shard_entries
            assert pack.merge_parts(work / sp, parts) == info["samples"]
        pack.remove_units(str(work))
        skipped = sum(s.skipped for s in stats)
        per_file: dict[str, int] = {}
        for u, s in zip(units, stats):
            per_file[u.path] = per_file.get(u.path, 0) + s.skipped
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tool": "gf_train.data.tokenize",
            "tool_version": _version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "fingerprint": fp,
            "tokenizer": tok.info(), "seq_len": seq_len, "sample_tokens": sample_tokens, "dtype": dtype,
            "text_field": text_field, "val_fraction": val_fraction, "val_docs": val_docs,
            "val_assignment": "xxh3_64(document UTF-8) below val_fraction * 2^64, or the val_docs smallest",
            "splits": splits, "empty_docs": sum(s.empty_docs for s in stats), "skipped_records": skipped,
            "skipped_examples": [e for s in stats for e in s.skipped_examples][:20],
            "inputs": [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "xxh3_128": h,
                        "skipped_records": per_file.get(f.path, 0)} for f, h in zip(files, hashes)],
        }
        write_manifest(work, manifest)
        if out.exists():
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(trash)
            work.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    manifest["status"] = "written"
    return manifest


def summary(m: dict[str, Any]) -> str:
    t = m["tokenizer"]
    lines = [f"tokenizer {t['name']} (vocab {t['vocab_size']}, eos {t['eos_id']})"
             f", seq_len {m['seq_len']}, dtype {m['dtype']}"]
    for split, s in m["splits"].items():
        lines.append(f"  {split:5s}: {s['docs']:,} docs, {s['tokens']:,} tokens, {s['samples']:,} samples, "
                     f"{s['remainder_tokens']:,} final tokens dropped, {s['utf8_bytes']:,} UTF-8 bytes")
    lines.append(f"  skipped records: {m['skipped_records']:,}; empty documents: {m['empty_docs']:,}")
    lines += [f"    {e}" for e in m.get("skipped_examples", [])[:5]]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="file, folder or glob of .jsonl/.jsonl.gz/.jsonl.zst/.txt/.parquet, or a datasets.save_to_disk"
                        " folder (repeatable)")
    p.add_argument("--out", required=True, help="output folder (gets manifest.json, train/, val/), or "
                   "s3://bucket/prefix (built locally, then uploaded; S3_ENDPOINT_URL for S3-compatible stores)")
    p.add_argument("--tokenizer", default="rwkv_world", help="rwkv_world, a tokenizer.json, or a HF tokenizer folder")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per training sample (stored: seq_len + 1)")
    p.add_argument("--text-field", default="text", help="JSON field / column holding the text (default: text)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-fraction", type=float, default=0.0, help="fraction of documents for validation")
    val.add_argument("--val-docs", type=int, default=None, help="exact number of documents for validation")
    p.add_argument("--eos", default=None, help="document separator token (string or id); default per tokenizer")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--skip-bad-records", action="store_true", help="count and skip malformed records, don't fail")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stage-dir", default=None, help="with --out s3://...: local folder to build in before the "
                   "upload (default: the temporary folder; needs room for the dataset)")


def main(args: argparse.Namespace) -> int:
    for k, v in _ONE_THREAD.items():  # --workers 1 tokenizes here: one core, like each pool worker
        os.environ.setdefault(k, v)
    run: Any = tokenize_corpus
    if remote.is_remote(args.out):  # build locally, upload (gf_train.data.remote)
        run = functools.partial(remote.tokenize_to_remote, stage_dir=args.stage_dir)
    try:
        m = run(args.input, args.out, args.tokenizer, args.seq_len, text_field=args.text_field,
                val_fraction=args.val_fraction, val_docs=args.val_docs, workers=args.workers,
                overwrite=args.overwrite, skip_bad_records=args.skip_bad_records, eos=args.eos,
                progress=not args.no_progress)
    except DataPrepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if m["status"] == "written":
        print(f"wrote {args.out}\n{summary(m)}")
    return 0
