"""DeepSpeed: process group, the engine built from the typed config, collectives, engine checkpoint I/O.

Owner: `gf_train.distributed`. This package is the only place in gf_train that imports `deepspeed`; everything
here is a thin, typed wrapper so that the trainer (`gf_train.train`) never touches DeepSpeed's API.

- `ds_config(cfg, derived, ...)` is a pure function: the DeepSpeed JSON for a run (ZeRO stage, bf16,
  offload, grad accumulation from `derive`, clipping). Batch numbers are never computed twice.
- The optimizer is AdamW in decoupled-decay mode: DeepSpeed's FusedAdam on CUDA, DeepSpeedCPUAdam with
  optimizer offload (on CPU too, so CPU tests run the offload path GPU jobs use; its C++ op is JIT-built
  once per machine, ~1 min, cached in ~/.cache/torch_extensions), and torch's AdamW on CPU otherwise (no
  JIT build; bit-exact resume is verified with both).
- ZeRO 0 + fp32: `guard_stage0_fp32` / `skip_nonfinite_step_stage0` skip a step with non-finite gradients
  the way DeepSpeed's optimizer wrappers do at every other stage and precision (`overflow`, `skipped_steps`).
- `compile_model`: DeepSpeed's `engine.compile()` (torch.compile, inductor) on GPU and CPU alike; on CPU
  inductor needs a C++ compiler and the first step compiles for about a minute.
- On CPU the shm all-reduce op JIT build (~30 s) is switched off before `init_distributed`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from gf_train.config import Derived, RunConfig
from gf_train.distributed.exit import mark_process_group_used
from gf_train.distributed.info import DistInfo


def device_for(info: DistInfo) -> torch.device:
    """CUDA device `local_rank` when CUDA is there (and DS_ACCELERATOR is not cpu), else the CPU."""
    if torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    return torch.device("cpu")


def init_distributed(info: DistInfo, device: torch.device, backend: str = "auto",
                     timeout_minutes: float = 30.0) -> None:
    """Create the default process group (nccl on CUDA, gloo on CPU) through DeepSpeed."""
    import deepspeed
    import deepspeed.ops

    if device.type == "cpu":
        # Otherwise DeepSpeed's CPU accelerator JIT-compiles a shared-memory all-reduce op (~30 s cold).
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("dist.backend=nccl needs CUDA devices; use dist.backend=auto or gloo on CPU")
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False,
                               timeout=timedelta(minutes=timeout_minutes), rank=info.rank,
                               world_size=info.world_size)
    mark_process_group_used()  # the process now ends through exit.end_process (see there why)


def ds_config(cfg: RunConfig, derived: Derived, device: torch.device, load_universal: bool = False
              ) -> dict[str, Any]:
    """The DeepSpeed config of a run (pure: same inputs, same dict)."""
    d = cfg.dist
    bucket = int(d.bucket_mb * 1024 * 1024)
    zero: dict[str, Any] = {"stage": d.zero_stage}
    if d.zero_stage >= 1:
        zero.update(reduce_bucket_size=bucket, allgather_bucket_size=bucket, contiguous_gradients=True,
                    overlap_comm=device.type == "cuda" and d.zero_stage >= 2)
    if d.offload_optimizer:
        if d.zero_stage == 0:
            raise ValueError("dist.offload_optimizer needs dist.zero_stage >= 1 (ZeRO-Offload); set zero_stage=2")
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": device.type == "cuda"}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    conf: dict[str, Any] = {
        "train_batch_size": derived.global_batch,
        "train_micro_batch_size_per_gpu": derived.micro_batch,
        "gradient_accumulation_steps": derived.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": d.precision == "bf16", "check_grad_overflow": True},
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "checkpoint": {"load_universal": load_universal},
    }
    return conf


def build_optimizer(groups: list[dict[str, Any]], cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (decoupled decay, bias correction) over the given parameter groups."""
    o = cfg.optim
    kw = dict(lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps, weight_decay=o.weight_decay)
    if cfg.dist.offload_optimizer:  # also on CPU: the same optimizer as a GPU job's offload
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **kw)
    if device.type == "cuda":
        from deepspeed.ops.adam import FusedAdam

        return FusedAdam(groups, adam_w_mode=True, **kw)
    return torch.optim.AdamW(groups, foreach=False, **kw)


def build_engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict[str, Any],
                 compile_model: bool = False) -> Any:
    """Wrap model + optimizer in a DeepSpeed engine (ZeRO partitioning happens here). At ZeRO 0 in fp32 the
    optimizer gets the non-finite step guard (`guard_stage0_fp32`), which DeepSpeed has at every other
    stage and precision."""
    import deepspeed

    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config,
                                           dist_init_required=False)
    if not (engine.zero_optimization() or engine.bfloat16_enabled() or engine.fp16_enabled()):
        guard_stage0_fp32(engine)
    if compile_model:
        engine.compile()
    return engine


def engine_optimizer_groups(engine: Any) -> list[dict[str, Any]]:
    """The param groups whose `lr` the trainer sets each step (DeepSpeed wraps the client optimizer)."""
    return list(engine.optimizer.param_groups)


# ---- ZeRO 0 + fp32: skipping a non-finite step ----
# At ZeRO 1-3 (any precision) and in bf16 DeepSpeed's optimizer wrapper checks the gradients for overflow
# and, when one is found, leaves weights and optimizer state alone, sets its `overflow` flag; the engine
# then counts the step in `skipped_steps`, `was_step_applied()` is False and no lr scheduler step is taken.
# At ZeRO 0 in fp32 `engine.optimizer` is the bare torch optimizer: no check. The guard gives it the same
# contract: the trainer decides before `engine.step()` (`skip_nonfinite_step_stage0`) and sets `overflow`,
# which the engine reads after the step; a step pre-hook drops the gradients of a flagged step, so the
# torch optimizer (AdamW, FusedAdam: both pass over a parameter without a gradient) changes neither weights
# nor state. The gradients are dropped only inside `optimizer.step()`, after DeepSpeed's fp32 gradient
# clipping, which needs at least one gradient (`parameters[0]`) and leaves non-finite ones non-finite.

