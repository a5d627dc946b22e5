"""The paper-run recipes: each name matches its config, its parameter count matches recipes/README.md's table
(and spec 7.4), and the table's tokens / batch / steps / lr columns match the config.

Owner: the Slurm launch (recipes/). Loading and validating every top-level recipe is tests/config's job; this
file adds what a name and a table promise. Parameter counts are checked twice: against this file's own
closed-form arithmetic (itself pinned to the spec 7.4 numbers) and against `gf_train.model.flops.param_count`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from _spec_params import SPEC_7_4, spec_count

from gf_train.config import derive, load

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (REPO / "recipes").glob("*.yaml") if p.stem != "debug_cpu")
NAME = re.compile(r"(?P<arch>goldfinch|finch|llama)_L(?P<L>\d+)D(?P<D>\d+)_ctx(?P<T>\d+)_(?P<data>[a-z0-9]+)"
                  r"_(?P<ngpu>\d+)x(?P<gpu>[a-z0-9]+)")
# spec 8.2: (L, C, T) -> (lr, lr_final, global batch, steps)
PAPER = {(6, 768, 512): (6e-4, 2e-4, 64, 45_723), (12, 768, 1024): (6e-4, 2e-4, 64, 22_862),
         (24, 2048, 2048): (3e-4, 1e-4, 128, 5_716), (24, 2048, 4096): (3e-4, 1e-4, 128, 2_858)}


def arithmetic_params(arch: str, L: int, C: int, V: int = 65536) -> int:
    """Closed forms per block at width C (head size 64, rho 3, r 16; LoRA ranks 32 mix / 64 decay, GOLD's
    max(C/16, 64)); independent of the model code."""
    F = int(3.5 * C / 32) * 32
    cmix = 2 * C * F + C * C + 2 * C  # W_k, W_v, W_r + two mu
    total = 2 * V * C + 4 * C + 4 * C * L  # emb, head, ln0, ln_out, ln1+ln2 per block
    if arch == "llama":
        return total + L * (4 * C * C + 3 * C * (int(8 * C / 3 / 32) * 32))
    if arch == "finch":  # 5 matrices; 6 mu, 5x32 mix LoRA in+out, decay + 64 LoRA, faaaa, GroupNorm
        return total + L * (5 * C * C + 458 * C + cmix)
    g, R, c = L * 2 // 3, max(C // 16, 64), C // 16
    c2 = 4 * C * C + 586 * C  # no gate; 2 rank-64 LoRAs (decay, v2)
    gold = 2 * C * C + (5 + 192 + 4 * R + 8) * C  # W_q, W_o; mu, LoRAs, 4 norms
    return total + L * cmix + g * c2 + (L - g) * gold + C * c + (C + c) * C  # + W_a, W_b (TokenCat)


def _table() -> dict[str, list[str]]:
    rows = {}
    for line in (REPO / "recipes" / "README.md").read_text().splitlines():
        m = re.match(r"\| `([\w]+)` \|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def _num(text: str) -> int:
    return int(text.split()[0].replace(",", ""))


def test_own_arithmetic_reproduces_spec_7_4() -> None:
    plain = [(kw, n) for kw, n in SPEC_7_4 if set(kw) == {"arch", "n_layer", "n_embd"} and kw["arch"] != "finch_c2"]
    assert len(plain) == 6  # GoldFinch, Finch, Llama at L24 D2048 and L12 D768: the closed forms' cases
    for kw, n in plain:
        assert arithmetic_params(str(kw["arch"]), int(kw["n_layer"]), int(kw["n_embd"])) == n, kw


def test_every_paper_run_has_a_recipe_for_each_architecture() -> None:
    have = {(m["arch"], int(m["L"]), int(m["D"]), int(m["T"])) for p in RECIPES if (m := NAME.fullmatch(p.stem))}
    want = {(a, L, C, T) for a in ("goldfinch", "finch", "llama") for (L, C, T) in PAPER}
    assert want <= have, sorted(want - have)


def test_table_lists_exactly_the_recipes() -> None:
    assert set(_table()) == {p.stem for p in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_name_matches_config(recipe: Path) -> None:
    m = NAME.fullmatch(recipe.stem)
    assert m, f"{recipe.name}: name must be <arch>_L<n>D<n>_ctx<n>_<data>_<N>x<gpu>.yaml"
    cfg = load([recipe])
    assert cfg.run_name == recipe.stem
    assert (cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd, cfg.model.ctx_len) == (
        m["arch"], int(m["L"]), int(m["D"]), int(m["T"]))
    assert all(m["data"] in s.path for s in [*cfg.data.train, *cfg.data.val]), "data paths name the data set"
    assert cfg.dist.global_batch % int(m["ngpu"]) == 0, "the named GPU count must divide the global batch"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_params_match_table_and_spec(recipe: Path) -> None:
    cfg = load([recipe])
    n = arithmetic_params(cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd)
    spec = spec_count(cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd)  # spec 7.4 (tests/_spec_params.py)
    assert spec is None or n == spec
    cell = _table()[recipe.stem][0]  # "1,445,257,216 (1.45B)"
    assert _num(cell) == n
    short = re.search(r"\(([\d.]+)([MB])\)", cell)
    assert short and math.isclose(float(short[1]) * (1e9 if short[2] == "B" else 1e6), n, rel_tol=0.005)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_model_param_count_agrees(recipe: Path) -> None:
    if not (REPO / "gf_train" / "model" / "flops.py").exists():
        pytest.skip("gf_train/model/flops.py not there yet")
    from gf_train.model import flops

    cfg = load([recipe])
    assert flops.param_count(cfg.model) == arithmetic_params(cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_paper_settings_and_table_columns(recipe: Path) -> None:
    cfg = load([recipe])
    lr, lr_final, gb, steps = PAPER[(cfg.model.n_layer, cfg.model.n_embd, cfg.model.ctx_len)]
    o, s, d, mdl = cfg.optim, cfg.schedule, cfg.dist, cfg.model
    assert (o.lr, o.lr_final, o.betas, o.eps, o.weight_decay, o.grad_clip) == (lr, lr_final, [0.9, 0.99], 1e-8,
                                                                                0.001, 1.0)
    assert (s.warmup_steps, s.decay, s.max_tokens, s.max_steps) == (10, "cosine_half", 1_498_226_207, None)
    assert (d.global_batch, d.zero_stage, d.precision, d.seed) == (gb, 2, "bf16", 1337)
    assert (mdl.head_size, mdl.vocab_size, mdl.grad_cp) == (64, 65536, True)
    if mdl.arch == "goldfinch":
        assert (mdl.gold_inv_ratio, mdl.kv_compression, mdl.rope) == (3, 16, False)
    der = derive(cfg, 1)
    assert der.max_steps == steps
    _, tokens, batch, tsteps, lrs, micro = _table()[recipe.stem]
    assert _num(tokens) == s.max_tokens and _num(tsteps) == steps and int(micro) == d.micro_batch
    assert batch == f"{gb} x {mdl.ctx_len} = {der.tokens_per_step:,}"
    a, b = (float(x) for x in lrs.split("->"))
    assert (a, b) == (lr, lr_final)
