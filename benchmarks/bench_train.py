"""Trainer throughput: tokens/s and MFU of a recipe, and (CPU) the trainer's overhead vs a bare PyTorch loop.

Usage (single process; the data is random tokens so that only the trainer and model are measured):

    .venv/bin/python benchmarks/bench_train.py --config recipes/debug_cpu.yaml --steps 12 [key=value ...]

It runs `gf_train.train.loop.train` for `--steps` optimizer steps (no checkpoints, no eval) and reads the
step times from metrics.jsonl; then, on the same model/batch shapes, a bare loop (forward, backward,
clip, torch AdamW step) with the same micro-batching. Reports the median step time of each (the first
`--warmup` steps dropped), tokens/s, MFU (if the device's peak is known or `log.peak_tflops` is set)
and the overhead ratio (target <= 20%). Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


class RandomLoader:
    def __init__(self, vocab: int, micro_batch: int, seq_len: int, seed: int) -> None:
        self.vocab, self.mb, self.T = vocab, micro_batch, seq_len
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            x = torch.randint(0, self.vocab, (self.mb, self.T + 1), generator=self.gen)
            yield x[:, :-1], x[:, 1:]


def bare_loop(cfg: Any, micro_batch: int, grad_accum: int, steps: int, device: torch.device) -> list[float]:
    from gf_train.model import build_model

    torch.manual_seed(cfg.dist.seed)
    model = build_model(cfg.model).to(device)
    if cfg.dist.precision == "bf16":
        model = model.to(torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                            weight_decay=cfg.optim.weight_decay, foreach=False)
    it = iter(RandomLoader(cfg.model.vocab_size, micro_batch, cfg.model.ctx_len, 0))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        for _ in range(grad_accum):
            x, y = next(it)
            loss = model(x.to(device), y.to(device)) / grad_accum
            loss.backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-bare", action="store_true", help="skip the bare PyTorch comparison")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)

    from gf_train.config import derive, load
    from gf_train.train.loop import train

    over = [*a.overrides, f"schedule.max_steps={a.steps}", "checkpoint.every_steps=null",
            "checkpoint.save_final=false", "eval.every_steps=null", "data.val=[]", "log.every_steps=1",
            "log.progress_bar=false", "log.wandb=disabled"]
    cfg = load(a.config, over)
    d = derive(cfg, 1)

    def loader_factory(cfg_: Any, split: str, derived: Any, info: Any) -> RandomLoader:
        return RandomLoader(cfg_.model.vocab_size, derived.micro_batch, cfg_.model.ctx_len, info.rank)

    with tempfile.TemporaryDirectory() as tmp:
        rc = train(cfg, Path(tmp), loader_factory=loader_factory)
        if rc:
            return rc
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r][a.warmup:]
    t_trainer = statistics.median(r["step_time_s"] for r in rows)
    out: dict[str, Any] = {
        "recipe": a.config, "overrides": a.overrides, "device": rows[-1].get("device", None),
        "tokens_per_step": d.tokens_per_step, "trainer_step_s": t_trainer,
        "tokens_per_s": d.tokens_per_step / t_trainer, "mfu": statistics.median(
            [r["mfu"] for r in rows if r.get("mfu") is not None] or [float("nan")]),
        "mem_gb": rows[-1]["mem_gb"]}
    if not a.no_bare:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        bare = bare_loop(cfg, d.micro_batch, d.grad_accum, a.steps, device)[a.warmup:]
        t_bare = statistics.median(bare)
        out.update(bare_step_s=t_bare, overhead=t_trainer / t_bare - 1.0)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
