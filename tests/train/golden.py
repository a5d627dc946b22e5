"""Golden per-step losses of recipes/debug_cpu.yaml: the run that produces them, the stored file and the
one comparison both the golden test and `python -m tests.train.update_golden` use.

Why a tolerance: the stored losses come from one CPU; another CPU model (AMD vs Intel, AVX2 vs AVX-512)
makes oneDNN/BLAS pick other kernels, so float sums round differently and the losses drift. Measured
(torch 2.13.0+cpu, 2 ranks, 40 steps): file written on an Intel Xeon (AVX-512), run on an AMD EPYC:
steps 1-2 equal, then a drift that grows to at most 2.2e-6 relative (step 26) and is 1.1e-6 at step 40.
A real change of the maths is three orders larger: `optim.lr` x 1.01 moves step 5 by 1.6e-4, step 10 by
1.3e-3, step 20 by 6.2e-3 and step 40 by 2.1e-3 relative. RTOL = 1e-4 sits 45x above the CPU drift and
13x below the lr change at step 10 (tests/train/test_golden.py proves the second half).
Same-machine comparisons of two runs (resume, kill -9, preemption, 1 vs 2 workers) stay exact `==`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.train.conftest import REPO, launch, losses, ok

RECIPE = REPO / "recipes" / "debug_cpu.yaml"
GOLDEN = REPO / "tests" / "assets" / "golden_debug_cpu.json"
RTOL = 1e-4  # relative, per step; see the module docstring for the measured drift it covers


def data_overrides(corpus: Path) -> tuple[str, str]:
    return f"data.train=[{{path: {corpus / 'train'}}}]", f"data.val=[{{path: {corpus / 'val'}}}]"


def run_recipe(corpus: Path, run: Path, *extra: str, flags: tuple[str, ...] = ()) -> dict[str, float]:
    """Train recipes/debug_cpu.yaml on `corpus` with 2 ranks (`extra`: overrides, `flags`: trainer flags);
    returns {step (str): loss}."""
    ok(launch(run, *flags, *data_overrides(corpus), "log.every_steps=1", "log.progress_bar=false", *extra, nproc=2,
              fake=False, config=RECIPE, timeout=900))
    return {str(k): v for k, v in losses(run).items()}


def load_golden() -> dict[str, float]:
    return json.loads(GOLDEN.read_text())["losses"]


def mismatches(got: dict[str, float], want: dict[str, float], rtol: float = RTOL) -> list[str]:
    """One line per step of `got` whose loss is not within `rtol` of `want` (or is missing from it)."""
    bad = []
    for step, loss in got.items():
        ref = want.get(step)
        if ref is None or not math.isclose(loss, ref, rel_tol=rtol, abs_tol=0.0):
            rel = "n/a" if ref is None else f"{abs(loss - ref) / abs(ref):.2e}"
            bad.append(f"step {step}: got {loss!r}, golden {ref!r} (relative diff {rel} > {rtol:g})")
    return bad
