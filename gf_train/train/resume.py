"""Saving and resuming a whole training state across ranks (the collective side of checkpointing).

Owner: `gf_train.train`. Everything about a checkpoint itself (layout, manifests, verification, the
resolver, weights, retention, client state) is `gf_train.checkpoint`; DeepSpeed I/O is
`gf_train.distributed.engine`. Here: which rank does what, and how the ranks agree.

- `save(...)`: every rank writes its DeepSpeed partition (each file hashed in a thread while the next one is
  written), its `rank_XXXXX.json` and its manifest; the ranks agree that all writes succeeded; rank 0 writes
  `latest`, `COMPLETE` (after every manifest), checks the sizes, then prunes. A failure on any rank (full
  disk, permissions, I/O) raises `SaveFailed` on every rank; the partial step dir is removed, older
  checkpoints are untouched.
- `choose(...)`: the checkpoint to resume from. Auto-resume verifies the newest complete checkpoint (the
  ranks share the files, then agree); a damaged one is logged, moved to checkpoints/corrupt/ and the next
  older one is tried. `--resume-from` an older checkpoint moves the newer ones to checkpoints/abandoned/.
- `plan_resume(...)`: config checks against the chosen checkpoint, universal-checkpoint decision.
- `load(...)`: engine + RNG + data state; a load error on any rank is agreed on (`LoadFailed`).
- `warm_start(...)`: model weights only (`--init-from`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gf_train.checkpoint import layout, manifest, retention, state
from gf_train.checkpoint.resolve import candidates, locate
from gf_train.checkpoint.weights import load_weights
from gf_train.config import RunConfig, config_hash, dump
from gf_train.distributed.engine import (
    all_gather_object,
    barrier,
    broadcast_object,
    convert_to_universal,
    load_engine,
    save_engine,
)
from gf_train.distributed.info import DistInfo

Log = Callable[[str], None]


class SaveFailed(Exception):
    """A checkpoint save failed on some rank (raised on every rank; the trainer exits EXIT_SAVE_FAILED)."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class NoLoadableCheckpoint(ValueError):
    """Every checkpoint of the run failed verification or loading (user-facing, one line)."""


class LoadFailed(Exception):
    """Loading a verified checkpoint raised on some rank (agreed on every rank)."""


@dataclass
class ResumePlan:
    step_dir: Path
    client: dict[str, Any]
    universal: bool  # load through a universal checkpoint (world size changed, ZeRO >= 1)
    changes: list[str]
    explicit: bool = False  # chosen by --resume-from (no fallback)


# ---- save ----

def _agree(err: str | None, step_dir: Path, info: DistInfo, what: str, step: int) -> None:
    """Collective: raise SaveFailed on every rank if `err` is set on any; rank 0 removes the partial dir."""
    errs = [e for e in all_gather_object(err) if e]
    if not errs:
        return
    if info.is_main:
        shutil.rmtree(step_dir, ignore_errors=True)
    barrier()
    raise SaveFailed(f"saving checkpoint {step_dir} failed while {what}: {errs[0]}. Older checkpoints are intact; "
                     f"free space or fix permissions on {step_dir.parent}, then rerun (it resumes from the newest "
                     f"complete checkpoint)", step)


def _describe(e: BaseException, rank: int) -> str:
    return f"rank {rank}: {type(e).__name__}: {e}".splitlines()[0]


def save(engine: Any, info: DistInfo, cfg: RunConfig, run_dir: Path, step: int, client: dict[str, Any],
         rank_state: dict[str, Any], keep_last: int, fault_sleep: float = 0.0) -> Path:
    """Write checkpoint `step` (all ranks call this). Returns the step dir; raises SaveFailed."""
    root = layout.checkpoints_dir(run_dir)
    step_dir = root / layout.step_name(step)
    exists = layout.is_complete(step_dir) if info.is_main else False
    if bool(broadcast_object(exists)):  # e.g. resumed at this very step and stopped again
        return step_dir
    err: str | None = None
    if info.is_main:
        try:
            if step_dir.exists():  # an incomplete leftover of a crash: start clean
                shutil.rmtree(step_dir)
            step_dir.mkdir(parents=True)
        except OSError as e:
            err = _describe(e, info.rank)
    _agree(err, step_dir, info, "creating the directory", step)
    rec = manifest.Recorder(step_dir)
    try:
        save_engine(engine, step_dir, layout.DS_TAG, {"gf_step": step}, after_save=rec.add_in_background)
        rec.write_text(state.rank_file(step_dir, info.rank), json.dumps(rank_state))
        if info.is_main:
            rec.write_text(step_dir / layout.CONFIG, dump(cfg))
            rec.write_text(step_dir / layout.CLIENT_STATE, json.dumps(client, indent=1, sort_keys=True))
            rec.write_text(step_dir / layout.LATEST, layout.DS_TAG)  # zero_to_fp32.py finds the tag by itself
            for script in sorted(step_dir.glob("*.py")):  # zero_to_fp32.py etc., copied there by DeepSpeed
                rec.add_existing(script)
        rec.write_manifest(info.rank)
    except Exception as e:  # noqa: BLE001 - any failure on any rank must reach every rank
        err = _describe(e, info.rank)
        try:
            rec.wait()  # no hashing thread outlives a failed save
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass
    if fault_sleep:  # testing hook: widen the window in which a kill -9 leaves an incomplete checkpoint
        time.sleep(fault_sleep)
    _agree(err, step_dir, info, "writing", step)
    if info.is_main:
        try:
            manifest.write_complete(step_dir, info.world_size)
            problems = manifest.verify(step_dir, checksums=False)  # sizes as written: cheap
            if problems:
                raise ValueError(problems[0])
        except (OSError, ValueError) as e:
            err = _describe(e, info.rank)
    _agree(err, step_dir, info, "completing", step)
    if info.is_main:
        retention.prune(root, keep_last)  # only now: a newer checkpoint is complete and verified
    barrier()
    return step_dir


