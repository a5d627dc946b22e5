"""The config explains itself: each schema field's one-line doc, and `explain(cfg)` for `config show --explain`.

Owner: `gf_train.config`. A field's doc is the string literal right under it in its dataclass (the
attribute-docstring convention torchtitan's JobConfig uses), read here from the source with `ast`, so
the doc sits next to the field and there is nothing to keep in sync:

    lr: float = 6e-4
    \"\"\"Peak learning rate ...\"\"\"

tests/config checks that every field of every section has one.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import typing
from typing import Any

from gf_train.config.checks import ineffective_settings
from gf_train.config.schema import RunConfig


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: its doc} of a config dataclass; a field without a doc is absent."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def sections(cls: type = RunConfig) -> list[type]:
    """`cls` and every config dataclass below it (section fields and list items like StreamConfig), each once."""
    found: list[type] = []

    def visit(c: type) -> None:
        if c in found:
            return
        found.append(c)
        for hint in typing.get_type_hints(c).values():
            for t in (hint, *typing.get_args(hint)):
                if isinstance(t, type) and dataclasses.is_dataclass(t):
                    visit(t)

    visit(cls)
    return found


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _rows(node: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, value, doc) of every leaf field; lists of dataclasses as key[i].field."""
    rows: list[tuple[str, str, str]] = []
    docs = field_docs(type(node))
    for f in dataclasses.fields(node):
        key, value = prefix + f.name, getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            rows += _rows(value, key + ".")
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            rows.append((key, f"{len(value)} item(s)", docs.get(f.name, "")))
            for i, item in enumerate(value):
                rows += _rows(item, f"{key}[{i}].")
        else:
            rows.append((key, _render(value), docs.get(f.name, "")))
    return rows


def explain(cfg: RunConfig) -> str:
    """Every field as `key: value  # doc`, then the settings that would have no effect (world size 1)."""
    rows = _rows(cfg)
    width = min(max(len(f"{k}: {v}") for k, v, _ in rows), 60)
    lines = [f"{f'{k}: {v}':<{width}}  # {doc}" for k, v, doc in rows]
    notes = ineffective_settings(cfg)
    lines.append("")
    if notes:
        lines.append("settings that have no effect:")
        lines += [f"  - {n}" for n in notes]
    else:
        lines.append("settings that have no effect: none")
    return "\n".join(lines) + "\n"
