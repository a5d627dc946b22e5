"""The rank environment: one parser (`dist_info_from_env`) and one writer (`write_dist_env`) in
`gf_train.distributed.info`, for torchrun, the deepspeed launcher, Slurm (heterogeneous allocations
included) and a single process; the data loader's `ensure_dist_env` goes through the same two."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gf_train.distributed.info import (
    dist_info_from_env,
    ensure_dist_env,
    parse_tasks_per_node,
    read_dist_info,
    write_dist_env,
)

CANONICAL = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def test_dist_info_torchrun_env() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h",
           "MASTER_PORT": "1234"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.local_rank, i.local_world_size, i.launcher) == (3, 8, 1, 2, "torchrun")
    assert i.node_rank == 1
    # torchrun's GROUP_RANK names the node (nodes need not be the same size)
    assert dist_info_from_env({**env, "GROUP_RANK": "2"}).node_rank == 2


def test_dist_info_deepspeed_launcher_env() -> None:
    # deepspeed.launcher.launch sets RANK/LOCAL_RANK/WORLD_SIZE and LOCAL_SIZE (not LOCAL_WORLD_SIZE)
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_SIZE": "4", "CROSS_RANK": "1",
           "CROSS_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "29500"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.local_rank, i.local_world_size, i.node_rank) == (5, 8, 1, 4, 1)
    assert env["LOCAL_WORLD_SIZE"] == "4"


def test_dist_info_slurm_env_is_mapped() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_NODELIST": "gpu07", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "8"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.local_rank, i.local_world_size, i.launcher) == (5, 8, 1, 4, "slurm")
    assert i.master_addr == "gpu07" and i.master_port == 10000 + 4242
    assert env["RANK"] == "5" and env["WORLD_SIZE"] == "8" and env["LOCAL_WORLD_SIZE"] == "4"


def test_dist_info_single_and_batch_script() -> None:
    # An sbatch script without srun has SLURM_PROCID but no step variables: a single process.
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    i = read_dist_info(env)
    assert (i.rank, i.world_size, i.launcher) == (0, 1, "single") and int(env["MASTER_PORT"]) > 0
    with pytest.raises(ValueError, match="inconsistent"):
        read_dist_info({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.parametrize(("spec", "counts"), [
    ("8", [8]), ("2,1", [2, 1]), ("4(x2),3", [4, 4, 3]), ("1,3(x2)", [1, 3, 3]), ("2(x1)", [2]),
])
def test_parse_tasks_per_node(spec: str, counts: list[int]) -> None:
    assert parse_tasks_per_node(spec) == counts


@pytest.mark.parametrize("spec", ["", "4(x2", "x,3", "0", "4(x0)", "4,,3"])
def test_parse_tasks_per_node_rejects_garbage(spec: str) -> None:
    with pytest.raises(ValueError, match="tasks-per-node"):
        parse_tasks_per_node(spec)


def _slurm_task_envs(spec: str, counts: list[int]) -> list[dict[str, str]]:
    """The variables srun gives each task of a step laid out as `counts` (block distribution)."""
    envs, rank = [], 0
    for node, n in enumerate(counts):
        for local in range(n):
            envs.append({"SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(sum(counts)),
                         "SLURM_NODEID": str(node), "SLURM_LOCALID": str(local), "SLURM_STEP_TASKS_PER_NODE": spec,
                         "SLURM_TASKS_PER_NODE": spec, "SLURM_NTASKS": str(sum(counts)),
                         "MASTER_ADDR": "head", "SLURM_JOB_ID": "7"})
            rank += 1
    return envs


@pytest.mark.parametrize(("spec", "counts"), [("8", [8]), ("2,1", [2, 1]), ("4(x2),3", [4, 4, 3])])
def test_heterogeneous_slurm_allocation_every_task(spec: str, counts: list[int]) -> None:
    """Every task of the step gets its own node's size, through the trainer's path and the loader's path."""
    world = sum(counts)
    for env in _slurm_task_envs(spec, counts):
        node, rank = int(env["SLURM_NODEID"]), int(env["SLURM_PROCID"])
        info = dist_info_from_env(env)
        assert (info.rank, info.world_size, info.local_world_size, info.node_rank) == (rank, world, counts[node], node)
        for path in ("trainer", "loader"):
            e = dict(env)
            assert (read_dist_info(e) if path == "trainer" else ensure_dist_env(rank, world, e)) == info
            assert {k: e[k] for k in CANONICAL} == {
                "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": env["SLURM_LOCALID"],
                "LOCAL_WORLD_SIZE": str(counts[node]), "MASTER_ADDR": "head", "MASTER_PORT": str(10000 + 7)}


def test_slurm_list_that_disagrees_with_the_step_is_an_error() -> None:
    env = _slurm_task_envs("4(x2),3", [4, 4, 3])[0]
    with pytest.raises(ValueError, match="adds up to 11 tasks but SLURM_STEP_NUM_TASKS=12"):
        dist_info_from_env({**env, "SLURM_STEP_NUM_TASKS": "12"})
    with pytest.raises(ValueError, match="SLURM_NODEID=3 is outside"):
        dist_info_from_env({**env, "SLURM_NODEID": "3"})


def test_written_env_reads_back_as_the_same_info() -> None:
    env = _slurm_task_envs("4(x2),3", [4, 4, 3])[9]  # node 2, the node with 3 tasks
    info = read_dist_info(env)
    torchrun_view = {k: env[k] for k in CANONICAL}  # what a child process (streaming, DeepSpeed) sees
    again = dist_info_from_env(torchrun_view)
    assert (again.rank, again.world_size, again.local_rank, again.local_world_size) == (9, 11, 1, 3)
    assert (again.master_addr, again.master_port) == (info.master_addr, info.master_port)


def test_ensure_dist_env_fills_and_checks_against_the_caller() -> None:
    env = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "MASTER_ADDR": "h", "MASTER_PORT": "5"}
    ensure_dist_env(3, 4, env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == ("3", "4", "1", "2")
    with pytest.raises(ValueError, match="built for rank 0 of 4 but the environment says rank 3 of 4"):
        ensure_dist_env(0, 4, dict(env))
    single: dict[str, str] = {}
    ensure_dist_env(0, 1, single)  # a plain process: rank 0 of 1, written for streaming
    assert (single["RANK"], single["WORLD_SIZE"], single["LOCAL_WORLD_SIZE"]) == ("0", "1", "1")


def test_write_dist_env_is_the_only_writer_of_the_canonical_variables() -> None:
    env: dict[str, str] = {"UNRELATED": "x"}
    info = dist_info_from_env({"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "9"})
    assert env == {"UNRELATED": "x"}  # parsing writes nothing
    write_dist_env(info, env)
    assert set(env) == {"UNRELATED", *CANONICAL}


def test_no_other_module_writes_the_rank_variables() -> None:
    """`write_dist_env` is the single writer: no other module of the package assigns these variables."""
    pkg = Path(__file__).resolve().parents[2] / "gf_train"
    names = "|".join(CANONICAL[:4])
    write = re.compile(rf"""\[["']({names})["']\]\s*=[^=]|setdefault\(["']({names})["']|putenv\(["']({names})""")
    writers = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if write.search(p.read_text())]
    assert writers == [], writers