def client_state(cfg: RunConfig, info: DistInfo, step: int, tokens: int, skipped: int,
                 extra: dict[str, Any]) -> dict[str, Any]:
    return {"step": step, "tokens": tokens, "skipped_steps": skipped, "world_size": info.world_size,
            "zero_stage": cfg.dist.zero_stage, "precision": cfg.dist.precision,
            "global_batch": cfg.dist.global_batch, "config_hash": config_hash(cfg),
            "versions": state.package_versions(), "saved_at": time.time(), **extra}


def tokenizer_identity(cfg: RunConfig) -> dict[str, Any] | None:
    """{name, vocab_hash, spec} of the training data's tokenizer, from its manifest (None without one)."""
    if not cfg.data.train:
        return None
    try:
        from gf_train.data import read_manifest

        tok = read_manifest(cfg.data.train[0].path)["tokenizer"]
    except (ImportError, OSError, KeyError, ValueError, TypeError):
        return None
    return {"name": tok.get("name"), "vocab_hash": tok.get("vocab_hash"), "spec": tok.get("spec") or tok.get("name")}


# ---- choosing the checkpoint ----

def _verify_shared(step_dir: Path, info: DistInfo, checksums: bool) -> list[str]:
    """Collective verification: every rank checks every world_size-th recorded file; all get all problems."""
    problems, files = manifest.recorded_files(step_dir)
    problems += manifest.check_files(step_dir, files[info.rank::info.world_size], checksums)
    return sorted({p for ps in all_gather_object(problems) for p in ps})


def move_to_corrupt(step_dir: Path, info: DistInfo, why: str, log: Log) -> None:
    """Collective: rank 0 moves a damaged checkpoint to checkpoints/corrupt/ (never deletes it)."""
    if info.is_main:
        dest = layout.move_aside(step_dir, layout.CORRUPT_DIR)
        log(f"WARNING: checkpoint {step_dir.name} is damaged ({why}); moved to {dest}; trying the next older one")
    barrier()


def choose(cfg: RunConfig, run_dir: Path, resume_from: Path | None, info: DistInfo, log: Log
           ) -> tuple[Path | None, bool]:
    """(the verified step dir to resume from or None for a fresh start, whether it was explicit)."""
    checksums = cfg.checkpoint.verify_checksums
    root = layout.checkpoints_dir(run_dir)
    if resume_from is not None:
        step_dir = locate(resume_from)
        problems = _verify_shared(step_dir, info, checksums)
        if problems:
            raise ValueError(f"--resume-from {step_dir} is damaged: {problems[0]}; pick an older step directory")
        step = layout.step_of(step_dir)
        moved = retention.abandon_newer(root, step) if info.is_main and step is not None else []
        barrier()
        if moved:
            log(f"--resume-from {step_dir.name}: a new timeline; the {len(moved)} newer checkpoint(s) "
                f"moved to {moved[0].parent} ({', '.join(p.name for p in moved)})")
        return step_dir, True
    tried: list[str] = []
    for step_dir in candidates(run_dir):
        problems = _verify_shared(step_dir, info, checksums)
        if not problems:
            step = layout.step_of(step_dir) or 0
            for d in layout.incomplete_newer_than(root, step):
                log(f"note: {d} is newer but incomplete (no {layout.COMPLETE}: its save was interrupted); "
                    f"resuming from {step_dir.name}")
            return step_dir, False
        tried.append(step_dir.name)
        move_to_corrupt(step_dir, info, problems[0], log)
    if tried:
        raise NoLoadableCheckpoint(f"no checkpoint of {run_dir} is intact: tried {', '.join(tried)} (all moved to "
                                   f"{root / layout.CORRUPT_DIR}); rerunning starts from step 0, or --resume-from "
                                   "a good copy")
    for d in layout.incomplete_newer_than(root, -1):
        log(f"note: {d} is incomplete (no {layout.COMPLETE}: its save was interrupted); starting from step 0")
    return None, False


