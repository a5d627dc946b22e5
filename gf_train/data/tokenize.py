"""`tokenize_corpus`: raw text corpora -> MDS train/val datasets + manifest.

Owns the run around the two passes of `gf_train.data.pack`: output checks, the temporary folder, the
worker pool, the scheduler (`_Scheduler`: runs the jobs that the planner `gf_train.data.plan` decides, in
the pool or in this process, and feeds their results back to it), the progress bar, the manifest and the
final rename. Its command line (`data_prep/tokenize.py`, `gf-train data tokenize`) is `gf_train.cli.data`.

Safety: everything is written to `<out>/../.<name>.tmp-<id>/` and renamed to `<out>` at the very end,
so a crash leaves no finished-looking output (a rerun removes the stale temporary folder). A non-empty
`<out>` is refused without `--overwrite`, except when it is the finished result of the same arguments
on unchanged inputs (same paths, sizes, mtimes), which is a no-op that says so.

Workers: `--workers N` runs both passes in N processes (forkserver, see `_preload`: started first and loads
the tokenizer once for all workers); with N = 1 they run in this process. Pool workers keep the tokenizer
to one thread (`TOKENIZERS_PARALLELISM=false`, `RAYON_NUM_THREADS=1`; pyrwkv-tokenizer and HF tokenizers
both use rayon in `encode_batch`), so N workers use N cores; the command line does the same for
this process (`limit_tokenizer_threads`). Pass-2 shards compress with N zstd threads each (same bytes). Work units (2 MB
of jsonl by default: small enough to balance 2+ workers on small inputs), parts and shards depend only on
the inputs, so the output is byte-identical for any N.
`--out s3://bucket/prefix`: built in a local staging folder by `tokenize_corpus`, then uploaded with the
manifest last (`gf_train.data.remote.tokenize_to_remote`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gf_train.data import pack, plan
from gf_train.data.jobs import Jobs, WorkerDied
from gf_train.data.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME, write_manifest
from gf_train.data.readers import DataPrepError, InputFile, Unit, discover_inputs, plan_units


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


def limit_tokenizer_threads() -> None:
    """One tokenizer thread in this process (unless the user set the variables): `workers=1` tokenizes here."""
    for k, v in _ONE_THREAD.items():
        os.environ.setdefault(k, v)


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


def _check_arguments(seq_len: int, val_fraction: float, val_docs: int | None, workers: int) -> None:
    if seq_len < 1:
        raise DataPrepError(f"--seq-len must be >= 1, got {seq_len}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataPrepError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if val_docs is not None and (val_docs < 1 or val_fraction > 0):
        raise DataPrepError("--val-docs must be >= 1 and cannot be combined with --val-fraction")
    if workers < 1:
        raise DataPrepError(f"--workers must be >= 1, got {workers}")


@dataclass
class _Passes:
    """What the scheduler collected: per-unit stats, per-file hashes, per-split totals, shard index entries."""

    stats: list[pack.UnitStats]
    hashes: list[str]
    splits: dict[str, dict[str, Any]]
    entries: dict[plan.ShardJob, list[dict]]


class _Scheduler:
    """Runs the planner's jobs on `jobs` (the pool, or this process) and feeds their results back to the
    planner, which answers with the pass-2 shards that became writable, until every job is done."""

    def __init__(self, jobs: Jobs, lay: plan.Layout, files: list[InputFile], units: list[Unit], work: Path,
                 unit_args: tuple, workers: int, bar: _Progress) -> None:
        self.jobs, self.lay, self.files, self.units, self.work = jobs, lay, files, units, work
        self.unit_args = unit_args  # tokenize_unit's arguments after (unit, index, work_dir)
        self.workers, self.bar = workers, bar
        self.planner = plan.ShardPlanner(lay, len(units))

    def run(self, val_docs: int | None) -> _Passes:
        hashes: list[str | None] = [None] * len(self.files)
        entries: dict[plan.ShardJob, list[dict]] = {}
        for job in plan.pass1_jobs(len(self.files), len(self.units)):
            self._queue(job)
        while len(self.jobs):
            try:
                job, res = self.jobs.next()
            except WorkerDied as e:
                raise DataPrepError(str(e)) from e
            if isinstance(job, plan.HashJob):
                hashes[job.file] = res
            elif isinstance(job, plan.ShardJob):
                entries[job] = res
            else:
                for shard in self._unit_done(job, res, val_docs):
                    self._queue(shard)
        return _Passes(self.planner.stats, hashes, self.planner.splits, entries)  # type: ignore[arg-type]

    def _unit_done(self, job: plan.UnitJob, stats: pack.UnitStats, val_docs: int | None) -> list[plan.ShardJob]:
        self.bar.update(stats)
        ready = self.planner.unit_done(job.unit, stats)
        if self.planner.pass1_done:  # the splits' totals, then every shard not yet planned
            self.bar.close()
            if self.lay.val_cut is None:
                try:
                    per_unit = pack.assign_splits(str(self.work), len(self.units), val_docs or 0)
                except ValueError as e:
                    raise DataPrepError(str(e)) from e
            else:
                per_unit = self.planner.pass1_splits()
            ready += self.planner.finish(per_unit)
        return ready

    def _queue(self, job: plan.HashJob | plan.UnitJob | plan.ShardJob) -> None:
        work, lay = str(self.work), self.lay
        if isinstance(job, plan.HashJob):
            self.jobs.add(job, _hash_file, (self.files[job.file].path,))
        elif isinstance(job, plan.UnitJob):
            self.jobs.add(job, pack.tokenize_unit, (self.units[job.unit], job.unit, work, *self.unit_args))
        else:
            # zstd with `workers` threads: same bytes; no CPU lost when all workers compress (measured), and a
            # shard that runs last, or beside the end of pass 1, finishes sooner
            self.jobs.add(job, pack.write_shards,
                          (work, job.split, job.part, job.shard, job.s0, job.s1, lay.sample_tokens, lay.dtype,
                           self.planner.span(job), lay.shard_bytes, self.workers), urgent=job.urgent)


def _manifest(fp: str, tok_info: dict[str, Any], lay: plan.Layout, text_field: str, val_fraction: float,
              val_docs: int | None, files: list[InputFile], units: list[Unit], passes: _Passes,
              invalid_unicode: str) -> dict[str, Any]:
    per_file: dict[str, int] = {}
    for u, s in zip(units, passes.stats):
        per_file[u.path] = per_file.get(u.path, 0) + s.skipped
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "tool": "gf_train.data.tokenize",
        "tool_version": _version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "fingerprint": fp,
        "tokenizer": tok_info, "seq_len": lay.seq_len, "sample_tokens": lay.sample_tokens, "dtype": lay.dtype,
        "text_field": text_field, "val_fraction": val_fraction, "val_docs": val_docs,
        "val_assignment": "xxh3_64(document UTF-8) below val_fraction * 2^64, or the val_docs smallest",
        "splits": passes.splits, "empty_docs": sum(s.empty_docs for s in passes.stats),
        "skipped_records": sum(s.skipped for s in passes.stats),
        "skipped_examples": [e for s in passes.stats for e in s.skipped_examples][:20],
        "invalid_unicode": invalid_unicode, "replaced_records": sum(s.replaced for s in passes.stats),
        "replaced_examples": [e for s in passes.stats for e in s.replaced_examples][:20],
        "inputs": [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "xxh3_128": h,
                    "skipped_records": per_file.get(f.path, 0)} for f, h in zip(files, passes.hashes)],
    }


def _publish(work: Path, out: Path) -> None:
    """Rename the finished `work` folder to `out`, replacing an old `out` (moved aside first, then removed)."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(trash)
        work.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        work.rename(out)


