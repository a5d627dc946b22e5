"""Benchmark: end-to-end `tokenize_corpus` (data_prep/tokenize.py) vs the raw tokenizer's `encode_batch`.

Same text for both, in one run, with 1 and 2 workers, one core per worker on both sides
(RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false for this process and every child: pyrwkv-tokenizer
and HF tokenizers would otherwise spread one `encode_batch` over all cores). Raw rate with N workers: N
processes, each calling `encode_batch` on 1/N of the documents already in memory (the slowest worker's
`encode_batch` time, measured in the worker, ids lists freed inside the timing), two ways: in one call
over all of them ("one call": slower for fast tokenizers, whose millions of Python ints then spill out of
the caches) and in calls of about `pack.BATCH_CHARS` characters ("batches": the tokenizer's best rate,
and the baseline of the ratio). End-to-end: `tokenize_corpus` on the jsonl of the same documents:
reading, JSON parsing, tokenizing, ids to bytes, the split decision, MDS (zstd) writing, input hashing
and the manifest; a first untimed run imports everything and starts the forkserver, and each timed run
starts its own worker pool. Each repeat times, back to back, the raw rates and end-to-end with 1 worker,
the same with 2, then the peers; the tables give medians (min-max) over --repeats and ratios of medians.

Peers, in the same run on the same jsonl (`peer_routes.py`): RWKV-LM's make_data.py route (per-document
encode with the same Rust tokenizer, binidx writer) and llm-foundry's convert_dataset_json.py route
(datasets json loading, per-document tokenizer call, concatenation into fixed-length samples,
streaming.MDSWriter), each one process, timed right after tokenize.py's runs of the same repeat. The
second table gives their rates, tokenize.py's at 1 and 2 workers, its 2 vs 1 worker scaling, and its
ratios to them with 2 workers (a user's run on this machine: both cores; neither peer script can use a
second one) and, in parentheses, with 1. All rates count the same tokens (EOS not counted); token
totals are checked equal.

    python benchmarks/bench_tokenize.py [--mb 24] [--bpe-mb 4] [--repeats 5] [--out DIR]

Prints two Markdown tables (for docs/benchmarks.md, section "Tokenization").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.update(RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")  # before any tokenizer: 1 core/worker

from peer_routes import foundry_tokenizer, llm_foundry_convert_json, rust_encoder, rwkv_lm_make_data  # noqa: E402

from gf_train.data.pack import BATCH_CHARS  # noqa: E402
from gf_train.data.tokenize import tokenize_corpus  # noqa: E402
from gf_train.data.tokenizers import load_tokenizer  # noqa: E402


def make_docs(mb: float) -> list[str]:
    """Real-looking text: the standard library's own source files, one document per file, repeated."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    docs, size = [], 0
    while size < mb * 1e6:
        for f in files:
            try:
                t = f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if t.strip():
                docs.append(t)
                size += len(t.encode())
                if size >= mb * 1e6:
                    break
    return docs


_TOK = None


def _init(spec: str) -> None:
    global _TOK
    _TOK = load_tokenizer(spec)


def _count(texts: list[str], batch_chars: int | None) -> tuple[int, float]:
    """Tokens and seconds of `encode_batch` alone (timed in the worker: sending the text there is not counted),
    in one call (batch_chars None) or in calls of about batch_chars characters."""
    batches, cur, chars = [], [], 0
    for t in texts:
        cur.append(t)
        chars += len(t)
        if batch_chars and chars >= batch_chars:
            batches.append(cur)
            cur, chars = [], 0
    batches += [cur] if cur else []
    t = time.perf_counter()
    n = 0
    for b in batches:
        n += sum(map(len, _TOK.encode_batch(b)))  # type: ignore[union-attr]
    return n, time.perf_counter() - t


def raw_rate(spec: str, docs: list[str], workers: int, batch_chars: int | None) -> tuple[int, float]:
    chunks = [(docs[i::workers], batch_chars) for i in range(workers)]
    with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(spec,)) as pool:
        pool.starmap(_count, [([d[:100]], None) for d in docs[:workers]])  # warm up: tokenizers loaded
        res = pool.starmap(_count, chunks)
        return sum(n for n, _ in res), max(t for _, t in res)  # the slowest worker


def e2e_rate(spec: str, jsonl: Path, out: Path, workers: int) -> tuple[int, float]:
    t = time.perf_counter()
    m = tokenize_corpus([str(jsonl)], out, spec, 2048, workers=workers, overwrite=True, progress=False,
                        log=lambda s: None)
    dt = time.perf_counter() - t
    return sum(s["tokens"] for s in m["splits"].values()), dt