def plan_resume(cfg: RunConfig, step_dir: Path | None, world_size: int, explicit: bool = False
                ) -> ResumePlan | None:
    """Config checks against the chosen checkpoint. Raises ValueError for impossible resumes."""
    if step_dir is None:
        return None
    client = state.read_client_state(step_dir)
    changes = state.compare_configs(state.read_run_config(step_dir), cfg,
                                    f"the checkpoint ({step_dir / layout.CONFIG})")
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
    return ResumePlan(step_dir=step_dir, client=client, universal=universal, changes=changes, explicit=explicit)


def prepare_universal(plan: ResumePlan, info: DistInfo) -> None:
    """Rank 0 converts the checkpoint to a universal one (once; kept in the step dir); all ranks wait."""
    if info.is_main and not (plan.step_dir / layout.UNIVERSAL_TAG).is_dir():
        convert_to_universal(plan.step_dir, layout.DS_TAG, layout.UNIVERSAL_TAG)
    barrier()


def load(engine: Any, plan: ResumePlan, info: DistInfo) -> dict[str, Any] | None:
    """Load engine state; restore this rank's RNG. Returns this rank's saved state (None if the rank
    did not exist in the saved run). Raises LoadFailed on every rank if loading failed on any."""
    err: str | None = None
    mine: dict[str, Any] | None = None
    try:
        load_engine(engine, plan.step_dir, layout.UNIVERSAL_TAG if plan.universal else layout.DS_TAG)
        same_world = plan.client["world_size"] == info.world_size
        mine = state.read_rank_state(plan.step_dir, info.rank) if same_world else None
        if plan.client["world_size"] != info.world_size:
            state.read_rank_state(plan.step_dir, 0)  # data_state_for reads it: fail here, not later
    except Exception as e:  # noqa: BLE001 - a damaged file may raise anything while unpickling
        err = _describe(e, info.rank)
    errs = [e for e in all_gather_object(err) if e]
    if errs:
        raise LoadFailed(errs[0])
    if mine is not None:
        state.restore_rng(mine["rng"])
    return mine


def data_state_for(plan: ResumePlan, rank_state: dict[str, Any] | None) -> Any:
    """The loader state to restore: this rank's own if the world size is unchanged, else rank 0's
    (the data loader's state is global: samples seen over all ranks, so it re-divides them)."""
    if rank_state is not None:
        return rank_state.get("data")
    zero = state.read_rank_state(plan.step_dir, 0)
    return None if zero is None else zero.get("data")


# ---- warm start ----

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


def _export_model_config(path: Path) -> tuple[dict[str, Any], Path] | None:
    """The `gf_model` entry of an export's config.json (next to a .safetensors file too); None for bare weights."""
    src = (path if path.is_dir() else path.parent) / "config.json"
    if src.is_file():
        try:
            gf_model = json.loads(src.read_text()).get("gf_model")
        except ValueError:
            return None
        if isinstance(gf_model, dict):
            return gf_model, src
    return None


def warm_start(model: torch.nn.Module, path: Path, model_cfg: Any = None, checksums: bool = True) -> list[str]:
    """Load model weights only (no optimizer, step or data state). Returns messages to log. With
    `model_cfg`, an architecture field that differs from the weights' own config is a ValueError."""
    from gf_train.checkpoint.resolve import resolve

    if not path.exists():
        raise FileNotFoundError(f"--init-from {path} does not exist")
    step_dir = None
    if layout.step_of(path) is not None or (path / layout.CLIENT_STATE).is_file() or (path / layout.DS_TAG).is_dir() \
            or (layout.checkpoints_dir(path)).is_dir():
        step_dir = resolve(path, checksums)
        source: tuple[dict[str, Any], Path] | None = (
            dataclasses.asdict(state.read_run_config(step_dir).model), step_dir / layout.CONFIG)
    else:
        source = _export_model_config(path)
    if source is not None and model_cfg is not None and dataclasses.is_dataclass(model_cfg):
        state.check_architecture(source[0], model_cfg, f"the weights' config ({source[1]})",
                              f" or start from other weights (--init-from {path})")
    sd = load_weights(step_dir) if step_dir is not None else _load_safetensors(path)
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
