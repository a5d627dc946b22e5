"""Saving and resuming a whole training state across ranks; model-only warm starts.

Owner: `gf_train.train`. Orchestrates the collective parts of checkpointing on top of
`gf_train.train.checkpoint` (layout, JSON client state) and `gf_train.distributed.engine` (DeepSpeed I/O):

- `save(...)`: every rank writes its DeepSpeed partition and its `rank_XXXXX.json`; rank 0 writes the
  client state and config; barrier; rank 0 writes `COMPLETE`, then prunes old checkpoints.
- `plan_resume(...)`: which checkpoint to load (explicit `--resume-from`, else the newest complete one
  of the run dir), checks the config against it (architecture must match; other changes are logged),
  and decides whether a universal checkpoint is needed (another world size with ZeRO >= 1).
- `warm_start(...)`: model weights only, from an exported weights dir / safetensors file or from a
  checkpoint step dir (consolidated with DeepSpeed's zero_to_fp32).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gf_train.config import RunConfig, config_hash, dump, loads
from gf_train.distributed.engine import (
    barrier,
    broadcast_object,
    convert_to_universal,
    fp32_state_dict,
    load_engine,
    save_engine,
)
from gf_train.distributed.info import DistInfo
from gf_train.train import checkpoint as ck


@dataclass
class ResumePlan:
    step_dir: Path
    client: dict[str, Any]
    universal: bool  # load through a universal checkpoint (world size changed, ZeRO >= 1)
    changes: list[str]


def save(engine: Any, info: DistInfo, cfg: RunConfig, run_dir: Path, step: int, client: dict[str, Any],
         rank_state: dict[str, Any], keep_last: int, fault_sleep: float = 0.0) -> Path:
    """Write checkpoint `step` (all ranks call this). Returns the step dir."""
    root = ck.checkpoints_dir(run_dir)
    step_dir = root / ck.step_name(step)
    exists = ck.is_complete(step_dir) if info.is_main else False
    exists = bool(broadcast_object(exists))
    if exists:  # e.g. resumed at this very step and stopped again
        return step_dir
    if info.is_main:
        if step_dir.exists():  # an incomplete leftover of a crash: start clean
            shutil.rmtree(step_dir)
        step_dir.mkdir(parents=True)
    barrier()
    save_engine(engine, step_dir, ck.DS_TAG, {"gf_step": step})
    ck.write_rank_state(step_dir, info.rank, rank_state)
    if info.is_main:
        (step_dir / "config.yaml").write_text(dump(cfg))
        ck.write_client_state(step_dir, client)
    if fault_sleep:  # testing hook: widen the window in which a kill -9 leaves an incomplete checkpoint
        time.sleep(fault_sleep)
    barrier()
    if info.is_main:
        ck.mark_complete(step_dir)
        ck.prune(root, keep_last)
    barrier()
    return step_dir


def client_state(cfg: RunConfig, info: DistInfo, step: int, tokens: int, skipped: int,
                 extra: dict[str, Any]) -> dict[str, Any]:
    return {"step": step, "tokens": tokens, "skipped_steps": skipped, "world_size": info.world_size,
            "zero_stage": cfg.dist.zero_stage, "precision": cfg.dist.precision,
            "global_batch": cfg.dist.global_batch, "config_hash": config_hash(cfg),
            "versions": ck.package_versions(), "saved_at": time.time(), **extra}


def plan_resume(cfg: RunConfig, run_dir: Path, resume_from: Path | None, world_size: int) -> ResumePlan | None:
    """The checkpoint to resume from, or None for a fresh start. Raises ValueError for impossible resumes."""
    step_dir = ck.resolve_checkpoint(resume_from) if resume_from is not None else ck.newest_complete(run_dir)
    if step_dir is None:
        return None
    client = ck.read_client_state(step_dir)
    old = loads((step_dir / "config.yaml").read_text())
    changes = ck.compare_configs(old, cfg)
    if client["zero_stage"] != cfg.dist.zero_stage:
        raise ValueError(
            f"dist.zero_stage={cfg.dist.zero_stage} but {step_dir} was saved with zero_stage="
            f"{client['zero_stage']}: DeepSpeed cannot load optimizer partitions across ZeRO stages. Resume "
            f"with dist.zero_stage={client['zero_stage']}, or start a new run with --init-from {step_dir}")
    if client["precision"] != cfg.dist.precision:
        raise ValueError(
            f"dist.precision={cfg.dist.precision} but {step_dir} was saved with {client['precision']}: the "
            f"optimizer state layouts differ. Resume with dist.precision={client['precision']}, or start a "
            f"new run with --init-from {step_dir}")
    if client["global_batch"] != cfg.dist.global_batch:
        changes.append("note: the global batch changed, so the data order and the lr schedule in tokens differ")
    universal = client["world_size"] != world_size and cfg.dist.zero_stage >= 1
    if universal and cfg.dist.offload_optimizer:
        raise ValueError("resuming on another world size with dist.offload_optimizer is not supported by "
                         "DeepSpeed's universal checkpoints; resume on "
                         f"{client['world_size']} ranks or set dist.offload_optimizer=false")
    return ResumePlan(step_dir=step_dir, client=client, universal=universal, changes=changes)


def prepare_universal(plan: ResumePlan, info: DistInfo) -> None:
    """Rank 0 converts the checkpoint to a universal one (once; kept in the step dir); all ranks wait."""
    if info.is_main and not (plan.step_dir / ck.UNIVERSAL_TAG).is_dir():
        convert_to_universal(plan.step_dir, ck.DS_TAG, ck.UNIVERSAL_TAG)
    barrier()


def load(engine: Any, plan: ResumePlan, info: DistInfo) -> dict[str, Any] | None:
    """Load engine state; restore this rank's RNG. Returns this rank's saved state (None if the rank
    did not exist in the saved run)."""
    load_engine(engine, plan.step_dir, ck.UNIVERSAL_TAG if plan.universal else ck.DS_TAG)
    same_world = plan.client["world_size"] == info.world_size
    mine = ck.read_rank_state(plan.step_dir, info.rank) if same_world else None
    if mine is not None:
        ck.restore_rng(mine["rng"])
    return mine


def data_state_for(plan: ResumePlan, rank_state: dict[str, Any] | None) -> Any:
    """The loader state to restore: this rank's own if the world size is unchanged, else rank 0's
    (the data loader's state is global: samples seen over all ranks, so it re-divides them)."""
    if rank_state is not None:
        return rank_state.get("data")
    zero = ck.read_rank_state(plan.step_dir, 0)
    return None if zero is None else zero.get("data")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"--init-from {path}: no *.safetensors file there (expected an exported weights dir, "
                         f"a .safetensors file or a checkpoint step_XXXXXXXX dir)")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd


