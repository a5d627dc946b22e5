"""Typed run configuration: schema (dataclasses), YAML recipes + dotted overrides, derived numbers,
each field's one-line doc (`explain`) and the settings that would have no effect (`ineffective_settings`).

Imports no torch, so recipes can be validated anywhere.
"""

from gf_train.config.checks import ineffective_settings, warn_ineffective_settings
from gf_train.config.data import DataConfig, StreamConfig
from gf_train.config.explain import explain, field_docs
from gf_train.config.loader import ConfigError, config_hash, dump, load, loads, parse_override, save, to_dict
from gf_train.config.model import ModelConfig
from gf_train.config.schema import Derived, RunConfig, derive
from gf_train.config.train import (
    CheckpointConfig,
    DistConfig,
    EvalConfig,
    LogConfig,
    OptimConfig,
    ScheduleConfig,
)

__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "Derived", "DistConfig", "EvalConfig", "LogConfig",
    "ModelConfig", "OptimConfig", "RunConfig", "ScheduleConfig", "StreamConfig", "config_hash", "derive",
    "dump", "explain", "field_docs", "ineffective_settings", "load", "loads", "parse_override", "save", "to_dict",
    "warn_ineffective_settings",
]
