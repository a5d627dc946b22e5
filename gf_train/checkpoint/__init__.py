"""Checkpoints: layout, manifests and verification, the one resolver, weights, retention, client state.

Owner: `gf_train.checkpoint`, below `gf_train.train` and `gf_train.export` (which keep no checkpoint logic
of their own). Collective orchestration (which rank writes or verifies what) is `gf_train.train.resume`.
"""

from gf_train.checkpoint.layout import (
    ABANDONED_DIR,
    CLIENT_STATE,
    COMPLETE,
    CONFIG,
    CORRUPT_DIR,
    DS_TAG,
    LATEST,
    UNIVERSAL_TAG,
    checkpoints_dir,
    is_complete,
    list_checkpoints,
    step_name,
)
from gf_train.checkpoint.manifest import verify
from gf_train.checkpoint.resolve import locate, resolve
from gf_train.checkpoint.retention import abandon_newer, prune
from gf_train.checkpoint.weights import load_weights, strip_wrappers

__all__ = ["ABANDONED_DIR", "CLIENT_STATE", "COMPLETE", "CONFIG", "CORRUPT_DIR", "DS_TAG", "LATEST", "UNIVERSAL_TAG",
           "abandon_newer", "checkpoints_dir", "is_complete", "list_checkpoints", "load_weights", "locate", "prune",
           "resolve", "step_name", "strip_wrappers", "verify"]
