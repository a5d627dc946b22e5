"""The `gf-train` command line (gf_train/cli/): config show and --explain end to end, dotted overrides on
either side of flags, unknown flags rejected, the export dtype choices, and no flags outside gf_train/cli."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gf_train.cli import build_parser, main
from gf_train.cli.overrides import gather_overrides

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/debug_cpu.yaml")


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


def _parse(argv: list[str]):
    args, unknown = build_parser().parse_known_args(argv)
    return args, gather_overrides(args, unknown)


@pytest.mark.parametrize("argv", [
    ["train", "a.x=1", "--run-dir", "X", "b.y=2", "--config", "r.yaml"],
    ["train", "--config", "r.yaml", "a.x=1", "--run-dir", "X", "b.y=2"],
    ["train", "a.x=1", "b.y=2", "--config", "r.yaml", "--run-dir", "X"],
    ["train", "--run-dir", "X", "--config", "r.yaml", "a.x=1", "b.y=2"],
])
def test_overrides_before_and_after_flags_keep_their_order(argv: list[str]) -> None:
    args, unknown = _parse(argv)
    assert unknown == [] and args.overrides == ["a.x=1", "b.y=2"] and args.run_dir == "X"
    assert args.config == ["r.yaml"]


def test_later_override_wins_across_flags(capsys) -> None:
    rc = main(["config", "show", "model.n_layer=3", "--config", RECIPE, "model.n_embd=128", "model.n_layer=7"])
    out = capsys.readouterr().out
    assert rc == 0 and "n_layer: 7" in out and "n_embd: 128" in out


def test_train_override_after_a_flag_reaches_the_config(capsys, tmp_path: Path) -> None:
    # `gf-train train a=1 --run-dir X b=2` failed with "unrecognized arguments: b=2"; now b=2 is loaded
    # (a misspelt key there is reported by the config loader, before any training starts).
    rc = main(["train", "model.n_layer=3", "--config", RECIPE, "--run-dir", str(tmp_path / "run"), "modl.x=2"])
    assert rc == 1 and "unknown config key 'modl'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "bad"), [
    (["train", "--config", "r.yaml", "--bogus", "a.x=1"], "--bogus"),  # an unknown flag stays an error
    (["config", "show", "--config", "r.yaml", "a.x=1", "--verbose"], "--verbose"),
    (["export", "--checkpoint", "c", "--out", "o", "a.x=1"], "a.x=1"),  # export takes no overrides
    (["plot", "run", "extra"], "extra"),
])
def test_unknown_arguments_are_rejected(argv: list[str], bad: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and f"unrecognized arguments: {bad}" in capsys.readouterr().err


def test_config_show_explain_prints_values_docs_and_ineffective_settings(capsys) -> None:
    rc = main(["config", "show", "--explain", "--config", RECIPE, "schedule.warmup_steps=1000"])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("schedule.warmup_steps:"))
    assert re.match(r"schedule\.warmup_steps: 1000 +# Warm-up steps", line), line
    assert "schedule.warmup_steps=1000 >= the run's 40 steps" in out
    rc = main(["config", "show", "--explain", "--config", RECIPE])
    assert rc == 0 and "settings that have no effect: none" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["export", "--checkpoint", "c"], ["convert", "--from", "rwkv-lm", "w.pth"]])
def test_dtype_accepts_only_what_the_export_supports(command: list[str], capsys) -> None:
    from gf_train.cli.export import DTYPES
    from gf_train.export.hf_dir import DTYPES as WRITER_DTYPES

    assert set(DTYPES) == set(WRITER_DTYPES)  # the flag offers exactly what the writer can store
    with pytest.raises(SystemExit) as e:
        main([*command, "--out", "o", "--dtype", "int8"])
    assert e.value.code == 2 and "invalid choice: 'int8'" in capsys.readouterr().err
    args, unknown = _parse([*command, "--out", "o", "--dtype", "fp16"])
    assert unknown == [] and args.dtype == "fp16"


def test_every_subcommand_has_help() -> None:
    for argv in (["train"], ["export"], ["convert"], ["eval"], ["generate"], ["plot"], ["data", "tokenize"],
                 ["data", "inspect"], ["data", "cache-clean"], ["config", "show"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code == 0, argv


def test_no_argument_parser_outside_the_cli_package() -> None:
    """Library modules take typed arguments and own no flags (quickstart is a program of its own)."""
    pkg = REPO / "gf_train"
    owners = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                    if re.search(r"^\s*(import argparse|from argparse import)", p.read_text(), re.M))
    assert [o for o in owners if not o.startswith("cli/")] == ["quickstart.py"], owners


def test_config_show_starts_without_torch() -> None:
    code = ("import sys; from gf_train.cli import main; rc = main(['config', 'show', '--explain', '--config', "
            f"{RECIPE!r}]); assert rc == 0; assert 'torch' not in sys.modules, 'config show imported torch'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
