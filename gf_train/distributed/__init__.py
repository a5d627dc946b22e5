"""Distributed runtime: job layout (`DistInfo`) and DeepSpeed (the only `import deepspeed` in gf_train).

`info` is torch-free and the only reader and writer of the rank environment; `engine` imports deepspeed
lazily inside its functions.
"""

from gf_train.distributed.info import (
    DistInfo,
    dist_info_from_env,
    ensure_dist_env,
    free_port,
    read_dist_info,
    write_dist_env,
)

__all__ = ["DistInfo", "dist_info_from_env", "ensure_dist_env", "free_port", "read_dist_info", "write_dist_env"]
