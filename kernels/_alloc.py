"""Output allocation for gf_kernels launchers, with a test-only NaN-poison switch.

Every buffer a kernel is supposed to fill completely is allocated through :func:`new_output`.
With the environment variable ``GF_POISON_OUTPUTS=1`` (set by ``tests/conftest.py``)
the buffer is filled with NaN instead of left uninitialised, so an element a kernel forgets to
write shows up as a NaN in the comparison against the reference. The variable is read on every
call (no import-time global), so a test may toggle it with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import os

import torch

POISON_ENV = "GF_POISON_OUTPUTS"


def poison_enabled() -> bool:
    """True when outputs should be NaN-filled (tests only)."""
    return os.environ.get(POISON_ENV, "0") not in ("", "0", "false", "False")


def new_output(
    shape: tuple[int, ...] | torch.Size, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Allocate an output buffer: ``torch.empty`` normally, all-NaN when poisoning is enabled."""
    if poison_enabled():
        return torch.full(tuple(shape), float("nan"), dtype=dtype, device=device)
    return torch.empty(tuple(shape), dtype=dtype, device=device)
