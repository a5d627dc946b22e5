"""Load a RunConfig: YAML recipes merged in order (later wins), then dotted `key.sub=value` overrides.

Owner: `gf_train.config`. Uses omegaconf's structured mode so that unknown keys and wrong types are
caught against the dataclass schema; errors are re-raised as `ConfigError` naming the key and, for a
typo, the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from gf_train.config.schema import RunConfig


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema; the message names the key and the fix."""


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            full = f"{prefix}{f.name}"
            keys.append(full)
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                keys.extend(_valid_keys(value, full + "."))
    return keys


def _suggest(key: str) -> str:
    valid = _valid_keys(RunConfig())
    leaf_matches = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not leaf_matches:  # try the last component against leaves under the same parent
        parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
        siblings = [k for k in valid if k.startswith(parent)]
        leaf_matches = difflib.get_close_matches(key, siblings, n=1, cutoff=0.3)
    return f"; did you mean '{leaf_matches[0]}'?" if leaf_matches else ""


def _wrap(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    msg = str(err).splitlines()[0]
    if isinstance(err, ConfigKeyError) or "not in struct" in msg or "Key '" in msg and "not in" in msg:
        return ConfigError(f"{source}: unknown config key '{key}'{_suggest(key)}")
    if isinstance(err, ValidationError):
        return ConfigError(f"{source}: wrong type for '{key}': {msg}")
    return ConfigError(f"{source}: invalid value for '{key}': {msg}")


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=3` -> ("a.b", 3); values are parsed as YAML (ints, floats, bools, null, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    value = OmegaConf.create({"v": raw} if raw == "" else f"v: {raw}")["v"] if raw else ""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return key, value


def load(recipe_paths: list[str | Path] | tuple[str | Path, ...] = (), overrides: list[str] | tuple[str, ...] = ()
         ) -> RunConfig:
    """Merge recipes onto the schema defaults, apply overrides, validate and return a RunConfig."""
    base = OmegaConf.structured(RunConfig)
    for path in recipe_paths:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"recipe {str(p)!r} does not exist; see recipes/ for the available ones")
        try:
            layer = OmegaConf.load(p)
        except Exception as e:  # yaml syntax errors
            raise ConfigError(f"recipe {str(p)!r} is not valid YAML: {e}") from e
        try:
            base = OmegaConf.merge(base, layer)
        except OmegaConfBaseException as e:
            raise _wrap(e, f"recipe {p}") from e
    for item in overrides:
        key, value = parse_override(item)
        try:
            OmegaConf.update(base, key, value, merge=True, force_add=False)
        except OmegaConfBaseException as e:
            if not getattr(e, "full_key", None):
                e.full_key = key  # type: ignore[attr-defined]
            raise _wrap(e, f"override {item!r}") from e
    try:
        cfg = OmegaConf.to_object(base)
    except OmegaConfBaseException as e:
        raise _wrap(e, "config") from e
    except ValueError as e:  # raised by a section's __post_init__
        raise ConfigError(str(e)) from e
    assert isinstance(cfg, RunConfig)
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump(cfg: RunConfig) -> str:
    """The resolved config as YAML; `loads(dump(cfg)) == cfg`."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def loads(text: str) -> RunConfig:
    base = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(text))
    cfg = OmegaConf.to_object(base)
    assert isinstance(cfg, RunConfig)
    return cfg


def save(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(dump(cfg))


def config_hash(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:16]