def _source_model_config(path: Path, step_dir: Path | None) -> tuple[dict[str, Any], Path] | None:
    """The model config the weights were saved with: a step dir's config.yaml, or the `gf_model` entry of
    an export's config.json (next to a .safetensors file too). None for bare weights."""
    import dataclasses
    import json

    if step_dir is not None and (step_dir / "config.yaml").is_file():
        src = step_dir / "config.yaml"
        return dataclasses.asdict(loads(src.read_text()).model), src
    src = (path if path.is_dir() else path.parent) / "config.json"
    if src.is_file():
        try:
            gf_model = json.loads(src.read_text()).get("gf_model")
        except ValueError:
            return None
        if isinstance(gf_model, dict):
            return gf_model, src
    return None


def _check_architecture(path: Path, source: tuple[dict[str, Any], Path] | None, model_cfg: Any) -> None:
    """Raise ValueError naming the first architecture field where the weights' config and ours differ."""
    import dataclasses

    if source is None or model_cfg is None or not dataclasses.is_dataclass(model_cfg):
        return
    theirs, src = source
    for f in dataclasses.fields(model_cfg):
        if f.name in ck.NON_ARCH_MODEL_FIELDS or f.name not in theirs:
            continue
        a, b = theirs[f.name], getattr(model_cfg, f.name)
        if a != b:
            raise ValueError(f"--init-from {path}: model.{f.name} is {a!r} in the weights' config ({src}) but "
                             f"{b!r} in this run's config: the weights cannot be loaded. Set model.{f.name}={a!r} "
                             f"or start from other weights")


def warm_start(model: torch.nn.Module, path: Path, model_cfg: Any = None) -> list[str]:
    """Load model weights only (no optimizer, step or data state). Returns messages to log. With
    `model_cfg`, an architecture field that differs from the weights' own config is a ValueError."""
    if not path.exists():
        raise FileNotFoundError(f"--init-from {path} does not exist")
    step_dir = None
    if (path / ck.CLIENT_STATE).is_file() or (path / ck.DS_TAG).is_dir():
        step_dir = ck.resolve_checkpoint(path)
    _check_architecture(path, _source_model_config(path, step_dir), model_cfg)
    if step_dir is not None:
        model_file = step_dir / ck.DS_TAG / "mp_rank_00_model_states.pt"
        if ck.read_client_state(step_dir)["zero_stage"] == 0 and model_file.is_file():
            sd = torch.load(model_file, map_location="cpu", weights_only=False)["module"]  # DeepSpeed's own file
        else:
            sd = fp32_state_dict(step_dir, ck.DS_TAG)
    else:
        sd = _load_safetensors(path)
    own = model.state_dict()
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    bad = [k for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"--init-from {path}: tensor {k} has shape {tuple(sd[k].shape)} but the model wants "
                         f"{tuple(own[k].shape)}; the model config differs from the weights'")
    res = model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items() if k in own}, strict=False)
    msgs = [f"warm start from {path}: {len(sd)} tensors"]
    if res.missing_keys:
        msgs.append(f"  not in the weights (kept at init): {', '.join(res.missing_keys[:10])}"
                    + (" ..." if len(res.missing_keys) > 10 else ""))
    extra = [k for k in sd if k not in own]
    if extra:
        msgs.append(f"  ignored (not in the model): {', '.join(extra[:10])}" + (" ..." if len(extra) > 10 else ""))
    return msgs
