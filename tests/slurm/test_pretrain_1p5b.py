"""`sbatch slurm/pretrain_1p5b.sh` on the local cluster with the real trainer: the file users submit, with only
sbatch flags and environment changing nodes, tasks, recipe (debug_cpu), data and run directory.

Owner: the Slurm launch tests. Cases (issue 8's acceptance):
- 1 node x 2 CPU ranks (gloo), `scancel --signal=USR1 --batch` mid-run: checkpointed, requeued
  (SLURM_RESTART_COUNT=1), resumed, and per-step losses equal to an uninterrupted run of the same job;
- the same under real partition preemption (a job in the high-priority partition needs our CPUs);
- 2 emulated nodes x 1 rank: both ranks start on different nodes, rendezvous and train a few steps;
- a corrupt newest checkpoint at requeue time: the requeued job falls back to the older one and finishes.
The uninterrupted reference run is submitted once per module, on the other node, alongside the first case.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _slurm_testing import CPU_FLAGS, REPO, Job, Slurm, checkpoints, losses, wait_done, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.dist, pytest.mark.slow]
SCRIPT = REPO / "slurm" / "pretrain_1p5b.sh"
STEPS = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny deterministic corpus, tokenized for debug_cpu's ctx 64 by the data library."""
    from gf_train.data.tokenize import tokenize_corpus

    root = tmp_path_factory.mktemp("slurm-data")
    rng = random.Random(8)
    words = "gold finch key cache layer token state decay attention value train model the a of".split()
    with (root / "docs.jsonl").open("w") as fh:
        for _ in range(600):
            fh.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))}) + "\n")
    tokenize_corpus([str(root / "docs.jsonl")], root / "data", "rwkv_world", 64, val_fraction=0.05,
                    progress=False, log=lambda *a, **k: None)
    return root / "data"


def _env(dataset: Path, run_dir: Path, steps: int = STEPS) -> dict[str, str]:
    env = {"RECIPE": "recipes/debug_cpu.yaml", "RUN_DIR": str(run_dir),
           "GF_OVERRIDES": f"data.train.0.path={dataset}/train data.val.0.path={dataset}/val "
                           f"schedule.max_steps={steps} log.every_steps=1 checkpoint.every_steps=100"}
    return env


def _one_node(slurm: Slurm, dataset: Path, run_dir: Path) -> Job:
    return slurm.submit(SCRIPT, "--nodes=1", "--ntasks-per-node=2", *CPU_FLAGS, env=_env(dataset, run_dir))


class Reference:
    """The uninterrupted run, submitted on first use and shared by the module's cases."""

    def __init__(self, slurm: Slurm, dataset: Path, run_dir: Path) -> None:
        self.slurm, self.dataset, self.run_dir, self.job = slurm, dataset, run_dir, None

    def submit(self) -> None:
        if self.job is None:
            self.job = _one_node(self.slurm, self.dataset, self.run_dir)

    def losses(self) -> dict[int, float]:
        self.submit()
        assert wait_done(self.job, 360) == "COMPLETED", self.job.log()[-4000:]
        got = losses(self.run_dir)
        assert sorted(got) == list(range(1, STEPS + 1)), got
        return got


@pytest.fixture(scope="module")
def reference(slurm_nodes: list[str], dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    tmp = tmp_path_factory.mktemp("slurm-ref")
    s = Slurm(tmp)
    try:
        yield Reference(s, dataset, tmp / "run")
    finally:
        s.cancel_all()


def _check_requeued_and_resumed(job: Job, run_dir: Path, ref: dict[int, float]) -> None:
    log = job.log()
    tail = log[-5000:]
    assert "got SIGUSR1" in log, tail
    assert "checkpoint written; requeueing job" in log or "DUE TO PREEMPTION" in log, tail
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log, tail
    assert int(job.info().get("Restarts", "0")) >= 1
    stops = [s for s in checkpoints(run_dir) if s < STEPS]
    assert stops, f"no checkpoint before the last step: {checkpoints(run_dir)}\n{tail}"
    m = re.search(r"resuming from \S*step_0*(\d+) ", log)  # the trainer says where it resumed
    assert m and int(m.group(1)) in stops, tail
    assert losses(run_dir) == ref, f"{losses(run_dir)} != {ref}"


@pytest.mark.timeout(480)
def test_usr1_mid_run_checkpoints_requeues_resumes_same_losses(
        slurm: Slurm, dataset: Path, reference: Reference, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    job = _one_node(slurm, dataset, run_dir)
    reference.submit()  # on the other node, at the same time
    wait_for(lambda: len(losses(run_dir)) >= 3, 300, "3 logged steps", job.log, poll=1)
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job.id)], check=True, timeout=30)
    assert wait_done(job, 360) == "COMPLETED", job.log()[-5000:]
    _check_requeued_and_resumed(job, run_dir, reference.losses())
    assert (run_dir / "logs" / f"slurm-{job.id}.log").read_text().count("SLURM_RESTART_COUNT=") == 2


