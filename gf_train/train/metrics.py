"""Training metrics: throughput/MFU arithmetic, peak-FLOPs table, and the sinks (rank 0 only).

Owner: `gf_train.train`. Sinks: a console line, `RUN_DIR/metrics.jsonl` (one JSON object per line, at
least `step` and `loss`; validation lines carry `val_loss`/`val_bpb`), wandb (see `wandb_sink`), and a
tqdm progress bar with ETA.

MFU = flops_per_token * tokens/s per device / peak FLOP/s per device, with `flops_per_token` from the
model (`gf_train.model.flops`, 6N + attention; no recompute) and the peak from `log.peak_tflops` or
the table below (dense bf16; fp32 runs use the fp32/TF32 column).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

# Dense peak TFLOP/s per device: (bf16, fp32/tf32). Matched by substring of the device name, first wins.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989.0, 494.0),
    ("H100 NVL", 835.0, 418.0),
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.0, 494.0),
    ("GH200", 989.0, 494.0),
    ("B200", 2250.0, 1100.0),
    ("A100", 312.0, 156.0),
    ("A10G", 125.0, 31.2),
    ("L40S", 362.0, 91.6),
    ("L4", 121.0, 60.0),
    ("RTX 4090", 165.0, 82.6),
    ("RTX 3090", 71.0, 35.6),
    ("V100", 125.0, 15.7),
    ("MI300X", 1307.0, 654.0),
    ("MI250X", 383.0, 95.7),
)


def peak_tflops(device_name: str, precision: str, override: float | None = None) -> float | None:
    """Peak dense TFLOP/s of one device, or None if unknown (MFU is then not reported)."""
    if override is not None:
        return override
    for key, bf16, fp32 in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return bf16 if precision == "bf16" else fp32
    return None


def mfu(flops_per_token: float, tokens_per_s_per_device: float, peak: float | None) -> float | None:
    if not peak or tokens_per_s_per_device <= 0:
        return None
    return flops_per_token * tokens_per_s_per_device / (peak * 1e12)


def memory_gb(device_type: str) -> float:
    """Peak memory of this process: CUDA max allocated, else the max RSS."""
    if device_type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v or math.isinf(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


class MetricsSink:
    """Rank-0 sinks. On other ranks every method is a no-op (construct with `enabled=False`)."""

    def __init__(self, run_dir: Path, enabled: bool, total_steps: int, start_step: int, progress_bar: bool,
                 wandb: Any | None = None) -> None:
        self.enabled = enabled
        self.wandb = wandb
        self._file = open(run_dir / "metrics.jsonl", "a") if enabled else None  # noqa: SIM115
        self._bar = None
        if enabled and progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", file=sys.stderr,
                             dynamic_ncols=True, mininterval=1.0, smoothing=0.1)

    def log(self, row: dict[str, Any], console: bool = True) -> None:
        if not self.enabled:
            return
        assert self._file is not None
        self._file.write(json.dumps(row, allow_nan=True) + "\n")
        self._file.flush()
        if self.wandb is not None:
            self.wandb.log(row)
        if console:
            line = " ".join(f"{k}={_fmt(v)}" for k, v in row.items() if v is not None)
            if self._bar is not None:
                self._bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)

    def progress(self, step: int, loss: float | None = None) -> None:
        if self._bar is not None:
            self._bar.n = step
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self._bar.refresh()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
        if self.wandb is not None:
            self.wandb.close()


class StepTimer:
    """Accumulates step and data-wait times over a logging window."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.step_time = 0.0
        self.data_wait = 0.0
        self.t0 = time.perf_counter()

    def add(self, step_time: float, data_wait: float) -> None:
        self.steps += 1
        self.step_time += step_time
        self.data_wait += data_wait

    def window(self, tokens_per_step: int, world_size: int) -> dict[str, float]:
        n = max(self.steps, 1)
        st = self.step_time / n
        tps = tokens_per_step / st if st > 0 else 0.0
        return {"step_time_s": st, "data_wait_s": self.data_wait / n, "tokens_per_s": tps,
                "tokens_per_s_per_device": tps / world_size}
