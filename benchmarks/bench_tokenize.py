"""Benchmark: end-to-end `tokenize_corpus` (data_prep/tokenize.py) vs the raw tokenizer's `encode_batch`.

Same text for both, in one run, with 1 and 2 workers, one core per worker on both sides
(RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false for this process and every child: pyrwkv-tokenizer
and HF tokenizers would otherwise spread one `encode_batch` over all cores). Raw rate with N workers: N
processes, each calling `encode_batch` on 1/N of the documents already in memory (the slowest worker's
`encode_batch` time, measured in the worker). End-to-end: `tokenize_corpus` on the jsonl of the same
documents: reading, JSON parsing, tokenizing, the split pass, MDS (zstd) writing, input hashing and
the manifest; a first untimed run
imports everything and starts the forkserver, but each timed run starts its own worker pool (workers
load the tokenizer: ~0.2 s for rwkv_world). Each repeat times raw then end-to-end back to back; the table
gives the medians over --repeats and the ratio of the medians.

    python benchmarks/bench_tokenize.py [--mb 24] [--bpe-mb 4] [--repeats 5] [--out DIR]

Prints a Markdown table (for docs/benchmarks.md, section "Tokenization").
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


def _count(texts: list[str]) -> tuple[int, float]:
    """Tokens and seconds of `encode_batch` alone (timed in the worker: sending the text there is not counted)."""
    t = time.perf_counter()
    n = sum(map(len, _TOK.encode_batch(texts)))  # type: ignore[union-attr]
    return n, time.perf_counter() - t


def raw_rate(spec: str, docs: list[str], workers: int) -> tuple[int, float]:
    chunks = [docs[i::workers] for i in range(workers)]
    with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(spec,)) as pool:
        pool.map(_count, [[d[:100]] for d in docs[:workers]])  # warm up: tokenizers loaded
        res = pool.map(_count, chunks)
        return sum(n for n, _ in res), max(t for _, t in res)  # the slowest worker


def e2e_rate(spec: str, jsonl: Path, out: Path, workers: int) -> tuple[int, float]:
    t = time.perf_counter()
    m = tokenize_corpus([str(jsonl)], out, spec, 2048, workers=workers, overwrite=True, progress=False,
                        log=lambda s: None)
    dt = time.perf_counter() - t
    return sum(s["tokens"] for s in m["splits"].values()), dt


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

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(make_docs(1.0), trainers.BpeTrainer(vocab_size=8192, special_tokens=["<|endoftext|>"],
                                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.save(str(scratch / "bpe.json"))
    rows = []
    cases = (("rwkv_world", "rwkv_world", args.mb), ("HF BPE 8k", str(scratch / "bpe.json"), args.bpe_mb))
    for name, spec, mb in cases:
        docs = make_docs(mb)
        jsonl = scratch / f"{name.split()[0]}.jsonl"
        jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        for w in (1, 2):
            e2e_rate(spec, jsonl, scratch / f"out_{w}", w)  # untimed: imports, forkserver start
            raw, e2e = [], []
            for _ in range(args.repeats):
                n_raw, t_raw = raw_rate(spec, docs, w)
                n_e2e, t_e2e = e2e_rate(spec, jsonl, scratch / f"out_{w}", w)
                assert n_raw == n_e2e - len([d for d in docs if d]), (n_raw, n_e2e)  # e2e counts one EOS per doc
                raw.append(n_raw / t_raw / 1e6)
                e2e.append(n_raw / t_e2e / 1e6)  # the same token count on both sides (EOS not counted)
            r, e = statistics.median(raw), statistics.median(e2e)
            rows.append((name, w, sum(len(d.encode()) for d in docs) / 1e6, r, min(raw), max(raw), e, min(e2e),
                         max(e2e), e / r))
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {mp.cpu_count()} cores, "
          f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}; load average before / after: "
          f"{load0} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.repeats} (min-max)")
    print("| tokenizer | workers | text MB | raw encode_batch Mtok/s | tokenize.py end-to-end Mtok/s | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.2f} ({r[4]:.2f}-{r[5]:.2f}) "
              f"| {r[6]:.2f} ({r[7]:.2f}-{r[8]:.2f}) | {r[9]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
