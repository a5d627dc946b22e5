"""gf_train.evaluate: which samples are evaluated (whole split / seeded subset), the rank split with padding,
and `evaluate` against a direct computation on the chosen samples of a real tokenized dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gf_train.evaluate import IGNORE, LossTally, choose_samples, eval_result, evaluate, loss_tally, rank_batches


def test_choose_samples_whole_split_within_budget_else_seeded_subset() -> None:
    whole = choose_samples(10, 16, 160, seed=1)
    assert whole.seed is None and whole.ids.tolist() == list(range(10))
    assert whole.describe() == "the whole val split (10 samples, 160 tokens)"
    assert choose_samples(10, 16, None, seed=1).ids.tolist() == list(range(10))
    sub = choose_samples(1000, 16, 16 * 50, seed=7)
    assert len(sub.ids) == 50 and len(set(sub.ids.tolist())) == 50 and (np.diff(sub.ids) > 0).all()
    assert sub.ids.max() < 1000 and sub.ids.min() >= 0
    assert sub.ids.tolist() == choose_samples(1000, 16, 16 * 50, seed=7).ids.tolist()  # chosen once, fixed
    assert sub.ids.tolist() != choose_samples(1000, 16, 16 * 50, seed=8).ids.tolist()
    assert sub.ids.tolist() != list(range(50))  # not the first samples in stored order
    assert "50 of 1,000 samples" in sub.describe() and "seed 7" in sub.describe()
    with pytest.raises(ValueError, match="no samples"):
        choose_samples(0, 16, None, seed=0)


class _Rows:
    """Sample i: tokens i, i+1, ..., i+T (random access like the data loader's `sample`)."""

    def __init__(self, n: int, t: int) -> None:
        self.n, self.t = n, t

    @property
    def num_samples(self) -> int:
        return self.n

    def sample(self, i: int) -> np.ndarray:
        return np.arange(i, i + self.t + 1) % 50


@pytest.mark.parametrize("world,batch", [(1, 4), (2, 4), (3, 2), (4, 5)])
def test_ranks_cover_the_set_once_with_equal_forward_counts(world: int, batch: int) -> None:
    src = _Rows(11, 8)
    ids = np.arange(11)
    counted: list[int] = []
    n_batches = set()
    for rank in range(world):
        batches = list(rank_batches(src, ids, batch, rank, world))
        n_batches.add(len(batches))
        for x, y, real in batches:
            assert x.shape == y.shape == (batch, 8)  # one shape: a compiled model compiles validation once
            assert torch.equal(x[:real, 1:], y[:real, :-1])
            assert bool((y[max(real, 1):] == IGNORE).all()) and bool((y[:max(real, 1)] != IGNORE).all())
            counted += x[:real, 0].tolist()
    assert sorted(counted) == list(range(11)) and len(n_batches) == 1  # ZeRO-3: same forwards on every rank


def test_tally_over_ranks_equals_one_rank() -> None:
    src, eval_set = _Rows(13, 6), choose_samples(13, 6, None, seed=0)
    emb = torch.randn(50, 50)

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(emb[x].flatten(0, 1), y.flatten())

    one = loss_tally(loss_fn, src, eval_set, 4)
    total = LossTally()
    for rank in range(3):
        v = loss_tally(loss_fn, src, eval_set, 2, rank, 3).vector()
        total = LossTally.from_vector(total.vector() + v)
    assert (total.tokens, total.samples) == (one.tokens, one.samples) == (13 * 6, 13)
    assert total.nats == pytest.approx(one.nats, rel=1e-6)  # fp32 batch means, summed in float64
    direct = F.cross_entropy(emb[torch.stack([torch.from_numpy(src.sample(i)[:-1]) for i in range(13)])].flatten(0, 1),
                             torch.stack([torch.from_numpy(src.sample(i)[1:]) for i in range(13)]).flatten())
    assert eval_result(total, eval_set).loss == pytest.approx(float(direct), rel=1e-6)


def test_evaluate_subset_matches_direct_computation(tmp_path: Path) -> None:
    from gf_train.config.model import ModelConfig
    from gf_train.data import read_manifest
    from gf_train.data.compat import ensure_torchvision
    from gf_train.data.tokenize import tokenize_corpus
    from gf_train.model import build_model

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"{math.__doc__} {i} {F.__doc__}"}) + "\n" for i in range(40)))
    data = tmp_path / "data"
    tokenize_corpus([str(docs)], data, "rwkv_world", 16, val_docs=20, progress=False, log=lambda s: 0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=32, head_size=16, ctx_len=16, wkv_backend="torch",
                                    attn_backend="sdpa")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ensure_torchvision()
    from streaming import LocalDataset

    ds = LocalDataset(local=str(data / "val"))
    n = len(ds)
    assert n > 20
    r = evaluate(model, data, "val", batch_size=3, max_tokens=16 * 10, seed=5)
    chosen = choose_samples(n, 16, 16 * 10, seed=5)
    assert chosen.seed == 5 and r.set == chosen.describe() and r.samples == 10 and r.tokens == 160
    rows = torch.stack([torch.as_tensor(ds[int(i)]["tokens"].astype("int64")) for i in chosen.ids])
    with torch.no_grad():
        nll = float(F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten()))
    split = read_manifest(data)["splits"]["val"]
    assert r.loss == pytest.approx(nll, rel=1e-5)
    assert r.bits_per_byte == pytest.approx(nll / math.log(2) * split["tokens"] / split["utf8_bytes"], rel=1e-5)
    whole = evaluate(model, data, "val", batch_size=4)
    assert whole.samples == n and whole.set.startswith("the whole val split") and whole.loss != r.loss
