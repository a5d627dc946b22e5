"""The README's first command (`bash scripts/quickstart.sh` -> `python -m gf_train.quickstart`).

Owner: `gf_train.export` (the engineer of issue 9). On any machine with the packages installed and no
download, it runs the whole product once, end to end, in a few minutes on 2 CPU cores:

1. corpus: real English text every machine has, the documentation of the installed Python standard
   library (`pydoc`'s plain-text help of ~100 modules, a few MB), cut into documents (JSON lines);
2. tokenize it with `data_prep/tokenize.py` (RWKV World tokenizer, MDS shards, train/val split);
3. train a tiny GoldFinch (`recipes/debug_cpu.yaml`) with DeepSpeed ZeRO-2 on 2 local CPU ranks
   (`torch.distributed.run`), stop it midway (`--stop-at-step`), then resume it to the end;
4. export the final checkpoint (safetensors + HF config/code + model card), evaluate it on the
   validation split against the corpus's unigram entropy, generate a sample, and plot the metrics.

Everything goes under `--out` (default runs/quickstart): corpus/, data/, run/, export/. Each step
prints what it did and the final summary says where everything went.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gf_train.distributed.info import launch_free_env

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "debug_cpu.yaml"
# Pure-Python standard-library modules with substantial documentation (importable without side effects).
STDLIB_MODULES = (
    "argparse abc ast asyncio.base_events asyncio.streams base64 bisect bz2 calendar cmd codecs collections "
    "colorsys concurrent.futures configparser contextlib copy csv dataclasses datetime decimal difflib dis "
    "doctest email.message email.parser enum filecmp fnmatch fractions ftplib functools getopt gettext glob "
    "gzip hashlib heapq hmac html.parser http.client http.cookies http.server imaplib importlib inspect "
    "ipaddress itertools json json.decoder keyword linecache locale logging logging.handlers lzma mailbox "
    "mimetypes multiprocessing.pool numbers operator optparse os os.path pathlib pickle pkgutil platform "
    "poplib pprint profile pstats queue random re reprlib sched secrets selectors shelve shlex shutil signal "
    "smtplib socket socketserver sqlite3 ssl stat statistics string struct subprocess symtable sysconfig "
    "tarfile tempfile textwrap threading timeit token tokenize trace traceback types typing unittest "
    "urllib.parse urllib.request uuid warnings wave weakref xml.dom.minidom xml.etree.ElementTree "
    "zipfile zipimport").split()


def log(msg: str) -> None:
    print(f"[quickstart] {msg}", flush=True)


_RUNTIME_SECTIONS = {"DATA", "FILE"}  # values of this process (os.environ!, sys.path, ...) and local paths
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _local_paths() -> list[tuple[str, str]]:
    """This machine's paths that default arguments show (platform.architecture(executable=sys.executable)),
    longest first, with the neutral text that replaces them."""
    pairs = {sys.executable: "/usr/bin/python3", os.getcwd(): ".", os.path.expanduser("~"): "~"}
    pairs.update({p: "/usr" for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    return sorted(((k, v) for k, v in pairs.items() if len(k) > 1), key=lambda kv: -len(kv[0]))


def _stable_text(text: str) -> str:
    """pydoc text without what belongs to this process or machine: the DATA section renders module globals
    (os.environ with every environment variable, which must never reach a corpus or a published model),
    FILE the install path, signatures local paths, object reprs their addresses. What is left is the same
    on every run and machine with this Python version."""
    local = _local_paths()
    keep: list[str] = []
    section = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and line.isupper():
            section = line.strip()
        if section in _RUNTIME_SECTIONS or line.startswith("    /"):
            continue
        line = _ADDRESS.sub("", line)
        for path, neutral in local:
            line = line.replace(path, neutral)
        keep.append(line)
    return "\n".join(keep)


def build_corpus(out: Path, max_bytes: int, doc_bytes: int = 3000) -> dict[str, Any]:
    """pydoc plain-text help of the stdlib modules, cut at blank lines into documents of ~doc_bytes, rendered in
    a fresh interpreter: pydoc shows state that earlier code in a process changes (reading a class's
    `__annotations__` creates it), so only a fresh process gives the same bytes on every run."""
    code = ("import json, sys; from gf_train.quickstart import _render_corpus; "
            "print(json.dumps(_render_corpus(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))")
    res = subprocess.run([sys.executable, "-c", code, str(out), str(max_bytes), str(doc_bytes)], env=child_env(out),
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"building the corpus failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _render_corpus(out: str | Path, max_bytes: int, doc_bytes: int) -> dict[str, Any]:
    import pydoc

    out = Path(out)

    out.parent.mkdir(parents=True, exist_ok=True)
    total, docs, modules = 0, 0, 0
    with open(out, "w", encoding="utf-8") as f:
        for name in STDLIB_MODULES:
            if total >= max_bytes:
                break
            try:
                mod = importlib.import_module(name)
                text = pydoc.render_doc(mod, title="%s", renderer=pydoc.plaintext)
            except Exception:  # a module missing from this Python build
                continue
            text = _stable_text(text)
            modules += 1
            chunk: list[str] = []
            for line in [*text.splitlines(), ""]:
                chunk.append(line)
                if not line.strip() and sum(len(c) + 1 for c in chunk) >= doc_bytes:
                    doc = "\n".join(chunk).strip()
                    f.write(json.dumps({"text": doc, "module": name}) + "\n")
                    total, docs, chunk = total + len(doc.encode()), docs + 1, []
            if "".join(chunk).strip():
                doc = "\n".join(chunk).strip()
                f.write(json.dumps({"text": doc, "module": name}) + "\n")
                total, docs = total + len(doc.encode()), docs + 1
    return {"path": str(out), "bytes": total, "documents": docs, "modules": modules}


def child_env(out: Path) -> dict[str, str]:
    env = launch_free_env()
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
               TOKENIZERS_PARALLELISM="false")
    paths = [str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run(cmd: list[str], env: dict[str, str], what: str, log_file: Path) -> float:
    """Run a child process, tee its output into `log_file`; raise with the tail of the log on failure."""
    t0 = time.perf_counter()
    with open(log_file, "a") as lf:
        lf.write(f"\n$ {' '.join(cmd)}\n")
        lf.flush()
        res = subprocess.run(cmd, env=env, cwd=REPO, stdout=lf, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = "\n".join(log_file.read_text().splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {res.returncode}); last lines of {log_file}:\n{tail}")
    return time.perf_counter() - t0


def train_cmd(run_dir: Path, data: Path, steps: int, nproc: int, stop_at: int | None) -> list[str]:
    from gf_train.distributed.info import free_port

    every = max(1, steps // 2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(free_port()), "-m", "gf_train", "train", "--config", str(RECIPE),
           "--run-dir", str(run_dir)]
    if stop_at is not None:
        cmd += ["--stop-at-step", str(stop_at)]
    return cmd + [f"data.train=[{{path: {data / 'train'}}}]", f"data.val=[{{path: {data / 'val'}}}]",
                  f"schedule.max_steps={steps}", f"checkpoint.every_steps={every}", f"eval.every_steps={every}",
                  f"log.every_steps={max(1, steps // 20)}", "log.progress_bar=false"]


def unigram_entropy(split_dir: Path) -> float:
    """Entropy (nats) of the token frequencies of a split: the loss of the best context-free model."""
    import numpy as np

    from gf_train.data import open_split, read_manifest

    counts = np.zeros(65536, np.int64)
    with open_split([str(split_dir)], int(read_manifest(split_dir)["seq_len"])) as source:
        for i in range(source.num_samples):
            counts += np.bincount(np.asarray(source.sample(i)[1:], np.int64), minlength=65536)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="quickstart", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/quickstart", help="where everything goes (default runs/quickstart)")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps in total (default 100)")
    ap.add_argument("--corpus-mb", type=float, default=3.0, help="size of the stdlib-docs corpus (default 3 MB)")
    ap.add_argument("--nproc", type=int, default=2, help="local DeepSpeed ranks (default 2)")
    ap.add_argument("--prompt", default="The json module", help="prompt of the generated sample")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args(argv)
    if args.steps < 2:
        raise SystemExit("quickstart: --steps must be >= 2 (training stops midway and resumes)")
    t_start = time.perf_counter()
    out = Path(args.out).resolve()
    for sub in ("corpus", "data", "run", "export"):  # start fresh: these are the quickstart's own folders
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "quickstart.log"
    logs.write_text("")
    env = child_env(out)

    corpus = build_corpus(out / "corpus" / "stdlib_docs.jsonl", int(args.corpus_mb * 1e6))
    log(f"corpus: {corpus['documents']} documents, {corpus['bytes'] / 1e6:.2f} MB of Python standard library "
        f"documentation from {corpus['modules']} modules -> {corpus['path']}")

    data = out / "data"
    secs = run([sys.executable, str(REPO / "data_prep" / "tokenize.py"), "--input", corpus["path"], "--out", str(data),
                "--tokenizer", "rwkv_world", "--seq-len", "64", "--val-fraction", "0.05", "--no-progress"],
               env, "tokenization", logs)
    from gf_train.data import read_manifest

    man = read_manifest(data)
    log(f"tokenized in {secs:.0f} s: train {man['splits']['train']['tokens']:,} tokens, val "
        f"{man['splits']['val']['tokens']:,} tokens (rwkv_world) -> {data}")

    run_dir, half = out / "run", args.steps // 2
    secs = run(train_cmd(run_dir, data, args.steps, args.nproc, half), env, "training (first half)", logs)
    log(f"trained steps 1-{half} on {args.nproc} CPU ranks (DeepSpeed ZeRO-2) in {secs:.0f} s, stopped at step "
        f"{half} with a checkpoint")
    secs = run(train_cmd(run_dir, data, args.steps, args.nproc, None), env, "training (resumed)", logs)
    log(f"resumed from the step-{half} checkpoint and trained to step {args.steps} in {secs:.0f} s -> {run_dir}")

    from gf_train.export.export import export_checkpoint

    with open(logs, "a") as lf, contextlib.redirect_stdout(lf), contextlib.redirect_stderr(lf):
        export = export_checkpoint(run_dir, out / "export", dtype="fp32", overwrite=True)  # DeepSpeed's chatter
    log(f"exported the final checkpoint (safetensors, HF config + code, tokenizer, model card) -> {export}")

    from gf_train.config import load as load_config
    from gf_train.data.tokenizers import load_tokenizer
    from gf_train.evaluate import evaluate
    from gf_train.export.load import load_model
    from gf_train.model.generate import generate_texts, report
    from gf_train.train.plot import plot_metrics

    loaded = load_model(export)
    recipe = load_config([str(RECIPE)], [])  # the trainer's validation set: eval.max_tokens, dist.seed
    ev = evaluate(loaded.model, data, "val", max_tokens=recipe.eval.max_tokens, seed=recipe.dist.seed)
    h1 = unigram_entropy(data / "train")
    bpb = f"{ev.bits_per_byte:.3f}" if ev.bits_per_byte is not None else "n/a"
    log(f"validation loss {ev.loss:.3f} nats/token on {ev.set} (perplexity {ev.perplexity:.1f}, {bpb} bits/byte; "
        f"the same set and code as the trainer's val_loss and `gf-train eval`) vs the corpus's unigram entropy "
        f"{h1:.3f} nats/token: {'below' if ev.loss < h1 else 'NOT below'} it by {h1 - ev.loss:+.3f}")
    r = generate_texts(loaded.model, load_tokenizer("rwkv_world"), [args.prompt], args.max_new_tokens,
                       temperature=0.7, top_p=0.9, seed=0)
    print("---- sample ----\n" + r.texts[0] + "\n---- end of sample ----", flush=True)
    print(report(r, loaded.config), flush=True)
    png = plot_metrics(run_dir, out / "metrics.png")
    summary = {"corpus": corpus["path"], "data": str(data), "run": str(run_dir), "export": str(export),
               "plot": str(png), "log": str(logs), "val_loss": ev.loss, "unigram_entropy": h1,
               "bits_per_byte": ev.bits_per_byte, "val_set": ev.set, "seconds": time.perf_counter() - t_start}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done in {summary['seconds']:.0f} s. Where everything went:")
    for k in ("corpus", "data", "run", "export", "plot", "log"):
        log(f"  {k:8s} {summary[k]}")
    log(f"next: gf-train generate --model {export} --prompt 'The os module'  |  "
        f"gf-train eval --model {export} --data {data}")
    return 0 if math.isfinite(ev.loss) else 1


if __name__ == "__main__":
    sys.exit(main())
