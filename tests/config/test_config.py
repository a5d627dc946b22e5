"""Config schema, recipe merging, overrides, errors, derived numbers and the dump/reload round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from gf_train.config import ConfigError, RunConfig, derive, dump, load, loads, parse_override

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_merge_order_later_recipe_wins(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.yaml", "model:\n  n_layer: 4\n  n_embd: 128\nschedule:\n  max_steps: 7\n")
    b = _write(tmp_path, "b.yaml", "model:\n  n_layer: 8\n")
    cfg = load([a, b])
    assert cfg.model.n_layer == 8 and cfg.model.n_embd == 128 and cfg.schedule.max_steps == 7
    cfg = load([b, a])
    assert cfg.model.n_layer == 4
    # overrides come after every recipe
    assert load([a, b], ["model.n_layer=2"]).model.n_layer == 2


@pytest.mark.parametrize(
    "item,key,value",
    [
        ("model.n_layer=12", "model.n_layer", 12),
        ("optim.lr=3e-4", "optim.lr", 3e-4),
        ("optim.lr=0.5", "optim.lr", 0.5),
        ("model.rope=true", "model.rope", True),
        ("model.rope=False", "model.rope", False),
        ("optim.betas=[0.9,0.95]", "optim.betas", [0.9, 0.95]),
        ("log.wandb_run_name=null", "log.wandb_run_name", None),
        ("run_name=my-run", "run_name", "my-run"),
    ],
)
def test_override_parsing(item: str, key: str, value: object) -> None:
    assert parse_override(item) == (key, value)
    cfg = load([], [item])
    node: object = cfg
    for part in key.split("."):
        node = getattr(node, part)
    assert node == value and type(node) is type(value)


def test_override_needs_equals() -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        load([], ["model.n_layer"])


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'model.n_layr'.*did you mean 'model.n_layer'"):
        load([], ["model.n_layr=3"])


def test_unknown_key_in_recipe_suggests(tmp_path: Path) -> None:
    p = _write(tmp_path, "r.yaml", "optim:\n  weight_decy: 0.1\n")
    with pytest.raises(ConfigError, match=r"weight_decy.*did you mean 'optim.weight_decay'"):
        load([p])


def test_wrong_type_names_key() -> None:
    with pytest.raises(ConfigError, match=r"wrong type for 'model.n_layer'"):
        load([], ["model.n_layer=abc"])


def test_missing_required_field(tmp_path: Path) -> None:
    p = _write(tmp_path, "r.yaml", "data:\n  train:\n    - proportion: 0.5\n")
    with pytest.raises(ConfigError, match="path"):
        load([p])


def test_validation_in_post_init() -> None:
    with pytest.raises(ConfigError, match="model.arch"):
        load([], ["model.arch=mamba"])
    with pytest.raises(ConfigError, match="only one of schedule.max_steps"):
        load([], ["schedule.max_tokens=1000", "schedule.max_steps=5"])
    with pytest.raises(ValueError, match="no length"):
        derive(load([], []), 1)
    with pytest.raises(ConfigError, match="keep_last"):
        load([], ["checkpoint.keep_last=1"])


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load([tmp_path / "nope.yaml"])


def test_dump_reload_round_trip() -> None:
    cfg = load([REPO / "recipes" / "debug_cpu.yaml"], ["optim.betas=[0.8,0.9]", "log.wandb_tags=[a,b]"])
    text = dump(cfg)
    again = loads(text)
    assert again == cfg and isinstance(again, RunConfig)


def test_derived_batch_numbers() -> None:
    cfg = load([], ["dist.global_batch=32", "dist.micro_batch=4", "model.ctx_len=128", "schedule.max_steps=3"])
    d1, d2, d8 = derive(cfg, 1), derive(cfg, 2), derive(cfg, 8)
    assert (d1.micro_batch, d1.grad_accum) == (4, 8)
    assert (d2.micro_batch, d2.grad_accum) == (4, 4)
    assert (d8.micro_batch, d8.grad_accum) == (4, 1)
    assert d1.tokens_per_step == 32 * 128
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        derive(cfg, 3)
    cfg = load([], ["dist.global_batch=12", "dist.micro_batch=8", "schedule.max_tokens=10000",
                    "model.ctx_len=100"])
    with pytest.raises(ValueError, match="micro_batch"):
        derive(cfg, 1)
    assert derive(cfg, 2).max_steps == 9  # ceil(10000 / (12*100))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads_and_validates(recipe: Path) -> None:
    cfg = load([recipe])
    assert loads(dump(cfg)) == cfg
    derive(cfg, 1)
