"""Weights & Biases sink: the only module of gf_train that imports `wandb` (lazily, on rank 0).

Owner: `gf_train.train`. Modes: `disabled` (wandb is never imported), `offline` (a run directory under
RUN_DIR/wandb, sync later with `wandb sync`), `online`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_available(mode: str) -> None:
    """Fail before training starts, on every rank alike, when `log.wandb` wants a package that is missing
    (an import error on rank 0 alone, at its first log, would leave the other ranks waiting)."""
    import importlib.util

    if mode != "disabled" and importlib.util.find_spec("wandb") is None:
        raise ValueError(f"log.wandb={mode} needs the wandb package, which is not installed here: "
                         "`pip install wandb`, or set log.wandb=disabled")


class WandbSink:
    def __init__(self, mode: str, project: str, name: str | None, tags: list[str], config: dict[str, Any],
                 run_dir: Path, run_id: str | None = None) -> None:
        import wandb

        self._wandb = wandb
        self.run = wandb.init(mode=mode, project=project, name=name, tags=tags or None, config=config,
                              dir=str(run_dir), id=run_id, resume="allow" if run_id else None)

    @property
    def run_id(self) -> str | None:
        return getattr(self.run, "id", None)

    def log(self, row: dict[str, Any]) -> None:
        step = int(row.get("step", 0))
        self.run.log({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        self.run.finish()
