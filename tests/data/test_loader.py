"""The streaming loader: exact resume (0/2 workers, 1/2 ranks, elastic 2 -> 1), mixing, val, checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
from data_helpers import corpus_docs, write_jsonl

from gf_train.config.data import DataConfig, StreamConfig
from gf_train.data import build_loader, check_vocab, open_split, read_manifest
from gf_train.data.compat import clean_stale_shm
from gf_train.data.tokenize import tokenize_corpus
from gf_train.distributed.info import free_port, launch_free_env
from tests._procs import run_group

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ds")
    inp = write_jsonl(d / "c.jsonl", corpus_docs(400))
    tokenize_corpus([str(inp)], d / "ds", "rwkv_world", 16, val_docs=30, progress=False, log=lambda s: 0)
    return d / "ds"


@pytest.fixture(scope="session")
def two_datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("mix")
    docs = corpus_docs()
    a = write_jsonl(d / "a.jsonl", docs[:150])
    b = write_jsonl(d / "b.jsonl", docs[150:450])
    for name, inp in (("a", a), ("b", b)):
        tokenize_corpus([str(inp)], d / name, "rwkv_world", 16, progress=False, log=lambda s: 0)
    return d / "a", d / "b"


@pytest.fixture
def rank0_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(k, v)


def rows(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[list[int]]:
    """Token rows of the batches, consumed one by one (a batch from a DataLoader worker holds a descriptor)."""
    return [r for x, y in batches for r in torch.cat([x, y[:, -1:]], 1).tolist()]


@pytest.mark.parametrize("nw", [0, 2])
def test_resume_exact_single_rank(dataset: Path, rank0_env: None, nw: int) -> None:
    cfg = DataConfig(train=[StreamConfig(path=str(dataset / "train"))], num_workers=nw)
    kw = dict(seq_len=16, micro_batch=3, global_batch=6, world_size=1, rank=0)
    loader = build_loader(cfg, "train", **kw)
    n_epoch = len(loader)
    it = iter(loader)
    first = [next(it) for _ in range(7)]  # stop in the middle of an optimizer step (micro 1 of 2)
    state = json.loads(json.dumps(loader.state_dict()))
    rest = rows(next(it) for _ in range(n_epoch))  # runs into the next epoch
    x, y = first[0]
    assert x.shape == y.shape == (3, 16) and x.dtype == torch.long and torch.equal(x[:, 1:], y[:, :-1])
    resumed = build_loader(cfg, "train", **kw)
    resumed.load_state_dict(state)
    it2 = iter(resumed)
    assert rows(next(it2) for _ in range(n_epoch)) == rest
    # one epoch covers distinct samples; the next epoch is a different order
    seen = (rows(first) + rest)[: n_epoch * 3]
    assert len({tuple(r) for r in seen}) == len(seen)
    assert resumed.state_dict()["epoch"] == 1


def test_val_is_deterministic_and_bounded(dataset: Path, rank0_env: None) -> None:
    cfg = DataConfig(train=[StreamConfig(path=str(dataset / "train"))], val=[StreamConfig(path=str(dataset / "val"))])
    val = build_loader(cfg, "val", seq_len=16, micro_batch=4, global_batch=8, world_size=1, rank=0)
    n = read_manifest(dataset)["splits"]["val"]["samples"]
    assert len(val) == n // 4
    a, b = rows(list(val)), rows(list(val.iter(3)))
    assert len(b) == 12 and a[:12] == b
    from gf_train.data.inspect import read_samples

    assert a == read_samples(dataset / "val", list(range(len(a))))  # unshuffled: stored order


def test_mixing_proportions(two_datasets: tuple[Path, Path], rank0_env: None) -> None:
    a, b = two_datasets
    from gf_train.data.inspect import read_samples

    na = read_manifest(a)["splits"]["train"]["samples"]
    in_a = {tuple(r) for r in read_samples(a / "train", list(range(na)))}
    cfg = DataConfig(train=[StreamConfig(path=str(a / "train"), proportion=0.7),
                            StreamConfig(path=str(b / "train"), proportion=0.3)], epoch_size=6000)
    loader = build_loader(cfg, "train", seq_len=16, micro_batch=50, global_batch=100, world_size=1, rank=0)
    got = rows(list(loader.iter(100)))  # 5000 samples
    frac_a = sum(tuple(r) in in_a for r in got) / len(got)
    assert len(got) == 5000 and abs(frac_a - 0.7) < 0.02, frac_a


def test_checks(dataset: Path, bpe_json: Path, tmp_path: Path, rank0_env: None) -> None:
    cfg = DataConfig(train=[StreamConfig(path=str(dataset / "train"))], val=[StreamConfig(path=str(dataset / "val"))])
    assert check_vocab(cfg, 65536)["tokenizer"]["name"] == "rwkv_world"
    assert check_vocab(dataset / "train", 70000)["seq_len"] == 16  # a larger model vocab is fine
    with pytest.raises(ValueError, match=r"vocab_size 65536\) but the model has vocab_size 50304"):
        check_vocab(cfg, 50304)
    other = tmp_path / "o"
    tokenize_corpus([str(write_jsonl(tmp_path / "c.jsonl", corpus_docs(50)))], other, str(bpe_json), 16,
                    progress=False, log=lambda s: 0)
    with pytest.raises(ValueError, match="all streams of a run must use one tokenizer"):
        check_vocab([dataset, other], 65536)
    with pytest.raises(ValueError, match="the data has seq_len 16 but the loader was asked for 32"):
        build_loader(cfg, "train", seq_len=32, micro_batch=2, global_batch=4, world_size=1, rank=0)
    with pytest.raises(ValueError, match="not divisible"):
        build_loader(cfg, "train", seq_len=16, micro_batch=3, global_batch=4, world_size=1, rank=0)
    loader = build_loader(cfg, "train", seq_len=16, micro_batch=2, global_batch=4, world_size=1, rank=0)
    bad = dict(loader.state_dict(), global_batch=8)
    with pytest.raises(ValueError, match="global_batch"):
        loader.load_state_dict(bad)


def test_stale_shm_is_removed_live_shm_kept(tmp_path: Path) -> None:
    from multiprocessing import shared_memory

    live = shared_memory.SharedMemory(name="999998_locals", create=True, size=8)  # mapped by us: kept
    (Path("/dev/shm") / "999999_locals").write_bytes(b"x" * 8)  # mapped by nobody: stale
    try:
        removed = clean_stale_shm()  # (a job in another test worker may have removed the stale one already)
        assert "999998_locals" not in removed and not (Path("/dev/shm") / "999999_locals").exists()
        assert (Path("/dev/shm") / "999998_locals").exists()
    finally:
        live.close()
        live.unlink()


@pytest.mark.slow
@pytest.mark.dist
def test_two_ranks_resume_and_elastic(dataset: Path, rank0_env: None) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(HERE / "_dist_loader_worker.py"), str(dataset), "2", "8", "6", "3"]
    env = launch_free_env()
    r = run_group(cmd, env=env, timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(lines[0][len("RESULT "):])
    for nw in ("0", "2"):
        assert res[nw]["exact"], nw  # 2 ranks: resumed run == uninterrupted run
    assert res["0"]["global_batches"] == res["2"]["global_batches"]  # worker count doesn't change the order
    two = res["0"]["global_batches"]
    assert all(len(gb) == 8 for gb in two) and len({tuple(s) for gb in two for s in gb}) == 48
    # elastic: the same global batches on 1 rank (grad accumulation 4 x micro 2), from start and from the state
    cfg = DataConfig(train=[StreamConfig(path=str(dataset / "train"))])
    kw = dict(seq_len=16, micro_batch=2, global_batch=8, world_size=1, rank=0)
    one = build_loader(cfg, "train", **kw)
    got = rows(list(one.iter(24)))
    assert [got[i * 8:(i + 1) * 8] for i in range(6)] == two
    resumed = build_loader(cfg, "train", **kw)
    resumed.load_state_dict(res["0"]["state"])
    got = rows(list(resumed.iter(12)))
    assert [got[i * 8:(i + 1) * 8] for i in range(3)] == two[3:]
    # validation on 2 ranks: half the batches each, rank 0 starts at the first stored sample
    val = build_loader(DataConfig(train=cfg.train, val=[StreamConfig(path=str(dataset / "val"))]), "val", **kw)
    assert res["0"]["val_batches"] == len(val) // 2


_MANY_SPLITS = """
import os, sys
from pathlib import Path
from gf_train.config.data import DataConfig, StreamConfig
from gf_train.data import build_loader, open_split
split, train = sys.argv[1], sys.argv[2]
with open_split([split], 16) as src:  # imports, the resource tracker, ...
    want = src.sample(0).tolist()
fds = len(os.listdir("/proc/self/fd"))
for _ in range(40):
    with open_split([split], 16) as src:
        prefix = "/dev/shm/%06d_" % src.ds._shm_prefix_int
        assert Path(prefix + "locals").exists() and src.sample(0).tolist() == want
    assert not Path(prefix + "locals").exists()  # unlinked: nothing left for clean_stale_shm
    loader = build_loader(DataConfig(train=[StreamConfig(path=train)]), "train", seq_len=16, micro_batch=2,
                          global_batch=2, world_size=1, rank=0)
    next(iter(loader))
    loader.close()
    loader.close()  # idempotent
    assert len(os.listdir("/proc/self/fd")) == fds
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd (Linux)")
def test_close_frees_shared_memory_and_descriptors(dataset: Path) -> None:
    """streaming frees a dataset's segments only at exit and attaches to every other live dataset's while
    building one: a process that opens many splits (eval and inspect in a notebook next to a training job,
    the test suite) ran out of descriptors. Here 80 datasets, while this process holds others open."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    with open_split([str(dataset / "val")], 16):  # another live dataset on the node
        r = subprocess.run([sys.executable, "-c", _MANY_SPLITS, str(dataset / "val"), str(dataset / "train")],
                           capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