def tokenize_corpus(inputs: list[str], out: str | Path, tokenizer: str, seq_len: int, *, text_field: str = "text",
                    val_fraction: float = 0.0, val_docs: int | None = None, workers: int = 1,
                    overwrite: bool = False, skip_bad_records: bool = False, eos: int | str | None = None,
                    progress: bool = True, part_samples: int | None = None, shard_bytes: int = 1 << 26,
                    chunk_bytes: int = 2 << 20, log: Any = print, replace_invalid_unicode: bool = False
                    ) -> dict[str, Any]:
    """Tokenize `inputs` into `out` (see module docstring). Returns the manifest (`status`: written | noop)."""
    _check_arguments(seq_len, val_fraction, val_docs, workers)
    if workers > 1:
        _start_forkserver(tokenizer, eos)  # its start and its tokenizer load overlap with this process's
    try:
        tok = pack.worker_tokenizer(tokenizer, eos)  # loaded once per process (also pass 1's with 1 worker)
    except ValueError as e:
        raise DataPrepError(str(e)) from e
    files = discover_inputs(inputs)
    out = Path(out).expanduser().resolve()
    lay = plan.layout(seq_len, tok.vocab_size, val_fraction=val_fraction, val_docs=val_docs,
                      part_samples=part_samples, shard_bytes=shard_bytes)
    settings = {"seq_len": seq_len, "text_field": text_field, "val_fraction": val_fraction, "val_docs": val_docs,
                "skip_bad_records": skip_bad_records, "dtype": lay.dtype,
                "invalid_unicode": text_policy(skip_bad_records, replace_invalid_unicode)}
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
        if workers > 1:
            pool = mp.get_context("forkserver").Pool(workers, initializer=_init_worker, initargs=(tok.spec, eos))
        bar = _Progress(sum(u.nbytes for u in units), progress)
        unit_args = (tok.spec, eos, lay.dtype, text_field, skip_bad_records, lay.val_cut, replace_invalid_unicode)
        passes = _Scheduler(Jobs(pool, workers), lay, files, units, work, unit_args, workers, bar).run(val_docs)
        for sp, info in passes.splits.items():
            assert pack.merge_parts(work / sp, plan.parts_of(passes.entries, sp)) == info["samples"]
        pack.remove_units(str(work))
        manifest = _manifest(fp, tok.info(), lay, text_field, val_fraction, val_docs, files, units, passes,
                             settings["invalid_unicode"])
        write_manifest(work, manifest)
        _publish(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    manifest["status"] = "written"
    return manifest


def text_policy(skip_bad_records: bool, replace_invalid_unicode: bool) -> str:
    """What happens to a record with invalid Unicode (manifest key `invalid_unicode`): error | skip | replace."""
    return "replace" if replace_invalid_unicode else "skip" if skip_bad_records else "error"


def summary(m: dict[str, Any]) -> str:
    t = m["tokenizer"]
    lines = [f"tokenizer {t['name']} (vocab {t['vocab_size']}, eos {t['eos_id']})"
             f", seq_len {m['seq_len']}, dtype {m['dtype']}"]
    for split, s in m["splits"].items():
        lines.append(f"  {split:5s}: {s['docs']:,} docs, {s['tokens']:,} tokens, {s['samples']:,} samples, "
                     f"{s['remainder_tokens']:,} final tokens dropped, {s['utf8_bytes']:,} UTF-8 bytes")
    lines.append(f"  skipped records: {m['skipped_records']:,}; empty documents: {m['empty_docs']:,}")
    lines += [f"    {e}" for e in m.get("skipped_examples", [])[:5]]
    if m.get("replaced_records"):
        lines.append(f"  records with invalid Unicode replaced by U+FFFD: {m['replaced_records']:,}")
    return "\n".join(lines)
