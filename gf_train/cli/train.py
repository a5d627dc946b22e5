"""`gf-train train`: flags and the entry point; the work is `gf_train.train.loop.train`.

Owner: `gf_train.cli`. Usage:

    gf-train train --config recipes/R.yaml [--config more.yaml] [--run-dir DIR] [--stop-at-step N]
                   [--resume-from STEP_DIR|RUN_DIR] [--init-from WEIGHTS|STEP_DIR] [key=value ...]

Run the same command under torchrun, srun (one task per device), the deepspeed launcher, or as a single
process. Under the deepspeed launcher (`deepspeed --num_gpus N .venv/bin/gf-train train ...`) the
`--local_rank=N` it adds is dropped: LOCAL_RANK in the environment says the same (scripts that use
`add_arguments` directly accept and ignore it).
Rerunning it resumes from the newest complete checkpoint in the run dir. Exit codes: 0 done, 1 user error,
3 too many non-finite steps, 75 preempted (checkpoint written; requeue). See `signals`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gf_train.cli.overrides import add_overrides_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True, help="recipe YAML (repeatable, later wins)")
    parser.add_argument("--run-dir", default=None,
                        help="run directory (metrics.jsonl, checkpoints/); default runs/<run_name>")
    parser.add_argument("--stop-at-step", type=int, default=None,
                        help="checkpoint and exit 0 after this many optimizer steps (the schedule is unchanged)")
    parser.add_argument("--resume-from", default=None,
                        help="resume from this checkpoint step dir (or the newest complete one of a run dir) "
                             "instead of the run dir's newest")
    parser.add_argument("--init-from", default=None,
                        help="model-only warm start: exported weights dir / .safetensors, or a checkpoint step dir "
                             "(ignored when the run dir already has a checkpoint)")
    # The deepspeed launcher passes --local_rank=N to the script (unless --no_local_rank); LOCAL_RANK in the
    # environment carries the same value, so the flag is accepted and ignored.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    add_overrides_argument(parser)


def main(args: argparse.Namespace) -> int:
    from gf_train.config import load
    from gf_train.train.loop import train

    cfg = load(args.config, args.overrides)
    if args.stop_at_step is not None and args.stop_at_step < 1:
        raise ValueError(f"--stop-at-step must be >= 1, got {args.stop_at_step}")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / cfg.run_name
    return train(cfg, run_dir, stop_at_step=args.stop_at_step,
                 resume_from=Path(args.resume_from) if args.resume_from else None,
                 init_from=Path(args.init_from) if args.init_from else None)
