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


def _shims(tmp_path: Path, trainer_exit: str) -> tuple[dict[str, str], Path]:
    """A PATH where `srun` runs the trainer command directly (no task.sh) and `scontrol` records its calls,
    plus a trainer that exits with the code `gf_train.train.signals.<trainer_exit>`."""
    import os
    import sys

    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1 $2" = "show hostnames" ] && echo node1\nexit 0\n')
    # srun ... bash .../task.sh CMD ARGS: drop everything up to task.sh and run CMD ARGS
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ $# -gt 0 && $1 != */task.sh ]]; do shift; done\n'
                                  'shift\nexec "$@"\n')
    trainer = tmp_path / "trainer.py"
    trainer.write_text(f"import sys\nfrom gf_train.train import signals\nsys.exit(signals.{trainer_exit})\n")
    for p in (bin_dir / "scontrol", bin_dir / "srun"):
        p.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node1", SLURM_NNODES="1",
               SLURM_NTASKS="1", RECIPE="recipes/debug_cpu.yaml", RUN_DIR=str(tmp_path / "run"), GF_REPO=str(REPO),
               GF_VENV=str(tmp_path / "no-venv"), GF_TRAIN_CMD=f"{sys.executable} {trainer}")
    return env, calls


@pytest.mark.parametrize(("trainer_exit", "restarts", "script_rc", "requeued"), [
    ("EXIT_REQUEUE", "0", 0, True),  # preempted, checkpoint written: back to the queue
    ("EXIT_REQUEUE", "100", None, False),  # ... unless GF_MAX_RESTARTS is used up: the code passes through
    ("EXIT_NONFINITE", "0", None, False),  # a failure is not requeued: its code passes through
    ("EXIT_OK", "0", 0, False),
])
def test_pretrain_requeues_exactly_on_the_trainers_requeue_code(tmp_path: Path, trainer_exit: str, restarts: str,
                                                                 script_rc: int | None, requeued: bool) -> None:
    """The trainer/Slurm contract: the code `gf_train.train.signals` exits with on preemption makes
    slurm/pretrain.sh requeue the job; other codes are not requeued."""
    from gf_train.train import signals

    env, calls = _shims(tmp_path, trainer_exit)
    env["SLURM_RESTART_COUNT"] = restarts
    r = subprocess.run(["bash", str(REPO / "slurm" / "pretrain.sh")], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    code = getattr(signals, trainer_exit)
    assert r.returncode == (code if script_rc is None else script_rc), r.stdout + r.stderr
    recorded = calls.read_text() if calls.exists() else ""
    assert ("requeue 4242" in recorded) == requeued, recorded


def test_task_sh_leaves_the_rank_mapping_to_the_trainer_on_a_heterogeneous_step(tmp_path: Path) -> None:
    """slurm/task.sh writes no rank variable (a stale RANK from the submitting shell is dropped); the
    trainer's `read_dist_info` maps Slurm's step variables, node sizes "2,1" included."""
    import json
    import os
    import sys

    probe = ("import json, os; from gf_train.distributed.info import read_dist_info; i = read_dist_info(); "
             "print(json.dumps([i.rank, i.world_size, i.local_rank, i.local_world_size, i.node_rank, i.launcher, "
             "os.environ['LOCAL_WORLD_SIZE']]))")
    got = []
    for rank, (node, local) in enumerate([(0, 0), (0, 1), (1, 0)]):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(SLURM_PROCID=str(rank), SLURM_STEP_NUM_TASKS="3", SLURM_NODEID=str(node),
                   SLURM_LOCALID=str(local), SLURM_STEP_TASKS_PER_NODE="2,1", SLURM_NTASKS="3",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT="29999", RANK="7", WORLD_SIZE="8", LOCAL_WORLD_SIZE="8")
        r = subprocess.run(["bash", str(REPO / "slurm" / "task.sh"), sys.executable, "-c", probe], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        got.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert got == [[0, 3, 0, 2, 0, "slurm", "2"], [1, 3, 1, 2, 0, "slurm", "2"], [2, 3, 0, 1, 1, "slurm", "1"]]