def peer_rate(route: str, spec: str, jsonl: Path, out: Path, eos: int, want_tokens: int) -> float:
    """Seconds of one peer route on `jsonl` (its output replaced); checks it stored `want_tokens` (EOS included).
    The tokenizer is loaded before the timing, as in tokenize.py's timed runs (loaded by the warm-up run)."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if route == "rwkv-lm":
        encode = rust_encoder(spec)
        t = time.perf_counter()
        n = rwkv_lm_make_data(jsonl, out / "data", encode, eos)
    else:
        tokenize = foundry_tokenizer(spec)
        t = time.perf_counter()
        n = llm_foundry_convert_json(jsonl, out / "mds", tokenize, eos, 2048 + 1)
    dt = time.perf_counter() - t
    assert n == want_tokens, (route, n, want_tokens)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=24.0, help="MB of text for rwkv_world")
    ap.add_argument("--bpe-mb", type=float, default=4.0, help="MB of text for the HF BPE tokenizer")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per case (medians reported)")
    ap.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    scratch = Path(args.out or tempfile.mkdtemp(prefix="bench_tok_"))
    scratch.mkdir(parents=True, exist_ok=True)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from gf_train.data.compat import ensure_torchvision

    ensure_torchvision()
    import datasets  # noqa: F401  (imported before any timing, as tokenize.py's modules are)
    import streaming  # noqa: F401

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(make_docs(1.0), trainers.BpeTrainer(vocab_size=8192, special_tokens=["<|endoftext|>"],
                                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.save(str(scratch / "bpe.json"))
    rows, peer_rows = [], []
    cases = (("rwkv_world", "rwkv_world", args.mb), ("HF BPE 8k", str(scratch / "bpe.json"), args.bpe_mb))
    for name, spec, mb in cases:
        docs = make_docs(mb)
        jsonl = scratch / f"{name.split()[0]}.jsonl"
        jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        peers: dict[str, list[float]] = {"rwkv-lm": [], "llm-foundry": []}
        raw1: dict[int, list[float]] = {1: [], 2: []}
        raw: dict[int, list[float]] = {1: [], 2: []}
        e2e: dict[int, list[float]] = {1: [], 2: []}
        eos = load_tokenizer(spec).eos_id
        for w in (1, 2):
            e2e_rate(spec, jsonl, scratch / f"out_{w}", w)  # untimed: imports, forkserver start
        for _ in range(args.repeats):  # each repeat: every measurement back to back (the load drifts)
            for w in (1, 2):
                n_one, t_one = raw_rate(spec, docs, w, None)
                n_raw, t_raw = raw_rate(spec, docs, w, BATCH_CHARS)
                n_e2e, t_e2e = e2e_rate(spec, jsonl, scratch / f"out_{w}", w)
                assert n_one == n_raw == n_e2e - len([d for d in docs if d]), (n_raw, n_e2e)  # e2e: + 1 EOS/doc
                raw1[w].append(n_raw / t_one / 1e6)
                raw[w].append(n_raw / t_raw / 1e6)
                e2e[w].append(n_raw / t_e2e / 1e6)  # the same token count on every side (EOS not counted)
            for route, rates in peers.items():  # the peers: one process each
                rates.append(n_raw / peer_rate(route, spec, jsonl, scratch / route, eos, n_e2e) / 1e6)
        for w in (1, 2):
            rows.append((name, w, sum(len(d.encode()) for d in docs) / 1e6, raw1[w], raw[w], e2e[w]))
        peer_rows.append((name, e2e[1], e2e[2], peers["rwkv-lm"], peers["llm-foundry"]))
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {mp.cpu_count()} cores, "
          f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}; load average before / after: "
          f"{load0} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.repeats} (min-max)")
    print("| tokenizer | workers | text MB | raw, one call Mtok/s | raw, batches Mtok/s | tokenize.py end-to-end "
          "Mtok/s | ratio to batches (to one call) |")
    print("|---|---|---|---|---|---|---|")

    def cell(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

    for name, w, mb, raw1, raw, e2e in rows:
        e = statistics.median(e2e)
        print(f"| {name} | {w} | {mb:.1f} | {cell(raw1)} | {cell(raw)} | {cell(e2e)} "
              f"| {e / statistics.median(raw):.2f}x ({e / statistics.median(raw1):.2f}x) |")
    print()
    print("| tokenizer | tokenize.py 1 worker Mtok/s | tokenize.py 2 workers Mtok/s | 2 vs 1 workers "
          "| RWKV-LM make_data route Mtok/s | llm-foundry convert_dataset_json route Mtok/s "
          "| tokenize.py / RWKV-LM, 2 workers (1) | tokenize.py / llm-foundry, 2 workers (1) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, one, two, rwkv, foundry in peer_rows:
        m1, m2, mr, mf = (statistics.median(x) for x in (one, two, rwkv, foundry))
        print(f"| {name} | {cell(one)} | {cell(two)} | {m2 / m1:.2f}x | {cell(rwkv)} | {cell(foundry)} "
              f"| {m2 / mr:.2f}x ({m1 / mr:.2f}x) | {m2 / mf:.2f}x ({m1 / mf:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
