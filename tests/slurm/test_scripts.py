"""Static checks of the launch scripts: shellcheck clean, bash syntax, and the #SBATCH contract of the
scripts users submit (requeue, batch-shell signal, append mode) and of the 1.5B wrapper's recipe.

Owner: the Slurm launch tests. Needs no cluster; shellcheck comes from Debian (scripts/ci/slurm_local.sh
installs it) and the test skips, saying so, where it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*(REPO / "slurm").glob("*.sh"), *(REPO / "scripts" / "ci").glob("*.sh")])
SUBMITTED = ["pretrain.sh", "pretrain_1p5b.sh"]


def test_scripts_exist() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"pretrain.sh", "pretrain_1p5b.sh", "env.sh", "tokenize.sh", "local.sh", "task.sh",
            "slurm_local.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_bash_syntax(script: Path) -> None:
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (Debian package `shellcheck`; scripts/ci/slurm_local.sh up installs it)")
    r = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def _sbatch(script: Path) -> dict[str, str]:
    opts: dict[str, str] = {}
    for line in script.read_text().splitlines():
        m = re.match(r"#SBATCH\s+--([\w-]+)(?:=(\S+))?", line)
        if m:
            opts[m.group(1)] = m.group(2) or ""
    return opts


@pytest.mark.parametrize("name", SUBMITTED)
def test_requeue_contract_in_sbatch_headers(name: str) -> None:
    opts = _sbatch(REPO / "slurm" / name)
    assert "requeue" in opts and opts["open-mode"] == "append"
    assert re.fullmatch(r"B:USR1@\d+", opts["signal"]), opts["signal"]
    assert opts["gpus-per-node"] == opts["ntasks-per-node"], "one task per GPU"


def test_1p5b_wrapper_trains_the_goldfinch_1p5b_recipe() -> None:
    from gf_train.config import derive, load

    text = (REPO / "slurm" / "pretrain_1p5b.sh").read_text()
    recipe = re.search(r"RECIPE:-(recipes/\S+\.yaml)", text).group(1)
    cfg = load([REPO / recipe])
    assert (cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd, cfg.model.ctx_len) == ("goldfinch", 24, 2048, 2048)
    opts = _sbatch(REPO / "slurm" / "pretrain_1p5b.sh")
    world = int(opts["nodes"]) * int(opts["ntasks-per-node"])
    d = derive(cfg, world)  # the default shape divides the global batch
    assert d.global_batch == 128 and d.grad_accum * d.micro_batch * world == 128
