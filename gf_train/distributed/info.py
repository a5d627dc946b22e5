"""Who am I in the job: `DistInfo`, parsed once from torchrun / deepspeed-launcher / Slurm variables.

Owner: `gf_train.distributed`, the single reader and single writer of the rank environment:
`dist_info_from_env(env)` is the one parser (launcher variables -> `DistInfo`, pure), `write_dist_env(info)`
the one writer (`DistInfo` -> RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, so
that DeepSpeed, torch.distributed and mosaicml-streaming all see the same world). `read_dist_info()` does
both and is what the trainer calls at start-up; `ensure_dist_env(rank, world_size)` does both for a
component built with a rank of its own (the data loader) and checks that the environment agrees.

Precedence: RANK/WORLD_SIZE already set (torchrun, the deepspeed launcher, or a user) > Slurm step
variables (one task per device launched by `srun`, SLURM_STEP_NUM_TASKS set) > a single process.
Slurm allocations may be heterogeneous: SLURM_STEP_TASKS_PER_NODE="4(x2),3" is 4, 4 and 3 tasks on
nodes 0, 1 and 2 (`parse_tasks_per_node`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

DEFAULT_MASTER_PORT = 29500
# Variables launchers set (torchrun, the deepspeed launcher, our Slurm mapping). A process that starts a new
# job of its own (a test, the quickstart) must not pass its own values on: see `launch_free_env`.
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "GROUP_RANK", "ROLE_RANK",
               "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "CROSS_RANK", "CROSS_SIZE")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun" (also the deepspeed launcher), "slurm" or "single"
    node_rank: int = 0  # index of this process's node (SLURM_NODEID, GROUP_RANK; nodes may differ in size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A TCP port that was free a moment ago (for single-process runs and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_free_env(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default os.environ) without any launcher variable, for starting a new job."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k not in LAUNCH_VARS}


def parse_tasks_per_node(spec: str) -> list[int]:
    """Slurm's compressed tasks-per-node list -> tasks on each node: "4(x2),3" -> [4, 4, 3], "8" -> [8]."""
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
            raise ValueError(f"cannot parse Slurm tasks-per-node value {spec!r} (expected e.g. '4(x2),3')")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm node list, via `scontrol show hostnames` (handles `node[01-04]`)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True,
                             text=True, timeout=30).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    # No scontrol (unusual): expand the simplest "prefix[NN-MM,...]" form by hand.
    m = re.match(r"([^\[,]+)(?:\[([0-9]+))?", nodelist)
    if m is None:
        raise ValueError(f"cannot find the first host of SLURM_JOB_NODELIST={nodelist!r}; set MASTER_ADDR")
    return m.group(1) + (m.group(2) or "")


def _int(env: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        if default is None:
            raise ValueError(f"environment variable {key} is missing")
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ValueError(f"environment variable {key}={raw!r} is not an integer") from e


def dist_info_from_env(env: Mapping[str, str]) -> DistInfo:
    """The job layout from the launcher's variables (pure: `env` is not changed)."""
    if "RANK" in env and "WORLD_SIZE" in env:
        launcher = "torchrun"
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local_rank = _int(env, "LOCAL_RANK", 0)
        # torchrun sets LOCAL_WORLD_SIZE, the deepspeed launcher LOCAL_SIZE; else assume a single node.
        local_world = _int(env, "LOCAL_WORLD_SIZE", _int(env, "LOCAL_SIZE", world))
        # torchrun: GROUP_RANK; the deepspeed launcher: CROSS_RANK; else equal-sized nodes.
        node = _int(env, "GROUP_RANK", _int(env, "CROSS_RANK", rank // max(local_world, 1)))
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT", DEFAULT_MASTER_PORT)
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        launcher = "slurm"
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS")
        local_rank = _int(env, "SLURM_LOCALID", 0)
        node = _int(env, "SLURM_NODEID", 0)
        spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or str(world)
        counts = parse_tasks_per_node(spec)
        if not 0 <= node < len(counts):
            raise ValueError(f"SLURM_NODEID={node} is outside the tasks-per-node list {spec!r}")
        if sum(counts) != world:
            raise ValueError(f"the tasks-per-node list {spec!r} adds up to {sum(counts)} tasks but "
                             f"SLURM_STEP_NUM_TASKS={world}; launch with srun so that the step variables agree")
        local_world = counts[node]
        addr = env.get("MASTER_ADDR") or (first_slurm_host(env["SLURM_JOB_NODELIST"])
                                          if env.get("SLURM_JOB_NODELIST") else "127.0.0.1")
        # A port derived from the job id keeps two jobs sharing a node apart.
        port = _int(env, "MASTER_PORT", 10000 + _int(env, "SLURM_JOB_ID", 0) % 50000 if "SLURM_JOB_ID" in env
                    else DEFAULT_MASTER_PORT)
    else:
        launcher = "single"
        rank, world, local_rank, local_world, node = 0, 1, 0, 1, 0
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT", 0) or free_port()
    if not (0 <= rank < world and 0 <= local_rank < local_world):
        raise ValueError(f"inconsistent launch variables: rank {rank} of {world}, local rank {local_rank} of "
                         f"{local_world} ({launcher}); check the launcher's environment")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
                    master_addr=addr, master_port=port, launcher=launcher, node_rank=node)


def write_dist_env(info: DistInfo, env: MutableMapping[str, str] | None = None) -> None:
    """The only writer of the rank environment: the canonical torchrun-style variables of `info`."""
    env = os.environ if env is None else env
    env.update({"RANK": str(info.rank), "WORLD_SIZE": str(info.world_size), "LOCAL_RANK": str(info.local_rank),
                "LOCAL_WORLD_SIZE": str(info.local_world_size), "MASTER_ADDR": info.master_addr,
                "MASTER_PORT": str(info.master_port)})


def read_dist_info(env: MutableMapping[str, str] | None = None, apply: bool = True) -> DistInfo:
    """Parse the job layout once; with `apply`, write the canonical variables into `env` (os.environ)."""
    env = os.environ if env is None else env
    info = dist_info_from_env(env)
    if apply:
        write_dist_env(info, env)
    return info


def ensure_dist_env(rank: int, world_size: int, env: MutableMapping[str, str] | None = None) -> DistInfo:
    """`read_dist_info` for a component built for `rank` of `world_size` (the data loader: mosaicml-streaming
    reads the variables): raises ValueError when the environment says otherwise (e.g. a stale RANK export)."""
    env = os.environ if env is None else env
    info = dist_info_from_env(env)
    if (info.rank, info.world_size) != (rank, world_size):
        raise ValueError(
            f"built for rank {rank} of {world_size} but the environment says rank {info.rank} of "
            f"{info.world_size} ({info.launcher}: RANK={env.get('RANK')} WORLD_SIZE={env.get('WORLD_SIZE')}); "
            "unset stale RANK/WORLD_SIZE exports, or launch with torchrun/srun so that they agree")
    write_dist_env(info, env)
    return info
