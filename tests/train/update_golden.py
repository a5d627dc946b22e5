"""Rewrite tests/assets/golden_debug_cpu.json after an intended numerical change:

    .venv/bin/python -m tests.train.update_golden

It trains recipes/debug_cpu.yaml exactly as tests/train/test_golden.py does, prints how far the new losses
are from the stored ones, and writes the file. Commit the file with the change that moved the losses and say
why in the commit message. This is a command, never a test: a test run cannot rewrite what it checks.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.train.golden import GOLDEN, RECIPE, REPO, load_golden, mismatches, run_recipe
from tests.train.golden_data import make_corpus


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gf-golden-") as tmp:
        corpus = make_corpus(Path(tmp) / "golden", seq_len=64)
        got = run_recipe(corpus, Path(tmp) / "run")
    if GOLDEN.exists():
        diff = mismatches(got, load_golden())
        print(f"{len(diff)} of {len(got)} steps outside the tolerance of the stored file", *diff[:10], sep="\n")
    doc = {"recipe": str(RECIPE.relative_to(REPO)), "nproc": 2, "losses": got}
    GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {GOLDEN.relative_to(REPO)} ({len(got)} steps)")


if __name__ == "__main__":
    main()
