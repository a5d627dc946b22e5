"""The checkpoint layer without DeepSpeed: manifests and verification, the resolver, pruning, the timeline
rules, fallback choice (single process: the collectives are no-ops), RNG state, the architecture check."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gf_train.checkpoint import layout, manifest, retention, state
from gf_train.checkpoint.resolve import candidates, locate, resolve
from gf_train.config import RunConfig
from gf_train.config.model import ModelConfig
from gf_train.distributed.info import DistInfo
from gf_train.train import resume

SOLO = DistInfo(rank=0, world_size=1, local_rank=0, local_world_size=1, master_addr="127.0.0.1", master_port=0,
                launcher="single")


def _ckpt(root: Path, step: int, ranks: int = 1, complete: bool = True, payload: bytes = b"") -> Path:
    """A step dir with a torch file per rank written through the Recorder, manifests and COMPLETE."""
    d = root / layout.step_name(step)
    (d / layout.DS_TAG).mkdir(parents=True)
    for r in range(ranks):
        rec = manifest.Recorder(d)
        with rec.open(d / layout.DS_TAG / f"zero_pp_rank_{r}_optim_states.pt") as f:
            torch.save({"w": torch.arange(1000, dtype=torch.float32) * (step + r), "n": len(payload)}, f)
        rec.write_text(state.rank_file(d, r), json.dumps({"rank": r}))
        if r == 0:
            rec.write_text(d / layout.CLIENT_STATE, json.dumps({"step": step}))
        rec.write_manifest(r)
    if complete:
        manifest.write_complete(d, ranks)
    return d


def _flip(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_manifest_records_what_was_written(tmp_path: Path) -> None:
    d = _ckpt(tmp_path, 4, ranks=2)
    m0 = json.loads((d / manifest.manifest_name(0)).read_text())["files"]
    m1 = json.loads((d / manifest.manifest_name(1)).read_text())["files"]
    assert set(m0) == {"ds/zero_pp_rank_0_optim_states.pt", "rank_00000.json", "client_state.json"}
    assert set(m1) == {"ds/zero_pp_rank_1_optim_states.pt", "rank_00001.json"}
    for rel, want in {**m0, **m1}.items():  # hashed while writing == hashed from disk
        assert manifest.file_digest(d / rel) == (want["size"], want["xxh3_64"]), rel
    record = json.loads((d / layout.COMPLETE).read_text())
    assert record["world_size"] == 2 and set(record["manifests"]) == {"manifest_rank_00000.json",
                                                                      "manifest_rank_00001.json"}
    assert manifest.verify(d) == []
    assert torch.equal(torch.load(d / "ds/zero_pp_rank_1_optim_states.pt")["w"], torch.arange(1000.0) * 5)


def test_complete_needs_every_rank_manifest(tmp_path: Path) -> None:
    d = _ckpt(tmp_path, 4, ranks=2, complete=False)
    (d / manifest.manifest_name(1)).unlink()
    with pytest.raises(ValueError, match="rank 1 did not finish"):
        manifest.write_complete(d, 2)
    assert not layout.is_complete(d)


@pytest.mark.parametrize("fault", ["truncate", "flip", "delete", "manifest", "complete", "complete_garbled"])
def test_verify_names_the_damaged_file(tmp_path: Path, fault: str) -> None:
    d = _ckpt(tmp_path, 4, ranks=2)
    f = d / "ds" / "zero_pp_rank_1_optim_states.pt"
    if fault == "truncate":
        f.write_bytes(f.read_bytes()[:-10])
        want = "size"
    elif fault == "flip":
        _flip(f)
        want = "checksum"
    elif fault == "delete":
        f.unlink()
        want = "missing"
    elif fault == "manifest":
        _flip(d / manifest.manifest_name(1), 5)
        want = "manifest_rank_00001.json: xxh3_64 checksum"
    elif fault == "complete":
        (d / layout.COMPLETE).unlink()
        want = "COMPLETE: missing"
    else:
        (d / layout.COMPLETE).write_text((d / layout.COMPLETE).read_text()[:20])
        want = "COMPLETE: not a readable completion record"
    problems = manifest.verify(d)
    assert len(problems) == 1 and want in problems[0], problems
    if fault in ("truncate", "delete"):
        assert f.name in problems[0]
    # sizes are always checked; a flipped byte needs the checksums
    assert (manifest.verify(d, checksums=False) == []) == (fault == "flip")


def test_legacy_complete_is_accepted_unverified(tmp_path: Path) -> None:
    d = tmp_path / "step_00000002"
    d.mkdir()
    (d / layout.COMPLETE).write_text("ok\n")
    assert manifest.verify(d) == [] and not manifest.has_manifest(d)


def test_resolver(tmp_path: Path) -> None:
    run = tmp_path / "run"
    root = layout.checkpoints_dir(run)
    _ckpt(root, 10)
    newest = _ckpt(root, 20)
    _ckpt(root, 30, complete=False)
    assert locate(run) == newest == locate(root) == resolve(run / "step_00000020")  # RUN_DIR/step_N short form
    assert candidates(run) == [newest, root / "step_00000010"]
    with pytest.raises(ValueError, match="incomplete"):
        resolve(root / "step_00000030")
    with pytest.raises(ValueError, match="does not exist"):
        resolve(tmp_path / "nope")
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve(tmp_path)
    _flip(newest / "ds" / "zero_pp_rank_0_optim_states.pt")
    with pytest.raises(ValueError, match=r"step_00000020 is damaged: .*zero_pp_rank_0_optim_states.pt: xxh3_64"):
        resolve(run)
    assert resolve(run, checksums=False) == newest


def test_prune_keeps_newest_and_in_flight(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for s in (10, 20, 30):
        _ckpt(root, s)
    _ckpt(root, 25, complete=False)  # crash leftover, older than the newest complete
    _ckpt(root, 40, complete=False)  # in flight: must survive
    layout.move_aside(_ckpt(root, 5), layout.CORRUPT_DIR)
    assert [s for s, _ in layout.list_checkpoints(root)] == [10, 20, 30]
    deleted = retention.prune(root, keep_last=2)
    assert sorted(p.name for p in deleted) == ["step_00000010", "step_00000025"]
    assert sorted(p.name for p in root.iterdir()) == ["corrupt", "step_00000020", "step_00000030", "step_00000040"]
    assert (root / "corrupt" / "step_00000005" / layout.COMPLETE).is_file()  # never pruned


def test_timeline_abandon_then_prune_counts_current_only(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for s in (2, 4, 6, 8):
        _ckpt(root, s)
    _ckpt(root, 10, complete=False)
    moved = retention.abandon_newer(root, 4, stamp="T1")
    assert sorted(p.name for p in moved) == ["step_00000006", "step_00000008", "step_00000010"]
    assert all(p.parent == root / "abandoned" / "T1" for p in moved)
    assert [s for s, _ in layout.list_checkpoints(root)] == [2, 4]
    _ckpt(root, 6)  # the new timeline's step 6 (the old one is kept aside)
    retention.prune(root, keep_last=2)
    assert [s for s, _ in layout.list_checkpoints(root)] == [4, 6]
    assert (root / "abandoned" / "T1" / "step_00000008" / layout.COMPLETE).is_file()
    retention.prune(root, keep_last=2)  # idempotent, never the resumed-from step 4 before 6 is complete
    assert [s for s, _ in layout.list_checkpoints(root)] == [4, 6]


def _cfg() -> RunConfig:
    return RunConfig(model=ModelConfig(n_layer=2, n_embd=32, head_size=16))


def test_choose_falls_back_and_moves_damaged_aside(tmp_path: Path) -> None:
    run = tmp_path / "run"
    root = layout.checkpoints_dir(run)
    good = _ckpt(root, 4)
    bad = _ckpt(root, 8)
    _ckpt(root, 12, complete=False)
    bad.joinpath("rank_00000.json").write_text("{}")  # another size than recorded
    logs: list[str] = []
    chosen, explicit = resume.choose(_cfg(), run, None, SOLO, logs.append)
    assert chosen == good and not explicit
    assert (root / "corrupt" / "step_00000008").is_dir() and not bad.exists()
    assert any("step_00000008 is damaged" in m and "rank_00000.json" in m for m in logs), logs
    assert any("step_00000012 is newer but incomplete" in m for m in logs), logs
    # nothing intact: one error naming what was tried
    _flip(good / "ds" / "zero_pp_rank_0_optim_states.pt")
    with pytest.raises(resume.NoLoadableCheckpoint, match="tried step_00000004"):
        resume.choose(_cfg(), run, None, SOLO, logs.append)
    assert sorted(p.name for p in (root / "corrupt").iterdir()) == ["step_00000004", "step_00000008"]
    # checksums off: the flipped byte is not seen (sizes only)
    (root / "corrupt" / "step_00000004").rename(root / "step_00000004")
    cfg = _cfg()
    cfg.checkpoint.verify_checksums = False
    assert resume.choose(cfg, run, None, SOLO, logs.append)[0] == root / "step_00000004"


def test_choose_resume_from_older_starts_a_new_timeline(tmp_path: Path) -> None:
    run = tmp_path / "run"
    root = layout.checkpoints_dir(run)
    for s in (2, 4, 6):
        _ckpt(root, s)
    logs: list[str] = []
    chosen, explicit = resume.choose(_cfg(), run, root / "step_00000002", SOLO, logs.append)
    assert chosen == root / "step_00000002" and explicit
    assert [s for s, _ in layout.list_checkpoints(root)] == [2]
    abandoned = list((root / "abandoned").iterdir())
    assert len(abandoned) == 1 and sorted(p.name for p in abandoned[0].iterdir()) == ["step_00000004",
                                                                                      "step_00000006"]
    assert any("new timeline" in m for m in logs)
    # a damaged explicit target is an error, not a fallback
    _flip(root / "step_00000002" / "ds" / "zero_pp_rank_0_optim_states.pt")
    with pytest.raises(ValueError, match="--resume-from .* is damaged"):
        resume.choose(_cfg(), run, root / "step_00000002", SOLO, logs.append)
    assert (root / "step_00000002").is_dir()


def test_rng_roundtrip_is_json() -> None:
    saved = json.loads(json.dumps(state.capture_rng()))
    a = (random.random(), float(np.random.rand()), torch.rand(3))
    state.restore_rng(saved)
    b = (random.random(), float(np.random.rand()), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_one_architecture_check() -> None:
    old = RunConfig(model=ModelConfig(n_layer=4, n_embd=64, head_size=16))
    new = RunConfig(model=ModelConfig(n_layer=4, n_embd=128, head_size=16))
    with pytest.raises(ValueError, match=r"model\.n_embd is 64 in the checkpoint \(X\) but 128"):
        state.compare_configs(old, new, "the checkpoint (X)")
    new = RunConfig(model=ModelConfig(n_layer=4, n_embd=64, head_size=16, wkv_backend="naive"))
    new.optim.lr = 1e-3
    changes = state.compare_configs(old, new, "X")
    assert any("optim.lr" in c for c in changes) and any("wkv_backend" in c for c in changes)
    with pytest.raises(ValueError, match=r"model\.n_layer is 2 in W but 4 .*Set model\.n_layer=2, or else"):
        state.check_architecture({"n_layer": 2, "wkv_backend": "x"}, new.model, "W", ", or else")
