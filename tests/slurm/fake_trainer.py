"""A stand-in for `gf-train train` that honours the same launch contract, for the Slurm mechanics tests.

Owner: the Slurm launch tests. Run by slurm/pretrain.sh through `GF_TRAIN_CMD="python .../fake_trainer.py"`,
so it receives `--config RECIPE --run-dir DIR [key=value ...]` and Slurm's step variables. The contract it
shares with the real trainer:

- maps Slurm's variables with `gf_train.distributed.info.read_dist_info` (as the trainer does) and joins a
  gloo process group from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (the rendezvous);
- resumes from the newest complete checkpoint (`step_XXXXXXXX/COMPLETE`) in the run dir;
- on SIGUSR1/SIGTERM sets a flag; at the next step boundary the ranks agree (all-reduce MAX), write a
  checkpoint and exit 75 ("requeue me");
- rank 0 appends `{"step", "loss"}` lines to RUN_DIR/metrics.jsonl.

The "loss" is a deterministic function of checkpointed state, so a resumed run reproduces an
uninterrupted one exactly only when resume is right. Knobs: `schedule.max_steps=N`,
`checkpoint.every_steps=N` overrides; env FAKE_STEP_SECONDS (0.25).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from gf_train.distributed.info import read_dist_info
from gf_train.train.signals import EXIT_REQUEUE

_stop = {"sig": 0}


def _on_signal(signum: int, _frame: object) -> None:
    _stop["sig"] = signum


def _latest(run_dir: Path) -> Path | None:
    done = sorted(p.parent for p in run_dir.glob("step_*/COMPLETE"))
    return done[-1] if done else None


def _save(run_dir: Path, step: int, w: float) -> None:
    if dist.get_rank() == 0:
        d = run_dir / f"step_{step:08d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "state.json").write_text(json.dumps({"step": step, "w": w}))
    dist.barrier()
    if dist.get_rank() == 0:
        (run_dir / f"step_{step:08d}" / "COMPLETE").write_text("ok\n")
    dist.barrier()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", action="append", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--stop-at-step", type=int)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    ov = dict(o.split("=", 1) for o in args.overrides)
    max_steps = int(ov.get("schedule.max_steps", 20))
    every = int(ov.get("checkpoint.every_steps", 5))
    step_s = float(os.environ.get("FAKE_STEP_SECONDS", "0.25"))

    signal.signal(signal.SIGUSR1, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    read_dist_info()  # Slurm step variables -> RANK, WORLD_SIZE, ... (the trainer's one writer)
    dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    step, w = 0, 1.0
    ck = _latest(run_dir)
    if ck is not None:
        state = json.loads((ck / "state.json").read_text())
        step, w = state["step"], state["w"]
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    print(f"fake-trainer rank {rank}/{world} on {os.environ.get('SLURMD_NODENAME')} "
          f"start step {step} restart {restart} resumed={ck is not None}", flush=True)
    metrics = (run_dir / "metrics.jsonl").open("a") if rank == 0 else None
    while step < max_steps:
        flag = torch.tensor([float(_stop["sig"] != 0)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            _save(run_dir, step, w)
            print(f"fake-trainer rank {rank}: stop requested, checkpoint at step {step}, exit 75", flush=True)
            return EXIT_REQUEUE
        time.sleep(step_s)
        noise = random.Random(1337 + step).uniform(-0.1, 0.1)
        w = 0.9 * w + noise
        loss = torch.tensor([w * w + rank])
        dist.all_reduce(loss)
        step += 1
        if metrics is not None:
            metrics.write(json.dumps({"step": step, "loss": loss.item() / world}) + "\n")
            metrics.flush()
        if step % every == 0 or step == max_steps:
            _save(run_dir, step, w)
        if args.stop_at_step and step >= args.stop_at_step:
            break
    dist.destroy_process_group()
    print(f"fake-trainer rank {rank}: done at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
