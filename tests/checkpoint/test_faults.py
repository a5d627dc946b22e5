"""Fault injection on the real trainer (real loop, DeepSpeed ZeRO-2 on gloo; the fake model and loader of
tests/train/fakes.py keep it fast): kill -9 (also mid-save), truncated / deleted / flipped files of the
newest checkpoint, a deleted `COMPLETE`, a run directory on a tmpfs that fills up during a save. After
each fault the same command is rerun: it never loads a damaged checkpoint and ends with the per-step
losses of an uninterrupted run (`==`). Also: the rollback timeline, and a 2-rank fallback.

Every fault kind runs at least once by default (7 trials: each corruption, kill -9 once mid-save and once
between steps, a full tmpfs); which file is damaged and when a kill lands are drawn from a seeded RNG
(GF_FAULT_SEED, default 0). GF_FAULT_TRIALS (default 7) sets how many trials (the mix repeats, reshuffled),
GF_FAULT_KINDS (comma-separated: truncate, delete, flip, delete_complete, kill9, tmpfs_full) restricts them.
Each corruption of each file of a real checkpoint is checked in-process by
`test_every_damaged_file_of_a_real_checkpoint_is_refused` (no trainer launch per case).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.train.conftest import launch, losses, ok

pytestmark = [pytest.mark.slow]
OVER = ("schedule.max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep_last=2")
CORRUPTIONS = ("truncate", "delete", "flip", "delete_complete")
# one trial per kind; kill9 twice: mid-save, then after a random number of steps (they alternate)
KINDS = (*CORRUPTIONS, "kill9", "kill9", "tmpfs_full")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An uninterrupted 6-step run, and a run stopped at step 4 (checkpoints 2 and 4) to damage copies of."""
    root = tmp_path_factory.mktemp("faults")
    ref, mid = root / "ref", root / "mid"
    ok(launch(ref, *OVER))
    ok(launch(mid, "--stop-at-step", "4", *OVER))
    assert sorted(p.name for p in (mid / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    return {"ref": ref, "mid": mid}


def _resumed_from(out: str) -> str | None:
    for line in out.splitlines():
        if line.startswith("resuming from "):
            return Path(line.split()[2]).name
    return None


def _damage(step_dir: Path, kind: str, rng: random.Random) -> str:
    """Apply one fault to a random file of `step_dir`; returns what was damaged."""
    if kind == "delete_complete":
        (step_dir / "COMPLETE").unlink()
        return "COMPLETE"
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != "COMPLETE")
    f = rng.choice(files)
    data = f.read_bytes()
    if kind == "truncate":
        f.write_bytes(data[: rng.randrange(len(data))])
    elif kind == "delete":
        f.unlink()
    else:
        i = rng.randrange(len(data))
        f.write_bytes(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])
    return str(f.relative_to(step_dir))


def _kill_trial(run: Path, rng: random.Random, mid_save: bool) -> str:
    """Start a fresh run and kill -9 it during a save (a step dir without COMPLETE, the save widened by
    GF_TRAIN_FAULT_SAVE_SLEEP) or after a random number of logged steps."""
    target = rng.randint(1, 5)
    proc = launch(run, *OVER, wait=False, env={"GF_TRAIN_FAULT_SAVE_SLEEP": "0.4"})
    ck, metrics = run / "checkpoints", run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if mid_save:
                if ck.is_dir() and any(not (d / "COMPLETE").exists() for d in ck.glob("step_*")):
                    break
            elif metrics.is_file() and len(metrics.read_text().splitlines()) >= target:
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return "kill9_mid_save" if mid_save else f"kill9_after_{target}_steps"


