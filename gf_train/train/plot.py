"""Plot a run's metrics.jsonl (loss, lr, tokens/s, MFU against step) into a PNG with matplotlib's Agg backend.

Owner: `gf_train.train`, next to the metrics writer (`metrics.py`) whose JSON lines it reads (keys `step`,
`loss_avg`, `loss`, `val_loss`, `lr`, `tokens_per_s`, `mfu`); lines that are not JSON objects (a torn last
line after a crash) are skipped.
The training loss drawn is `loss_avg`, the mean over each logging interval (runs logged before it existed:
`loss`, the logged step's own loss); the validation loss is `val_loss` (`gf_train.evaluate`, the set the
run's log names).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PANELS = (("loss", ("loss_avg", "val_loss")), ("learning rate", ("lr",)), ("tokens / s", ("tokens_per_s",)),
          ("MFU", ("mfu",)))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if p.is_dir() or p.suffix != ".jsonl":
        p = p / "metrics.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; pass a run directory written by `gf-train train`")
    rows = []
    for line in p.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int | float):
            rows.append(row)
    return rows


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(float(r["step"]))
            ys.append(float(v))
    return xs, ys


def _label(rows: list[dict[str, Any]], key: str) -> str:
    """Series name; the validation loss says which set it was measured on (trainer rows carry the counts)."""
    if key == "loss_avg":
        return "train loss (mean over each logging interval)"
    if key == "val_loss":
        last = next((r for r in reversed(rows) if "val_loss" in r), {})
        n, total = last.get("val_samples"), last.get("val_split_samples")
        if isinstance(n, int) and isinstance(total, int):
            return f"val_loss (whole val split, {total:,} samples)" if n == total else \
                f"val_loss (fixed random {n:,} of {total:,} val samples)"
    return key


def plot_metrics(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the 2x2 figure; default path RUN_DIR/metrics.png. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    if not rows:
        raise ValueError(f"{run_dir}: metrics.jsonl has no rows with a step; has the run logged yet?")
    base = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    out_path = Path(out) if out is not None else base / "metrics.png"
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, (title, keys) in zip(axes.flat, PANELS):
        drawn = False
        for key in keys:
            xs, ys = series(rows, key)
            if not xs and key == "loss_avg":  # metrics written before loss_avg existed
                key = "loss"
                xs, ys = series(rows, key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=_label(rows, key))
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        elif len(keys) > 1:
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{base.name}: {len(rows)} logged steps")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
