"""Settings that silently do nothing: `ineffective_settings(cfg)` names each, with why and what to change.

Owner: `gf_train.config`. The trainer calls `warn_ineffective_settings` once, on rank 0, before any
work (a run whose warm-up never ends or whose checkpoint interval is past the end still runs, but the
user should know); `gf-train config show --explain` lists the same notes. Knobs of a feature that is off
(wandb names, RoPE bases, shuffle seeds, ...) and the log interval warn only when they differ from the
schema default (the user set them); the warm-up, eval and checkpoint intervals warn whenever they reach
past the end of the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from gf_train.config.data import DataConfig
from gf_train.config.model import ModelConfig
from gf_train.config.schema import RunConfig, derive
from gf_train.config.train import LogConfig, OptimConfig


def _run_steps(cfg: RunConfig) -> int | None:
    """Optimizer steps of the run (independent of the world size); None when the run has no length yet."""
    try:
        return derive(cfg, 1).max_steps
    except ValueError:
        return None


def _step_notes(cfg: RunConfig, steps: int) -> list[str]:
    notes: list[str] = []
    s, ev, ck, lg = cfg.schedule, cfg.eval, cfg.checkpoint, cfg.log
    if s.warmup_steps >= steps:
        notes.append(f"schedule.warmup_steps={s.warmup_steps} >= the run's {steps} steps: the learning rate never "
                     f"leaves warm-up, so optim.lr is never reached and schedule.decay has no effect; lower "
                     f"schedule.warmup_steps")
    if ev.every_steps is not None and cfg.data.val and ev.every_steps > steps:
        notes.append(f"eval.every_steps={ev.every_steps} is past the end ({steps} steps): validation runs only "
                     f"after the last step")
    if ck.every_steps is not None and ck.every_steps > steps:
        after = "only the final checkpoint is written" if ck.save_final else \
            "no checkpoint is written (checkpoint.save_final=false)"
        notes.append(f"checkpoint.every_steps={ck.every_steps} is past the end ({steps} steps): {after}")
    if lg.every_steps > steps and lg.every_steps != LogConfig().every_steps:  # the default is harmless here
        notes.append(f"log.every_steps={lg.every_steps} is past the end ({steps} steps): metrics are written at "
                     f"step 1 and the last step only")
    return notes


def _model_notes(m: ModelConfig) -> list[str]:
    default = ModelConfig()
    changed = {k for k in vars(m) if getattr(m, k) != getattr(default, k)}
    notes: list[str] = []
    if m.arch != "goldfinch":
        gold = sorted(changed & {"gold_inv_ratio", "gold_layers", "kv_compression", "rope"})
        if gold:
            notes.append(f"model.{', model.'.join(gold)} only apply to arch=goldfinch (this is {m.arch})")
    elif m.gold_layers is not None and "gold_inv_ratio" in changed:
        notes.append("model.gold_inv_ratio has no effect: model.gold_layers is set and wins")
    rope_used = m.arch == "llama" or (m.arch == "goldfinch" and m.rope and m.n_gold > 0)
    rope_knobs = sorted(changed & {"rope_base", "rope_rescale"})
    if rope_knobs and not rope_used:
        notes.append(f"model.{', model.'.join(rope_knobs)} have no effect: no layer uses RoPE (arch={m.arch}, "
                     f"rope={str(m.rope).lower()})")
    c2 = sorted(changed & {"use_one_minus_w", "use_v2"})
    if c2 and m.arch in ("finch", "llama"):
        notes.append(f"model.{', model.'.join(c2)} only apply to Finch-C2 layers (arch finch_c2 or goldfinch)")
    return notes


def ineffective_settings(cfg: RunConfig, world_size: int | None = None) -> list[str]:
    """One line per setting that has no effect in this run (with `world_size`: also the batch geometry)."""
    notes: list[str] = []
    steps = _run_steps(cfg)
    if steps is not None:
        notes += _step_notes(cfg, steps)
    if cfg.eval.every_steps is not None and not cfg.data.val:
        notes.append(f"eval.every_steps={cfg.eval.every_steps} has no effect: data.val is empty (no validation)")
    if cfg.schedule.decay == "constant" and cfg.optim.lr_final != OptimConfig().lr_final:
        notes.append(f"optim.lr_final={cfg.optim.lr_final} has no effect with schedule.decay=constant")
    log_default = LogConfig()
    wandb_set = [k for k in ("wandb_project", "wandb_run_name", "wandb_tags")
                 if getattr(cfg.log, k) != getattr(log_default, k)]
    if wandb_set and cfg.log.wandb == "disabled":
        notes.append(f"log.{', log.'.join(wandb_set)} have no effect with log.wandb=disabled")
    data_default = DataConfig()
    shuffle_set = [k for k in ("shuffle_seed", "shuffle_algo", "shuffle_block_size")
                   if getattr(cfg.data, k) != getattr(data_default, k)]
    if shuffle_set and not cfg.data.shuffle:
        notes.append(f"data.{', data.'.join(shuffle_set)} have no effect with data.shuffle=false")
    notes += _model_notes(cfg.model)
    if world_size is not None and world_size >= 1 and cfg.dist.global_batch % world_size == 0:
        per_rank = cfg.dist.global_batch // world_size
        if cfg.dist.micro_batch > per_rank:
            notes.append(f"dist.micro_batch={cfg.dist.micro_batch} is more than the {per_rank} sequences each of "
                         f"the {world_size} ranks gets per step (dist.global_batch={cfg.dist.global_batch}): "
                         f"micro-batches of {per_rank} are used")
    return notes


def warn_ineffective_settings(cfg: RunConfig, world_size: int | None = None,
                              write: Callable[[str], object] | None = None) -> list[str]:
    """Write each note once as `gf-train: warning: ...` (default: to stderr); returns the notes."""
    notes = ineffective_settings(cfg, world_size)
    for n in notes:
        line = f"gf-train: warning: {n}"
        if write is None:
            print(line, file=sys.stderr, flush=True)
        else:
            write(line)
    return notes
