"""Distributed runtime: job layout (`DistInfo`) and DeepSpeed (the only `import deepspeed` in gf_train).

`info` is torch-free; `engine` imports deepspeed lazily inside its functions.
"""

from gf_train.distributed.info import DistInfo, free_port, read_dist_info

__all__ = ["DistInfo", "free_port", "read_dist_info"]
