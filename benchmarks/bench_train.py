"""Trainer throughput: tokens/s and MFU of a recipe, and the trainer's overhead vs a bare PyTorch loop.

Usage (single process; the data is random tokens so that only the trainer and model are measured):

    .venv/bin/python benchmarks/bench_train.py --config recipes/debug_cpu.yaml --steps 24 --block 4 [key=value ...]

It runs `gf_train.train.loop.train` for `--steps` optimizer steps (no checkpoints, no eval) and, on the
same model/batch shapes, a bare loop (forward, backward, clip, torch AdamW step, same micro-batching).
The two are **interleaved** in blocks of `--block` steps (trainer, bare, trainer, bare, ...): the
trainer's loader runs a bare block when the trainer asks for the first micro-batch of every `--block`-th
step, and that block's time is taken out of the trainer step it fell in. Load drift on a shared machine
then hits both alike (running all trainer steps and then all bare steps swung the overhead from -20% to
+44% here). Both models are resident at once: at sizes that fill the device, lower `model.n_layer`.

Reports the median step time of each (the first `--warmup` steps of each dropped), their ratio (the
overhead, target <= 20%), the median and range of the per-block ratios (trainer block i vs the bare block
after it: how much the figure moved during the run), tokens/s and MFU (if the device's peak is known or
`log.peak_tflops` is set), and every step time of both loops. Prints one JSON line at the end.
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


class BareLoop:
    """The reference: forward, backward, clip, torch AdamW on its own copy of the model, nothing else."""

    def __init__(self, cfg: Any, micro_batch: int, grad_accum: int, device: torch.device) -> None:
        from gf_train.model import build_model

        torch.manual_seed(cfg.dist.seed)
        self.cfg, self.grad_accum, self.device = cfg, grad_accum, device
        self.model = build_model(cfg.model).to(device)
        if cfg.dist.precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                     eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay, foreach=False)
        self.batches = iter(RandomLoader(cfg.model.vocab_size, micro_batch, cfg.model.ctx_len, 0))
        self.times: list[float] = []

    def run(self, steps: int) -> float:
        """Runs `steps` optimizer steps, appending each one's time to `times`; returns the block's time."""
        start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            for _ in range(self.grad_accum):
                x, y = next(self.batches)
                loss = self.model(x.to(self.device), y.to(self.device)) / self.grad_accum
                loss.backward()
            if self.cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            float(loss)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - t0)
        return time.perf_counter() - start


class InterleavingLoader(RandomLoader):
    """The trainer's loader: before the first micro-batch of trainer step s (s = block, 2 block, ...) it runs
    a bare block; `inserted[s]` is that block's time, inside the trainer's step s (0-based)."""

    def __init__(self, vocab: int, micro_batch: int, seq_len: int, seed: int, grad_accum: int, block: int,
                 bare: BareLoop | None) -> None:
        super().__init__(vocab, micro_batch, seq_len, seed)
        self.grad_accum, self.block, self.bare = grad_accum, block, bare
        self.inserted: dict[int, float] = {}

    def __iter__(self):
        served = 0
        for batch in super().__iter__():
            step, micro = divmod(served, self.grad_accum)
            if self.bare is not None and micro == 0 and step > 0 and step % self.block == 0:
                self.inserted[step] = self.bare.run(self.block)
            served += 1
            yield batch


def _block_ratios(trainer: list[float], bare: list[float], block: int, warmup: int) -> list[float]:
    """median(trainer block i) / median(bare block i), each block without the warm-up steps."""
    out = []
    for i in range(0, min(len(trainer), len(bare)), block):
        t = trainer[max(i, warmup): i + block]
        b = bare[max(i, warmup): i + block]
        if t and b:
            out.append(statistics.median(t) / statistics.median(b))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--steps", type=int, default=24, help="trainer steps (and as many bare steps)")
    p.add_argument("--block", type=int, default=4, help="steps per block; trainer and bare blocks alternate")
    p.add_argument("--warmup", type=int, default=2, help="first steps of each loop left out of the medians")
    p.add_argument("--no-bare", action="store_true", help="skip the bare PyTorch comparison")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    if a.block < 1 or a.steps < a.block or a.warmup >= a.block * 2:
        p.error("need --block >= 1, --steps >= --block and --warmup < 2 * --block")

    from gf_train.config import derive, load
    from gf_train.train.loop import train

    over = [*a.overrides, f"schedule.max_steps={a.steps}", "checkpoint.every_steps=null",
            "checkpoint.save_final=false", "eval.every_steps=null", "data.val=[]", "log.every_steps=1",
            "log.progress_bar=false", "log.wandb=disabled"]
    cfg = load(a.config, over)
    d = derive(cfg, 1)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    bare = None if a.no_bare else BareLoop(cfg, d.micro_batch, d.grad_accum, device)
    loaders: list[InterleavingLoader] = []

    def loader_factory(cfg_: Any, split: str, derived: Any, info: Any) -> InterleavingLoader:
        loaders.append(InterleavingLoader(cfg_.model.vocab_size, derived.micro_batch, cfg_.model.ctx_len, info.rank,
                                          derived.grad_accum, a.block, bare))
        return loaders[-1]

    with tempfile.TemporaryDirectory() as tmp:
        rc = train(cfg, Path(tmp), loader_factory=loader_factory)
        if rc:
            return rc
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, a.steps + 1)), "log.every_steps=1 logs every step"
    inserted = loaders[0].inserted
    trainer = [r["step_time_s"] - inserted.get(r["step"] - 1, 0.0) for r in rows]  # without the bare blocks
    t_trainer = statistics.median(trainer[a.warmup:])
    out: dict[str, Any] = {
        "recipe": a.config, "overrides": a.overrides, "device": rows[-1].get("device", None),
        "tokens_per_step": d.tokens_per_step, "trainer_step_s": t_trainer,
        "tokens_per_s": d.tokens_per_step / t_trainer, "mfu": statistics.median(
            [r["mfu"] for r in rows if r.get("mfu") is not None] or [float("nan")]),
        "mem_gb": rows[-1]["mem_gb"]}
    if bare is not None:
        bare.run(a.steps - len(bare.times))  # the last bare block, after the last trainer block
        t_bare = statistics.median(bare.times[a.warmup:])
        ratios = _block_ratios(trainer, bare.times, a.block, a.warmup)
        out.update(bare_step_s=t_bare, overhead=t_trainer / t_bare - 1.0, blocks=len(ratios),
                   block_overhead_median=statistics.median(ratios) - 1.0,
                   block_overhead_range=[min(ratios) - 1.0, max(ratios) - 1.0],
                   trainer_steps_s=[round(t, 4) for t in trainer], bare_steps_s=[round(t, 4) for t in bare.times])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
