"""Launcher for export tests: the real trainer (`gf_train.train.loop.train`) and the real GoldFinch model,
fed by the trainer tests' fake loader (tests/train/fakes.py), so a genuine DeepSpeed checkpoint exists
without MDS data. Usage: python ckpt_launcher.py --config R.yaml --run-dir DIR [--stop-at-step N]."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=None)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    fakes = _load("train_fakes", REPO / "tests" / "train" / "fakes.py")
    from gf_train.cli.train import add_arguments
    from gf_train.config import load
    from gf_train.train.loop import train

    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args()
    cfg = load(a.config, a.overrides)
    return train(cfg, Path(a.run_dir), stop_at_step=a.stop_at_step, loader_factory=fakes.loader_factory)


if __name__ == "__main__":
    sys.exit(main())
