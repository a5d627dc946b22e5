"""Checkpoint save/load time with and without the xxh3_64 manifest, at the 1.5B width (D=2048), on CPU.

    .venv/bin/python benchmarks/bench_checkpoint.py                 # 2 GoldFinch layers at D2048, 5 repeats
    .venv/bin/python benchmarks/bench_checkpoint.py --n-layer 4 --repeats 3 --dir /scratch/x

What rank 0 writes per save under ZeRO-2 on `--world-size` GPUs, for a slice of the 1.5B model (`--n-layer`
layers of D=2048 with the vocab-65536 embedding and head): the bf16 module file (DeepSpeed's
mp_rank_00_model_states.pt) and its 1/world-size fp32 optimizer partition (master weights + Adam exp_avg +
exp_avg_sq, as ZeRO writes them). Real tensors. `os.sync()` before every timed operation, so that
write-back of the previous one does not land in it.

- save, plain: torch.save into `open(path, "wb")` (what DeepSpeed does).
- save, hashed: torch.save through `Recorder.open` (xxh3_64 computed while the bytes are written).
- save, thread: torch.save to the path, then `Recorder.add_in_background` (hashed from the page cache in a
  thread while the next file is written).
- save, after: torch.save to the path, then hash the file from the page cache right away (same thread).
- load, sizes: `verify(checksums=False)` + torch.load of both files.
- load, checksums: `verify()` (re-reads and hashes every file) + torch.load.
Prints a markdown row per measurement: median seconds, and the ratio to the plain save / sizes-only load.
Files are written to the page cache (no fsync, as DeepSpeed); on a slower disk the hashing share is smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _state(n_layer: int, world_size: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from gf_train.config.model import ModelConfig
    from gf_train.model import build_model

    cfg = ModelConfig(arch="goldfinch", n_layer=n_layer, n_embd=2048, head_size=64, vocab_size=65536,
                      ctx_len=4096, wkv_backend="torch", attn_backend="sdpa")
    torch.manual_seed(0)
    module = {k: v.detach().to(torch.bfloat16) for k, v in build_model(cfg).state_dict().items()}
    n = sum(v.numel() for v in module.values()) // world_size  # this rank's optimizer partition
    optim = {name: torch.randn(n, dtype=torch.float32) for name in ("fp32_master", "exp_avg", "exp_avg_sq")}
    return module, optim


def main() -> None:
    from gf_train.checkpoint import layout, manifest

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--world-size", type=int, default=8, help="ZeRO partitions of the optimizer state (default 8)")
    p.add_argument("--dir", default=None, help="where to write (default: a temporary dir)")
    a = p.parse_args()
    module, optim = _state(a.n_layer, a.world_size)
    nbytes = sum(v.numel() * v.element_size() for d in (module, optim) for v in d.values())
    root = Path(tempfile.mkdtemp(dir=a.dir))
    names = ("save_plain", "save_hashed", "save_thread", "save_after", "load_sizes", "load_checksums")
    times: dict[str, list[float]] = {k: [] for k in names}
    modes = ["plain", "hashed", "thread", "after"]
    try:
        for i in range(a.repeats):
            for mode in modes[i % len(modes):] + modes[:i % len(modes)]:  # rotate: no position bias
                d = root / f"{mode}_{i}"
                (d / "ds").mkdir(parents=True)
                rec = manifest.Recorder(d)
                os.sync()
                t0 = time.perf_counter()
                for name, state in (("mp_rank_00_model_states.pt", module),
                                    ("zero_pp_rank_0_mp_rank_00_optim_states.pt", optim)):
                    path = d / "ds" / name
                    if mode == "hashed":
                        with rec.open(path) as f:
                            torch.save(state, f)
                        continue
                    torch.save(state, path)
                    if mode == "thread":
                        rec.add_in_background(path)
                    elif mode == "after":
                        rec.add_existing(path)
                if mode != "plain":
                    rec.write_manifest(0)
                    manifest.write_complete(d, 1)
                times[f"save_{mode}"].append(time.perf_counter() - t0)
                if mode == "thread":  # load what the trainer writes
                    for load_mode, checksums in (("sizes", False), ("checksums", True)):
                        os.sync()
                        t0 = time.perf_counter()
                        assert manifest.verify(d, checksums) == []
                        for f in sorted((d / "ds").iterdir()):
                            torch.load(f, weights_only=True)
                        times[f"load_{load_mode}"].append(time.perf_counter() - t0)
                shutil.rmtree(d)  # one checkpoint on disk at a time (page-cache pressure skews the next)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"GoldFinch D2048, {a.n_layer} layers + vocab 65536: {nbytes / 1e9:.2f} GB per save (bf16 module + "
          f"1/{a.world_size} of fp32 master/exp_avg/exp_avg_sq), {a.repeats} repeats, medians; in {layout.DS_TAG}/")
    print("| measurement | median s | GB/s | vs baseline |\n|---|---:|---:|---:|")
    for k, base in (("save_plain", "save_plain"), ("save_hashed", "save_plain"), ("save_thread", "save_plain"),
                    ("save_after", "save_plain"),
                    ("load_sizes", "load_sizes"),
                    ("load_checksums", "load_sizes")):
        print(f"| {k} | {med[k]:.3f} | {nbytes / 1e9 / med[k]:.2f} | {med[k] / med[base]:.3f}x |")
    print(json.dumps({k: [round(x, 4) for x in v] for k, v in times.items()}))


if __name__ == "__main__":
    main()
