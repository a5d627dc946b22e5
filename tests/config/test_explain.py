"""The config explains itself: every field has a doc, `explain` shows them with values, and settings that
silently do nothing are named (`ineffective_settings`), once, before the trainer does any work."""

from __future__ import annotations

import dataclasses

import pytest

from gf_train.config import RunConfig, explain, field_docs, ineffective_settings, load, warn_ineffective_settings
from gf_train.config.data import StreamConfig
from gf_train.config.explain import sections


def test_every_field_of_every_section_has_a_one_line_doc() -> None:
    found = sections(RunConfig)
    assert StreamConfig in found and len(found) >= 9  # RunConfig, its 8 sections, the list item StreamConfig
    missing = [f"{cls.__name__}.{f.name}" for cls in found for f in dataclasses.fields(cls)
               if not field_docs(cls).get(f.name)]
    assert not missing, f"document these fields (a string literal right under the field): {missing}"


def test_field_docs_reads_the_string_under_each_field() -> None:
    @dataclasses.dataclass
    class Example:
        a: int = 1
        """The first
        field."""
        b: int = 2  # a comment is not a doc
        c: str = "x"
        """Third."""

    assert field_docs(Example) == {"a": "The first field.", "c": "Third."}


def test_explain_lists_every_leaf_with_its_resolved_value_and_doc() -> None:
    cfg = load([], ["schedule.max_steps=50", "model.n_layer=7", "data.train=[{path: /d/train}]"])
    text = explain(cfg)
    lines = {ln.split(":", 1)[0]: ln for ln in text.splitlines() if ": " in ln and "#" in ln}
    assert "7" in lines["model.n_layer"] and "# Number of blocks L." in lines["model.n_layer"]
    assert "/d/train" in lines["data.train[0].path"] and "# MDS split folder: local" in lines["data.train[0].path"]
    assert "50" in lines["schedule.max_steps"]
    assert "settings that have no effect: none" in text


@pytest.mark.parametrize(("overrides", "expect"), [
    (["schedule.warmup_steps=50"], "schedule.warmup_steps=50 >= the run's 50 steps"),
    (["checkpoint.every_steps=80"], "checkpoint.every_steps=80 is past the end (50 steps): only the final"),
    (["checkpoint.every_steps=80", "checkpoint.save_final=false"], "no checkpoint is written"),
    (["eval.every_steps=60", "data.val=[{path: /v}]"], "eval.every_steps=60 is past the end"),
    (["eval.every_steps=10"], "data.val is empty"),
    (["log.every_steps=51"], "log.every_steps=51 is past the end"),
    (["schedule.decay=constant", "optim.lr_final=1e-5"], "optim.lr_final=1e-05 has no effect"),
    (["log.wandb_project=mine"], "log.wandb_project have no effect with log.wandb=disabled"),
    (["data.shuffle=false", "data.shuffle_seed=3"], "data.shuffle_seed have no effect"),
    (["model.arch=llama", "model.kv_compression=8"], "model.kv_compression only apply to arch=goldfinch"),
    (["model.gold_layers=2", "model.gold_inv_ratio=4"], "model.gold_inv_ratio has no effect"),
    (["model.rope_base=500000"], "model.rope_base have no effect: no layer uses RoPE"),
    (["model.arch=finch", "model.use_v2=false"], "model.use_v2 only apply to Finch-C2 layers"),
])
def test_each_ineffective_setting_is_named(overrides: list[str], expect: str) -> None:
    cfg = load([], ["schedule.max_steps=50", "schedule.warmup_steps=5", *overrides])
    notes = ineffective_settings(cfg)
    assert any(expect in n for n in notes), notes
    assert len(notes) == 1, notes  # exactly the one thing that is wrong, nothing else
    assert f"- {notes[0]}" in explain(cfg)


def test_effective_settings_do_not_warn() -> None:
    # The same knobs where they do act: no note.
    for overrides in (["schedule.warmup_steps=49"], ["checkpoint.every_steps=50"], ["log.every_steps=50"],
                      ["eval.every_steps=50", "data.val=[{path: /v}]"], ["model.rope=true", "model.rope_base=5e5"],
                      ["model.arch=llama", "model.rope_base=5e5"], ["model.arch=finch_c2", "model.use_v2=false"],
                      ["log.wandb=offline", "log.wandb_project=mine"], ["schedule.decay=linear", "optim.lr_final=0"]):
        assert ineffective_settings(load([], ["schedule.max_steps=50", *overrides])) == [], overrides
    # max_tokens is turned into steps: 8 sequences x 512 tokens per step -> 3 steps for 10,000 tokens
    cfg = load([], ["schedule.max_tokens=10000", "schedule.warmup_steps=3"])
    assert "the run's 3 steps" in ineffective_settings(cfg)[0]


def test_micro_batch_cap_needs_the_world_size() -> None:
    cfg = load([], ["schedule.max_steps=50", "dist.global_batch=8", "dist.micro_batch=8"])
    assert ineffective_settings(cfg, world_size=1) == []
    notes = ineffective_settings(cfg, world_size=4)
    assert notes == ["dist.micro_batch=8 is more than the 2 sequences each of the 4 ranks gets per step "
                     "(dist.global_batch=8): micro-batches of 2 are used"]


def test_warn_writes_each_note_once(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load([], ["schedule.max_steps=5", "schedule.warmup_steps=10", "log.every_steps=6"])
    got: list[str] = []
    notes = warn_ineffective_settings(cfg, 1, got.append)
    assert len(notes) == 2 and got == [f"gf-train: warning: {n}" for n in notes]
    warn_ineffective_settings(cfg, 1)
    err = capsys.readouterr().err
    assert err.count("gf-train: warning:") == 2 and "schedule.warmup_steps=10" in err