def test_faults_never_load_damage_and_end_like_an_uninterrupted_run(runs: dict[str, Path], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    rng = random.Random(int(os.environ.get("GF_FAULT_SEED", "0")))
    n = int(os.environ.get("GF_FAULT_TRIALS", str(len(KINDS))))
    want = losses(runs["ref"])
    assert sorted(want) == [1, 2, 3, 4, 5, 6]
    # every kind once by default (tests/train/test_slow_matrix.py has more kill -9 trials); more trials repeat
    # the mix, each repetition shuffled on its own
    mix = list(KINDS)
    if os.environ.get("GF_FAULT_KINDS"):  # debugging: only these kinds
        mix = [k for k in mix if k in os.environ["GF_FAULT_KINDS"].split(",")]
        assert mix, f"GF_FAULT_KINDS={os.environ['GF_FAULT_KINDS']} names no kind of {sorted(set(KINDS))}"
    kinds: list[str] = []
    while len(kinds) < n:
        rng.shuffle(mix)
        kinds += mix
    kinds = kinds[:n]
    faults: Counter[str] = Counter()
    kills = 0
    fallbacks = corrupt_loads = 0
    for i, kind in enumerate(kinds):
        run = tmp_path / f"t{i:02d}"
        if kind == "tmpfs_full":
            got = _tmpfs_trial(runs["ref"], tmp_path / f"t{i:02d}_mnt", rng)
            if got is None:
                faults["tmpfs_full (skipped: mount -t tmpfs failed, not root?)"] += 1
                continue
            faults[got] += 1
            continue
        if kind == "kill9":
            what = _kill_trial(run, rng, mid_save=kills % 2 == 0)
            faults[what] += 1
            kills += 1
            damaged = None
            interrupted = [d.name for d in (run / "checkpoints").glob("step_*") if not (d / "COMPLETE").exists()]
            assert interrupted or what != "kill9_mid_save", "the kill meant for the middle of a save missed it"
        else:
            shutil.copytree(runs["mid"], run)
            damaged = run / "checkpoints" / "step_00000004"
            faults[f"{kind}"] += 1
            what = _damage(damaged, kind, rng)
        res = ok(launch(run, *OVER))
        out = res.stdout + res.stderr
        source = _resumed_from(out)
        if damaged is None and interrupted:  # killed mid-save: the incomplete one is reported, never loaded
            assert f"{interrupted[0]} is " in out and source != interrupted[0], out[-3000:]
            fallbacks += 1
            corrupt_loads += source == interrupted[0]
        if damaged is not None:
            assert source == "step_00000002", (kind, what, out[-3000:])  # fell back past the damaged one
            fallbacks += 1
            corrupt_loads += source == damaged.name
            if kind == "delete_complete":
                assert "step_00000004 is newer but incomplete" in out, out[-3000:]
            else:
                assert "step_00000004 is damaged" in out, out[-3000:]
                assert (run / "checkpoints" / "corrupt" / "step_00000004").is_dir()
        assert losses(run) == want, (kind, losses(run), want)
        assert json.loads((run / "exit_status.json").read_text())["reason"] == "finished"
    with capsys.disabled():
        print(f"\nfault injection: {len(kinds)} trials; faults by kind: {dict(sorted(faults.items()))}; "
              f"fallbacks taken: {fallbacks}; corrupt loads: {corrupt_loads}")
    assert corrupt_loads == 0 and len(kinds) == n


@pytest.mark.parametrize("kind", ["truncate", "delete", "flip"])
def test_every_damaged_file_of_a_real_checkpoint_is_refused(runs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    """Each file of the trainer's newest checkpoint in turn, damaged `kind`: the trainer's auto-resume choice
    (in-process, one rank) refuses it, moves it to corrupt/ and takes the older one. The launched trials above
    damage one random file per kind; this covers every file without a trainer launch per case."""
    from gf_train.config import RunConfig
    from gf_train.distributed.info import DistInfo
    from gf_train.train.resume import choose

    solo = DistInfo(rank=0, world_size=1, local_rank=0, local_world_size=1, master_addr="127.0.0.1",
                    master_port=0, launcher="single")
    newest = runs["mid"] / "checkpoints" / "step_00000004"
    files = sorted(str(p.relative_to(newest)) for p in newest.rglob("*") if p.is_file() and p.name != "COMPLETE")
    assert len(files) >= 4 and any(f.endswith("optim_states.pt") for f in files), files
    for i, rel in enumerate(files):
        run = tmp_path / f"case{i:02d}"
        shutil.copytree(runs["mid"] / "checkpoints", run / "checkpoints")
        f = run / "checkpoints" / "step_00000004" / rel
        data = f.read_bytes()
        assert data, f"{rel} is empty: nothing to truncate or flip"
        if kind == "truncate":
            f.write_bytes(data[: len(data) // 2])
        elif kind == "delete":
            f.unlink()
        else:
            at = len(data) // 2
            f.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
        logs: list[str] = []
        chosen, explicit = choose(RunConfig(), run, None, solo, logs.append)
        assert chosen is not None and chosen.name == "step_00000002" and not explicit, (kind, rel, logs)
        assert any("step_00000004 is damaged" in m for m in logs), (kind, rel, logs)
        assert (run / "checkpoints" / "corrupt" / "step_00000004").is_dir()


def _tmpfs_trial(ref: Path, mnt: Path, rng: random.Random) -> str | None:
    """A run dir on a tmpfs with room for about 1.5 or 2.5 checkpoints: a save fails with ENOSPC (exit 4 on a
    clear message, older checkpoints intact); after growing the tmpfs the rerun finishes like `ref`."""
    one = sum(p.stat().st_size for p in (ref / "checkpoints" / "step_00000006").rglob("*") if p.is_file())
    fits = rng.choice([1, 2])  # the save of step 2 * (fits + 1) runs out of space
    mnt.mkdir()
    size = int(one * (fits + 0.5)) + 64 * 1024  # + metrics.jsonl, config.yaml, directories
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        return None
    try:
        run = mnt / "run"
        res = ok(launch(run, *OVER), 4)
        fail_step = 2 * (fits + 1)
        assert "gf-train: error: saving checkpoint" in res.stderr and "failed while" in res.stderr, res.stderr[-3000:]
        assert "Traceback" not in res.stderr, res.stderr[-3000:]
        status = json.loads((run / "exit_status.json").read_text())
        assert status["exit_code"] == 4 and status["reason"] == "checkpoint_save_failed"
        kept = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert kept == [f"step_{2 * k:08d}" for k in range(1, fits + 1)], kept  # partial dir removed, older intact
        from gf_train.checkpoint import verify

        assert all(verify(run / "checkpoints" / k) == [] for k in kept)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        res = ok(launch(run, *OVER))
        assert _resumed_from(res.stdout + res.stderr) == kept[-1]
        assert losses(run) == losses(ref)
        return f"tmpfs_full_at_save_of_step_{fail_step}"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_rollback_starts_a_new_timeline(runs: dict[str, Path], tmp_path: Path) -> None:
    """Finished run (checkpoints 4, 6) -> --resume-from step 4, stop at 5 -> plain rerun: continues from the
    new step 5, never the old step 6 (kept aside in abandoned/), and ends with the uninterrupted losses."""
    run = tmp_path / "run"
    shutil.copytree(runs["ref"], run)
    ck = run / "checkpoints"
    res = ok(launch(run, "--resume-from", str(ck / "step_00000004"), "--stop-at-step", "5", *OVER))
    assert "new timeline" in res.stdout + res.stderr
    abandoned = list((ck / "abandoned").iterdir())
    assert len(abandoned) == 1 and [p.name for p in abandoned[0].iterdir()] == ["step_00000006"]
    assert (abandoned[0] / "step_00000006" / "COMPLETE").is_file()
    assert sorted(p.name for p in ck.glob("step_*")) == ["step_00000004", "step_00000005"]  # resumed-from kept
    res = ok(launch(run, *OVER))
    assert _resumed_from(res.stdout + res.stderr) == "step_00000005"
    assert losses(run) == losses(runs["ref"])
    assert sorted(p.name for p in ck.glob("step_*")) == ["step_00000005", "step_00000006"]
    assert (abandoned[0] / "step_00000006" / "COMPLETE").is_file()  # the old timeline is never pruned


def test_no_intact_checkpoint_is_one_line_and_exit_1(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["mid"], run)
    for step in ("step_00000002", "step_00000004"):
        (run / "checkpoints" / step / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"rot")
    res = ok(launch(run, *OVER), 1)
    err = [line for line in res.stderr.splitlines() if line.startswith("gf-train: error:")]
    assert len(err) == 1 and "tried step_00000004, step_00000002" in err[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert json.loads((run / "exit_status.json").read_text()) == {"exit_code": 1, "reason": "no_intact_checkpoint",
                                                                  "step": 0}
    assert sorted(p.name for p in (run / "checkpoints" / "corrupt").iterdir()) == ["step_00000002",
                                                                                  "step_00000004"]


@pytest.mark.dist
def test_two_ranks_agree_on_fallback_and_on_a_full_disk(tmp_path: Path) -> None:
    """2 ranks: (a) a flipped byte in rank 1's optimizer partition of the newest checkpoint: both ranks fall back
    to the older checkpoint together and end with the uninterrupted 2-rank losses; (b) a run dir on a tmpfs
    that fills up during the second save, whichever rank hits it first: every rank reports it, exit 4, the
    first checkpoint intact; after growing the tmpfs the rerun ends with the same losses."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    ok(launch(ref, *OVER, nproc=2))
    ok(launch(run, "--stop-at-step", "4", *OVER, nproc=2))
    part = run / "checkpoints" / "step_00000004" / "ds" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x10
    part.write_bytes(bytes(data))
    res = ok(launch(run, *OVER, nproc=2))
    out = res.stdout + res.stderr
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt: xxh3_64 checksum" in out, out[-3000:]
    assert _resumed_from(out) == "step_00000002"
    assert losses(run) == losses(ref)
    # (b)
    one = sum(p.stat().st_size for p in (ref / "checkpoints" / "step_00000006").rglob("*") if p.is_file())
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(one * 1.5) + 64 * 1024}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("mount -t tmpfs failed (needs root, as in CI): the full-disk case did not run")
    try:
        full = mnt / "run"
        res = launch(full, *OVER, nproc=2)
        assert res.returncode != 0  # torchrun turns the ranks' exit 4 into 1
        out = res.stdout + res.stderr
        assert out.count("gf-train: error: saving checkpoint") == 2, out[-4000:]  # one line per rank
        assert json.loads((full / "exit_status.json").read_text())["exit_code"] == 4
        assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step_00000002"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        res = ok(launch(full, *OVER, nproc=2))
        assert _resumed_from(res.stdout + res.stderr) == "step_00000002"
        assert losses(full) == losses(ref)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
