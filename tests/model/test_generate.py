"""generate(): greedy == arg-max of the full forward, sampling controls, seeds, stop tokens."""

from __future__ import annotations

import torch
from _model_testing import random_model, tiny_cfg

from gf_train.model.generate import sample_next


def test_greedy_matches_forward_argmax() -> None:
    for arch in ("goldfinch", "llama"):
        model = random_model(tiny_cfg(arch, n_layer=4))
        prompt = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(3))
        out = model.generate(prompt, 8, temperature=0)
        assert out.shape == (2, 14) and torch.equal(out[:, :6], prompt)
        seq = prompt
        with torch.no_grad():
            for _ in range(8):
                seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
        assert torch.equal(out, seq)


def test_seed_top_k_top_p() -> None:
    model = random_model(tiny_cfg("goldfinch", n_layer=3))
    prompt = torch.randint(0, 97, (3, 5))
    a = model.generate(prompt, 10, temperature=1.0, seed=7)
    b = model.generate(prompt, 10, temperature=1.0, seed=7)
    c = model.generate(prompt, 10, temperature=1.0, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = model.generate(prompt, 10, temperature=0)
    assert torch.equal(model.generate(prompt, 10, top_k=1, seed=1), greedy)
    assert torch.equal(model.generate(prompt, 10, top_p=1e-6, seed=1), greedy)


def test_sample_next_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, 2, None, gen) for _ in range(400)])
    assert set(draws.unique().tolist()) == {0, 1}
    draws = torch.stack([sample_next(logits, 1.0, None, 0.7, gen) for _ in range(400)])
    assert set(draws.unique().tolist()) == {0, 1}  # 0.5 < 0.7 needs the second token, not the third
    draws = torch.stack([sample_next(logits, 1.0, None, None, gen) for _ in range(2000)]).view(-1)
    freq = torch.bincount(draws, minlength=4).float() / 2000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.05)


def test_stop_tokens() -> None:
    model = random_model(tiny_cfg("finch", n_layer=2))
    prompt = torch.randint(0, 97, (2, 4))
    free = model.generate(prompt, 12, temperature=0)
    stop = int(free[0, 6])  # the third generated token of row 0
    out = model.generate(prompt, 12, temperature=0, stop_tokens=[stop])
    row0 = out[0, 4:].tolist()
    first = row0.index(stop)
    assert all(t == stop for t in row0[first:])  # padded with the stop token after it
    assert torch.equal(out[:, : 4 + first + 1], free[:, : 4 + first + 1])
    hit_all = model.generate(prompt, 12, temperature=0, stop_tokens=free[:, 4].tolist())
    assert hit_all.shape == (2, 5)  # everyone stopped on the first new token
