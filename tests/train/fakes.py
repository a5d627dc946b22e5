"""Small stand-ins for the model and the data loader, so trainer tests need neither gf_train.model nor
MDS data: a tiny RWKV-named model and a deterministic, elastic, resumable loader.

Also runnable as a launcher: `python -m torch.distributed.run ... tests/train/fakes.py --config R.yaml ...`
runs `gf_train.train.loop.train` with these fakes (same flags as `gf-train train`);
GF_TRAIN_FAKES_REAL_MODEL=1 keeps the fake loader but builds the real `gf_train.model`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gf_train.distributed.exit import end_process

VOCAB = 97
VAL_SAMPLES = 11  # not a multiple of 2 ranks x micro-batch: exercises the padding batch of gf_train.evaluate


class TinyBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(c)
        self.att = nn.Module()
        self.att.time_decay = nn.Parameter(torch.zeros(1, 1, c))
        self.att.time_maa_x = nn.Parameter(torch.full((1, 1, c), 0.5))
        self.att.time_maa_w1 = nn.Parameter(torch.randn(c, 8) * 0.1)
        self.att.time_maa_w2 = nn.Parameter(torch.randn(8, c) * 0.1)
        self.att.key = nn.Linear(c, c, bias=False)
        self.ffn = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        prev = torch.nn.functional.pad(h, (0, 0, 1, -1))
        mix = h + (prev - h) * (self.att.time_maa_x + torch.tanh(h @ self.att.time_maa_w1) @ self.att.time_maa_w2)
        x = x + self.att.key(mix) * torch.sigmoid(-self.att.time_decay.exp())
        return x + self.ffn(torch.relu(x))


class TinyModel(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.n_embd
        self.emb = nn.Embedding(VOCAB, c)
        self.blocks = nn.ModuleList(TinyBlock(c) for _ in range(cfg.n_layer))
        self.ln_out = nn.LayerNorm(c)
        self.head = nn.Linear(c, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_out(x)).float()
        return torch.nn.functional.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


class FakeLoader:
    """Global sample g of step s is s*global_batch + k; rank r, micro-batch m of a step gets samples
    [m*ws*mb + r*mb, +mb) of that step: the set of samples per step is the same for any world size."""

    def __init__(self, split: str, seq_len: int, micro_batch: int, global_batch: int, world_size: int,
                 rank: int, limit: int | None = None) -> None:
        self.split, self.T, self.mb, self.gb, self.ws, self.rank = split, seq_len, micro_batch, global_batch, \
            world_size, rank
        self.consumed = 0  # global samples consumed
        self.limit = limit

    def _sample(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(g * 2 + (self.split == "val"))
        x = torch.randint(0, VOCAB, (self.T + 1,), generator=gen)
        x[1::2] = (x[0:-1:2] * 3 + 1) % VOCAB  # something learnable
        return x[:-1], x[1:]

    def __iter__(self):
        n = 0
        while self.limit is None or n < self.limit:
            base = self.consumed + self.rank * self.mb
            xs, ys = zip(*(self._sample(base + i) for i in range(self.mb)))
            self.consumed += self.mb * self.ws
            n += 1
            yield torch.stack(xs), torch.stack(ys)

    @property
    def num_samples(self) -> int:
        """Validation split size (random access for gf_train.evaluate)."""
        return VAL_SAMPLES

    def sample(self, i: int) -> np.ndarray:
        x, y = self._sample(i)
        return torch.cat([x, y[-1:]]).numpy()

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed = int(state["consumed"])


def model_factory(model_cfg: Any) -> nn.Module:
    return TinyModel(model_cfg)


def loader_factory(cfg: Any, split: str, derived: Any, info: Any) -> FakeLoader:
    return FakeLoader(split, cfg.model.ctx_len, derived.micro_batch, derived.global_batch, info.world_size,
                      info.rank)


def flops_fn(model_cfg: Any) -> float:
    return 6.0 * 1000


def main(argv: list[str] | None = None) -> int:
    from gf_train.cli.train import add_arguments
    from gf_train.config import load
    from gf_train.train.loop import train

    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(argv)
    cfg = load(a.config, a.overrides)
    resume_from = Path(a.resume_from) if a.resume_from else None
    init_from = Path(a.init_from) if a.init_from else None
    real = os.environ.get("GF_TRAIN_FAKES_REAL_MODEL") == "1"  # the real gf_train.model on the fake loader
    factories = {} if real else {"model_factory": model_factory, "flops_fn": flops_fn}
    try:
        return train(cfg, Path(a.run_dir), stop_at_step=a.stop_at_step, resume_from=resume_from,
                     init_from=init_from, loader_factory=loader_factory, **factories)
    except ValueError as e:  # like `gf-train`'s main: a user error is one line and exit 1
        print(f"gf-train: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    end_process(main())  # like `gf-train`: no interpreter finalization after a process group
