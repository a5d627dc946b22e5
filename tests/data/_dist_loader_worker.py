"""Worker for the 2-rank loader tests (run under torch.distributed.run, gloo). Prints one RESULT line on rank 0.

argv: data_root micro_batch global_batch steps save_step
For num_workers 0 and 2: the uninterrupted run's micro-batches; a fresh loader resumed from the state
saved after `save_step` optimizer steps must yield exactly the rest. Global batches (concatenation of
all ranks' micro-batches of a step, rank-major) and the saved state are reported.
"""

import json
import os
import sys

import torch
import torch.distributed as dist

from gf_train.config.data import DataConfig, StreamConfig
from gf_train.data import build_loader


def main() -> None:
    root, m, g, steps, save_step = sys.argv[1], *map(int, sys.argv[2:6])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    accum = g // (m * world)
    out = {}
    for nw in (0, 2):
        cfg = DataConfig(train=[StreamConfig(path=f"{root}/train")], val=[StreamConfig(path=f"{root}/val")],
                         num_workers=nw)
        kw = dict(seq_len=16, micro_batch=m, global_batch=g, world_size=world, rank=rank)
        loader = build_loader(cfg, "train", **kw)
        it = iter(loader)
        mine, state = [], None
        for i in range(steps * accum):
            if i == save_step * accum:
                state = json.loads(json.dumps(loader.state_dict()))
            x, y = next(it)
            assert torch.equal(x[:, 1:], y[:, :-1])
            mine.append(torch.cat([x, y[:, -1:]], 1).tolist())
        resumed = build_loader(cfg, "train", **kw)
        resumed.load_state_dict(state)
        it2 = iter(resumed)
        todo = (steps - save_step) * accum
        again = [torch.cat([x, y[:, -1:]], 1).tolist() for x, y in (next(it2) for _ in range(todo))]
        exact = again == mine[save_step * accum:]
        allr = [None] * world
        dist.all_gather_object(allr, (mine, exact))
        gb = [sum((allr[r][0][s * accum + k] for r in range(world) for k in range(accum)), []) for s in range(steps)]
        out[nw] = {"global_batches": gb, "state": state, "exact": all(e for _, e in allr)}
        val = build_loader(cfg, "val", **kw)
        out[nw]["val_batches"] = len(val)
        out[nw]["val_rank_first"] = [v[0].tolist() for v in val.iter(2)]
    dist.barrier()
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