@pytest.mark.timeout(480)
def test_partition_preemption_checkpoints_requeues_resumes_same_losses(
        slurm: Slurm, dataset: Path, reference: Reference, tmp_path: Path) -> None:
    ref = reference.losses()  # finished before we take a node's CPUs away
    run_dir = tmp_path / "run"
    job = _one_node(slurm, dataset, run_dir)
    wait_for(lambda: len(losses(run_dir)) >= 3, 300, "3 logged steps", job.log, poll=1)
    info = job.info()
    high = slurm.submit(None, "-p", "high", f"--nodelist={info['NodeList']}", "--nodes=1",
                        f"--ntasks={info['NumCPUs']}", "--cpus-per-task=1", "--gpus-per-node=0", "--time=5",
                        "--wrap", "echo high-priority job ran")
    assert wait_done(job, 400) == "COMPLETED", job.log()[-5000:]
    assert wait_done(high, 60) == "COMPLETED" and "high-priority job ran" in high.log()
    _check_requeued_and_resumed(job, run_dir, ref)


@pytest.mark.timeout(300)
def test_two_emulated_nodes_rendezvous_and_train(
        slurm: Slurm, slurm_nodes: list[str], dataset: Path, tmp_path: Path) -> None:
    if len(slurm_nodes) < 2:
        pytest.skip("needs 2 emulated nodes (scripts/ci/slurm_local.sh up starts GF_SLURM_NODES=2 by default)")
    run_dir = tmp_path / "run"
    job = slurm.submit(SCRIPT, "--nodes=2", "--ntasks-per-node=1", *CPU_FLAGS, env=_env(dataset, run_dir, steps=3))
    assert wait_done(job, 280) == "COMPLETED", job.log()[-5000:]
    log = job.log()
    assert "(2 nodes, 2 ranks)" in log
    nodes = dict(re.findall(r"\[task\] rank (\d)/2 local 0 on node (\S+)", log))
    assert set(nodes) == {"0", "1"} and len(set(nodes.values())) == 2, log[-4000:]
    got = losses(run_dir)
    assert sorted(got) == [1, 2, 3] and all(v == v and 0 < v < 20 for v in got.values()), got


@pytest.mark.timeout(480)
def test_corrupt_newest_checkpoint_at_requeue_falls_back_and_finishes(
        slurm: Slurm, dataset: Path, reference: Reference, tmp_path: Path) -> None:
    """USR1 -> checkpoint + exit 75 -> requeue; before the requeued job starts, one byte of the checkpoint it
    would resume from is flipped. The requeued trainer verifies it, moves it to checkpoints/corrupt/, resumes
    from the older one and finishes with the uninterrupted losses."""
    run_dir = tmp_path / "run"
    env = _env(dataset, run_dir)
    env["GF_OVERRIDES"] = env["GF_OVERRIDES"].replace("checkpoint.every_steps=100", "checkpoint.every_steps=2")
    job = slurm.submit(SCRIPT, "--nodes=1", "--ntasks-per-node=2", *CPU_FLAGS, env=env)
    reference.submit()
    wait_for(lambda: len(losses(run_dir)) >= 5, 300, "5 logged steps", job.log, poll=1)
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job.id)], check=True, timeout=30)
    status = run_dir / "exit_status.json"
    # written right after the preemption checkpoint is complete, seconds before the requeued job can start
    wait_for(lambda: status.is_file() and json.loads(status.read_text())["reason"] == "preempted", 300,
             "the preemption checkpoint", job.log, poll=0.05)
    newest = max(checkpoints(run_dir))
    target = run_dir / "checkpoints" / f"step_{newest:08d}" / "ds" / "mp_rank_00_model_states.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x04
    target.write_bytes(bytes(data))
    assert wait_done(job, 360) == "COMPLETED", job.log()[-5000:]
    log = job.log()
    assert f"step_{newest:08d} is damaged" in log and "xxh3_64 checksum" in log, log[-5000:]
    assert (run_dir / "checkpoints" / "corrupt" / f"step_{newest:08d}").is_dir()
    m = re.search(r"resuming from \S*step_0*(\d+) ", log)
    assert m and int(m.group(1)) < newest, log[-5000:]
    assert losses(run_dir) == reference.losses()
