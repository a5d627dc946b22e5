"""The `gf-train` entry point: config show works end to end; unknown features exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gf_train.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_config_show_prints_resolved_yaml(capsys) -> None:
    rc = main(["config", "show", "--config", str(REPO / "recipes/debug_cpu.yaml"), "model.n_layer=5"])
    out = capsys.readouterr().out
    assert rc == 0 and "n_layer: 5" in out and "run_name: debug_cpu" in out


def test_config_show_bad_key_is_a_clear_error(capsys) -> None:
    rc = main(["config", "show", "--config", str(REPO / "recipes/debug_cpu.yaml"), "modl.n_layer=5"])
    assert rc == 1
    assert "unknown config key 'modl'" in capsys.readouterr().err


def test_python_dash_m_works() -> None:
    r = subprocess.run([sys.executable, "-m", "gf_train", "config", "show", "--config",
                        str(REPO / "recipes/debug_cpu.yaml")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "arch: goldfinch" in r.stdout


def test_deepspeed_launchers_local_rank_flag_is_accepted(capsys) -> None:
    rc = main(["--local_rank=1", "config", "show", "--config", str(REPO / "recipes/debug_cpu.yaml")])
    assert rc == 0 and "arch: goldfinch" in capsys.readouterr().out
    rc = main(["--local_rank", "0", "config", "show", "--config", str(REPO / "recipes/debug_cpu.yaml")])
    assert rc == 0