def _drop_grads_of_skipped_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Step pre-hook of the guard: a flagged step updates nothing."""
    if optimizer.overflow:  # type: ignore[attr-defined]
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None


def guard_stage0_fp32(engine: Any) -> None:
    """Give `engine.optimizer` (a torch optimizer, ZeRO 0 + fp32) DeepSpeed's overflow contract (see above)."""
    optimizer = engine.optimizer
    assert isinstance(optimizer, torch.optim.Optimizer), type(optimizer)
    if hasattr(optimizer, "overflow"):  # guarded already
        return
    optimizer.overflow = False  # type: ignore[attr-defined]
    optimizer.register_step_pre_hook(_drop_grads_of_skipped_step)


def skip_nonfinite_step_stage0(engine: Any) -> bool:
    """ZeRO 0 + fp32, after the last backward of a step and before its `engine.step()`: True (and the step
    flagged as skipped for the guard and the engine) when a gradient is NaN or infinite on some rank."""
    optimizer = engine.optimizer
    assert hasattr(optimizer, "overflow"), "guard_stage0_fp32(engine) was not called"
    bad = 0.0
    for p in engine.module.parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            bad = 1.0
            break
    # The gradients are all-reduced already, so the ranks agree anyway; the sum makes it certain.
    skipped = float(all_reduce_sum(torch.tensor([bad], dtype=torch.float32))[0]) > 0
    optimizer.overflow = skipped
    return skipped


def global_grad_norm_stage0(engine: Any) -> float:
    """L2 norm of all gradients before clipping, what DeepSpeed reports at ZeRO 1-3 and not at stage 0.
    Call after the last backward of a step (gradients are all-reduced there), before `engine.step()`."""
    grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
    if not grads:
        return float("nan")
    norms = torch._foreach_norm(grads, 2.0)
    return float(torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), 2.0))


# ---- collectives (no-ops semantics for world size 1 handled by torch.distributed itself) ----

def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a small float64/float32 CPU tensor over all ranks (moved to the comm device and back)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = values.to(dev)
    dist.all_reduce(t)
    return t.cpu()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list without a process group)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    """Barrier, then destroy the process group (the barrier avoids a rare gloo teardown abort)."""
    if dist.is_initialized():
        try:
            barrier()
        finally:
            dist.destroy_process_group()


# ---- engine checkpoint I/O ----

def save_engine(engine: Any, step_dir: Path, tag: str, client_state: dict[str, Any],
                after_save: Callable[[str], None] | None = None) -> None:
    """All ranks: write DeepSpeed's tag dir (module, optimizer partitions) under `step_dir/tag`.

    `after_save(path)` is called after each file DeepSpeed's checkpoint engine writes on this rank (the
    checkpoint layer hashes it in a thread while the next one is written). If writing fails on this rank,
    this rank still enters DeepSpeed's closing barrier before re-raising, so that the other ranks are not
    left waiting in it and every rank can then agree on the failure."""
    ckpt = engine.checkpoint_engine
    plain_save = ckpt.save
    if after_save is not None:
        def save(state_dict: Any, path: str) -> None:
            plain_save(state_dict, path)
            after_save(path)

        ckpt.save = save
    try:
        engine.save_checkpoint(str(step_dir), tag=tag, client_state=client_state, save_latest=False)
    except Exception:
        barrier()  # DeepSpeed's final barrier, which this rank skipped
        raise
    finally:
        ckpt.save = plain_save


def load_engine(engine: Any, step_dir: Path, tag: str) -> dict[str, Any]:
    """All ranks: load module + optimizer state of `step_dir/tag`; returns DeepSpeed's client state."""
    path, client = engine.load_checkpoint(str(step_dir), tag=tag, load_module_strict=True,
                                          load_optimizer_states=True, load_lr_scheduler_states=False)
    if path is None:
        raise ValueError(f"DeepSpeed found no checkpoint at {step_dir / tag}; the directory is damaged, "
                         f"delete it to resume from an older one")
    return dict(client or {})


def convert_to_universal(step_dir: Path, tag: str, out_tag: str) -> Path:
    """Rank 0 only: `ds_to_universal` of `step_dir/tag` into `step_dir/out_tag` (for another world size).

    The same as the documented command
    `python -m deepspeed.checkpoint.ds_to_universal --input_folder D/ds --output_folder D/ds_universal
    --inject_missing_state`."""
    out = step_dir / out_tag
    tmp = step_dir / (out_tag + ".tmp")
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(step_dir / tag),
           "--output_folder", str(tmp), "--inject_missing_state", "--num_extract_workers", "1",
           "--num_merge_workers", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ValueError(f"converting {step_dir / tag} to a universal checkpoint failed:\n{res.stderr[-3000:]}")
    os.replace(tmp, out)
    return out


def fp32_state_dict(step_dir: Path, tag: str) -> dict[str, torch.Tensor]:
    """Consolidated fp32 weights of a DeepSpeed checkpoint (any ZeRO stage), for warm starts."""
    import contextlib

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    with contextlib.redirect_stdout(sys.stderr):  # its progress prints would corrupt `gf-train eval --json`
        return dict(get_fp32_state_dict_from_zero_checkpoint(str(step_dir), tag=tag))
