"""The training loop: `train(cfg, run_dir, ...) -> exit code`. The heart of `gf-train train`.

Owner: `gf_train.train`. `train` builds the trainer (engine, data, resume) and runs steps until the run
ends. Each optimizer step is `gf_train.train.step.train_step`: `grad_accum` micro-batches per rank (from
`derive`) and one all-reduce that every rank agrees on (a `StepResult`: mean loss, skipped update,
preemption, timed-save vote). After each step the loop logs a metrics row, asks the `SavePolicy` whether
to save (and why), validates, and exits on preemption, `--stop-at-step` or too many skipped steps in a row.
Step numbers in logs and checkpoint names count completed optimizer steps (`step_00000020` = 20 steps
done; the first metrics line has step 1). Before any work, `preflight` checks the data against the config
(paths, vocab, seq_len, tokenizer). Training rows log `loss` (the step's mean loss) and `loss_avg` (the mean
over the logging interval); validation is `gf_train.evaluate` on a set chosen once (`eval.max_tokens`,
`dist.seed`).

`model_factory` / `loader_factory` / `flops_fn` default to `gf_train.model` / `gf_train.data`; tests
inject small stand-ins. The testing hooks (GF_TRAIN_FAULT_* environment variables) are
`gf_train.train.faults`.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gf_train.checkpoint.state import capture_rng
from gf_train.config import RunConfig, derive, dump, to_dict, warn_ineffective_settings
from gf_train.distributed.engine import (
    all_reduce_sum,
    build_engine,
    build_optimizer,
    device_for,
    ds_config,
    engine_optimizer_groups,
    init_distributed,
    shutdown,
)
from gf_train.distributed.info import DistInfo, read_dist_info
from gf_train.evaluate import EvalSet, LossTally, choose_samples, eval_result, loss_tally
from gf_train.train import resume
from gf_train.train.faults import FaultInjector
from gf_train.train.metrics import MetricsSink, StepTimer, memory_gb, mfu, peak_tflops
from gf_train.train.optim import describe, param_groups, strip_names
from gf_train.train.preflight import preflight
from gf_train.train.save_policy import SavePolicy, SaveReason
from gf_train.train.schedule import schedule_fn
from gf_train.train.signals import (
    EXIT_NONFINITE,
    EXIT_OK,
    EXIT_REQUEUE,
    EXIT_SAVE_FAILED,
    EXIT_USER_ERROR,
    PreemptionFlag,
)
from gf_train.train.step import StepResult, StepShape, train_step
from gf_train.train.wandb_sink import check_available as check_wandb

ModelFactory = Callable[[Any], torch.nn.Module]
LoaderFactory = Callable[..., Iterable[tuple[torch.Tensor, torch.Tensor]]]


def _default_model_factory(model_cfg: Any) -> torch.nn.Module:
    from gf_train.model import build_model

    return build_model(model_cfg)


def _default_loader_factory(cfg: RunConfig, split: str, derived: Any, info: DistInfo) -> Any:
    from gf_train.data import build_loader, check_vocab

    if split == "train":
        check_vocab(cfg.data, cfg.model.vocab_size)
    return build_loader(cfg.data, split, seq_len=cfg.model.ctx_len, micro_batch=derived.micro_batch,
                        global_batch=derived.global_batch, world_size=info.world_size, rank=info.rank)


def _default_flops(model_cfg: Any) -> float | None:
    from gf_train.model.flops import flops_per_token

    return float(flops_per_token(model_cfg))


def _val_manifests(cfg: RunConfig) -> list[dict[str, Any]]:
    """The manifests of the validation streams that have one (for bits per byte)."""
    from gf_train.data import read_manifest

    out = []
    for s in cfg.data.val:
        try:
            out.append(read_manifest(s.path))
        except (FileNotFoundError, ValueError):
            pass
    return out


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Endless: a new epoch (`iter` again) when the loader runs out."""
    while True:
        n = 0
        for b in loader:
            n += 1
            yield b
        if n == 0:
            raise ValueError("the training data loader yielded no batch; check data.train (is the dataset "
                             "smaller than one global batch?)")


def _write_exit_status(run_dir: Path, info: DistInfo, code: int, reason: str, step: int) -> None:
    """rank 0: exit_status.json {exit_code, reason, step}. Reasons: finished, stop_at_step, preempted, nonfinite,
    checkpoint_save_failed (step: the save that failed), no_intact_checkpoint (every checkpoint damaged)."""
    if info.is_main:
        (run_dir / "exit_status.json").write_text(json.dumps({"exit_code": code, "reason": reason, "step": step}))


def train(cfg: RunConfig, run_dir: Path, *, stop_at_step: int | None = None, resume_from: Path | None = None,
          init_from: Path | None = None, model_factory: ModelFactory | None = None,
          loader_factory: LoaderFactory | None = None, flops_fn: Callable[[Any], float | None] | None = None
          ) -> int:
    """Train (or resume) a run in `run_dir`; returns the process exit code (see `signals`)."""
    info = read_dist_info()
    derived = derive(cfg, info.world_size)
    if info.is_main:  # once per run, before any work: settings that would silently do nothing
        warn_ineffective_settings(cfg, info.world_size)
    check_wandb(cfg.log.wandb)
    faults = FaultInjector.from_env(info.rank)  # the testing hooks, read once (bad values fail here)
    run_dir = Path(run_dir)
    if loader_factory is None:  # the real data: every check its manifests allow, before any work (injected
        # loaders bring their own data); fills model.tokenizer/vocab_hash, which config.yaml then records
        preflight(cfg, run_dir, resume_from=resume_from, init_from=init_from)
    run_dir.mkdir(parents=True, exist_ok=True)
    flag = PreemptionFlag().install()  # before any DataLoader worker is forked
    device = device_for(info)
    init_distributed(info, device, cfg.dist.backend, cfg.dist.timeout_minutes)
    try:
        saves = SavePolicy.for_run(cfg, derived.max_steps, stop_at_step, info.is_main)
        return _Trainer(cfg, run_dir, info, derived, device, flag, faults, saves,
                        model_factory or _default_model_factory, loader_factory or _default_loader_factory,
                        flops_fn or _default_flops).run(resume_from, init_from)
    except resume.SaveFailed as e:  # raised on every rank, after they agreed
        print(f"gf-train: error: {e}", file=sys.stderr, flush=True)
        _write_exit_status(run_dir, info, EXIT_SAVE_FAILED, "checkpoint_save_failed", e.step)
        return EXIT_SAVE_FAILED
    except resume.NoLoadableCheckpoint:
        _write_exit_status(run_dir, info, EXIT_USER_ERROR, "no_intact_checkpoint", 0)
        raise  # the CLI prints the one line and exits 1
    finally:
        flag.uninstall()
        shutdown()


class _Trainer:
    """One run on this rank: builds the engine (resuming when there is a checkpoint), then `_loop`."""

    def __init__(self, cfg: RunConfig, run_dir: Path, info: DistInfo, derived: Any, device: torch.device,
                 flag: PreemptionFlag, faults: FaultInjector, saves: SavePolicy, model_factory: ModelFactory,
                 loader_factory: LoaderFactory, flops_fn: Callable[[Any], float | None]) -> None:
        self.cfg, self.run_dir, self.info, self.derived, self.device = cfg, run_dir, info, derived, device
        self.flag, self.faults, self.saves = flag, faults, saves
        self.model_factory, self.loader_factory, self.flops_fn = model_factory, loader_factory, flops_fn
        self.step = 0  # completed optimizer steps
        self.tokens = 0
        self.skipped = 0  # steps whose update was skipped (non-finite loss or gradient), in total
        self.bad_in_row = 0  # ... in a row, up to the last step
        self.sink: MetricsSink | None = None
        self._val: tuple[Any, EvalSet, list[dict[str, Any]]] | None = None

    def log(self, text: str) -> None:
        if self.info.is_main:
            if self.sink is not None:
                self.sink.message(text)
            else:
                print(text, file=sys.stderr, flush=True)

    # ---- set-up ----
    def _build(self, resume_from: Path | None, init_from: Path | None) -> resume.ResumePlan | None:
        """Choose the checkpoint (falling back past damaged ones), build model + engine, load it."""
        cfg, info = self.cfg, self.info
        while True:
            step_dir, explicit = resume.choose(cfg, self.run_dir, resume_from, info, self.log)
            plan = resume.plan_resume(cfg, step_dir, info.world_size, explicit)
            if plan is not None:
                self.log(f"resuming from {plan.step_dir} (step {plan.client['step']}, saved on "
                         f"{plan.client['world_size']} ranks)")
                for c in plan.changes:
                    self.log(f"  config change vs checkpoint: {c}")
                if plan.universal:
                    self.log("  world size changed: loading through DeepSpeed universal checkpointing")
                    resume.prepare_universal(plan, info)
            self._build_engine(plan, init_from)
            if plan is None:
                return None
            try:
                self.rank_state = resume.load(self.engine, plan, info)
                return plan
            except resume.LoadFailed as e:
                if plan.explicit:
                    raise ValueError(f"--resume-from {plan.step_dir} does not load: {e}") from None
                resume.move_to_corrupt(plan.step_dir, info, f"loading failed: {e}", self.log)

    def _build_engine(self, plan: resume.ResumePlan | None, init_from: Path | None) -> None:
        cfg, info = self.cfg, self.info
        _seed_all(cfg.dist.seed)  # identical model init on every rank
        model = self.model_factory(cfg.model)
        if init_from is not None:
            if plan is not None:
                self.log(f"--init-from {init_from} ignored: resuming the run's own checkpoint instead")
            else:
                for m in resume.warm_start(model, Path(init_from), cfg.model, cfg.checkpoint.verify_checksums):
                    self.log(m)
        model = model.to(self.device)
        self.n_params = sum(p.numel() for p in model.parameters())
        groups = param_groups(model.named_parameters(), cfg.optim)
        self.param_names = [list(g["names"]) for g in groups]  # maps ZeRO-0 bf16 fp32 masters to names
        self.log(f"model: {self.n_params:,} parameters; optimizer groups:\n{describe(groups)}")
        optimizer = build_optimizer(strip_names(groups), cfg, self.device)
        self.log(f"optimizer: {type(optimizer).__name__}" + (" (ZeRO-Offload)" if cfg.dist.offload_optimizer else ""))
        conf = ds_config(cfg, self.derived, self.device, load_universal=plan is not None and plan.universal)
        if cfg.dist.compile and self.device.type != "cuda":
            self.log("dist.compile=true on CPU: inductor compiles the model in the first steps (about a minute)")
        self.engine = build_engine(model, optimizer, conf, compile_model=cfg.dist.compile)
        _seed_all(cfg.dist.seed + 1000 * info.rank + 1)  # per-rank streams (dropout etc.)

    def _sink(self, start_step: int) -> MetricsSink:
        cfg, info = self.cfg, self.info
        wb = None
        if info.is_main and cfg.log.wandb != "disabled":
            from gf_train.train.wandb_sink import WandbSink

            id_file = self.run_dir / "wandb_run_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            wb = WandbSink(cfg.log.wandb, cfg.log.wandb_project, cfg.log.wandb_run_name or cfg.run_name,
                           list(cfg.log.wandb_tags), to_dict(cfg), self.run_dir, run_id)
            if wb.run_id and not id_file.is_file():
                id_file.write_text(wb.run_id)
        return MetricsSink(self.run_dir, info.is_main, self.derived.max_steps, start_step,
                           cfg.log.progress_bar and info.is_main, wb)

    # ---- checkpoints, eval ----
    def save(self, loader: Any) -> Path:
        data_state = loader.state_dict() if hasattr(loader, "state_dict") else None
        client = resume.client_state(self.cfg, self.info, self.step, self.tokens, self.skipped,
                                     {"tokenizer": self.tokenizer, "param_names": self.param_names})
        path = resume.save(self.engine, self.info, self.cfg, self.run_dir, self.step, client,
                           {"rng": capture_rng(), "data": data_state},
                           self.cfg.checkpoint.keep_last, self.faults.save_sleep_s)
        self.log(f"checkpoint {path}")
        self.saves.restart_clock()
        return path

    def evaluate(self) -> None:
        """Validation through `gf_train.evaluate` (the code of `gf-train eval`): the same set at every eval,
        the whole val split within `eval.max_tokens`, else a subset fixed by `dist.seed`."""
        cfg, info = self.cfg, self.info
        if self._val is None:
            source = self.loader_factory(cfg, "val", self.derived, info)
            eval_set = choose_samples(source.num_samples, cfg.model.ctx_len, cfg.eval.max_tokens, cfg.dist.seed)
            self._val = (source, eval_set, _val_manifests(cfg))
            self.log(f"validation set: {eval_set.describe()}")
        source, eval_set, manifests = self._val
        self.engine.eval()
        tally = loss_tally(self.engine, source, eval_set, self.derived.micro_batch, info.rank, info.world_size,
                           self.device)
        self.engine.train()
        r = eval_result(LossTally.from_vector(all_reduce_sum(tally.vector())), eval_set, manifests)
        assert self.sink is not None
        self.sink.log({"step": self.step, "val_loss": r.loss, "val_bpb": r.bits_per_byte, "val_tokens": r.tokens,
                       "val_samples": r.samples, "val_split_samples": eval_set.total})

    # ---- the loop ----
    def run(self, resume_from: Path | None, init_from: Path | None) -> int:
        cfg, info, d = self.cfg, self.info, self.derived
        self.tokenizer = resume.tokenizer_identity(cfg)
        self.rank_state: dict[str, Any] | None = None
        plan = self._build(resume_from, init_from)
        rank_state = self.rank_state
        if plan is not None:
            self.step, self.tokens = int(plan.client["step"]), int(plan.client["tokens"])
            self.skipped = int(plan.client.get("skipped_steps", 0))
        if info.is_main:
            (self.run_dir / "config.yaml").write_text(dump(cfg))
        loader = self.loader_factory(cfg, "train", d, info)
        if plan is not None:
            state = resume.data_state_for(plan, rank_state)
            if state is not None and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(state)
        self.sink = self._sink(self.step)
        try:
            return self._loop(loader)
        finally:
            self.sink.close()
            for source in (loader, self._val[0] if self._val else None):  # streaming's shm, now not at exit
                getattr(source, "close", lambda: None)()

    def _loop(self, loader: Any) -> int:
        """Optimizer steps until `max_steps`, `--stop-at-step`, preemption or too many bad steps in a row."""
        cfg, info, d = self.cfg, self.info, self.derived
        self.saves.restart_clock()  # timed saves count from the first step
        if self.saves.stops_at(self.step):
            self.log(f"already at step {self.step} >= --stop-at-step {self.saves.stop_at_step}: nothing to do")
            return EXIT_OK
        lr_at = schedule_fn(cfg.optim, cfg.schedule, d.max_steps)
        shape = StepShape(grad_accum=d.grad_accum, world_size=info.world_size, tokens_per_step=d.tokens_per_step,
                          zero_stage=cfg.dist.zero_stage, precision=cfg.dist.precision)
        rows = _StepRows(self, cfg.log.every_steps)
        batches = _batches(loader)
        while self.step < d.max_steps:
            lr = self._set_lr(lr_at(self.step))
            result = train_step(self.engine, batches, self.step, shape, self.device, self.faults,
                                preempted=lambda: self.flag.is_set, timed_save_due=self.saves.timed_save_due)
            self.step += 1
            self.tokens += result.tokens
            self.bad_in_row = self.bad_in_row + 1 if result.skipped else 0
            self.skipped += int(result.skipped)
            rows.add(result, lr)
            exit_code = self._after_step(result, loader)
            if exit_code is not None:
                return exit_code
        _write_exit_status(self.run_dir, info, EXIT_OK, "finished", self.step)
        self.log(f"finished: {self.step} steps, {self.tokens:,} tokens")
        return EXIT_OK

    def _set_lr(self, lr: float) -> float:
        for g in engine_optimizer_groups(self.engine):  # fresh: a checkpoint load replaces the dicts
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def _after_step(self, result: StepResult, loader: Any) -> int | None:
        """Skip message, validation, checkpoint; the exit code when the run stops here, else None."""
        cfg, info = self.cfg, self.info
        if result.skipped:
            self.log(f"step {self.step}: non-finite loss or gradient, update skipped "
                     f"({self.bad_in_row} in a row, {self.skipped} in total)")
        reason = self.saves.reason(self.step, nonfinite_stop=self.bad_in_row >= cfg.optim.max_nonfinite_in_row,
                                   preempted=result.preempted, timed_save_due=result.timed_save_due)
        if reason is SaveReason.NONFINITE:  # before validation: the weights are not worth evaluating
            self.save(loader)
            self.log(f"stopping: {self.bad_in_row} steps in a row had a non-finite loss or gradient. The "
                     f"checkpoint at step {self.step} holds the last good weights. Lower optim.lr, raise optim.eps "
                     f"or check the data, then rerun (it resumes there)")
            _write_exit_status(self.run_dir, info, EXIT_NONFINITE, "nonfinite", self.step)
            return EXIT_NONFINITE
        if self._validation_due():
            self.evaluate()
        if reason is not None:
            self.save(loader)
        if reason is SaveReason.PREEMPTED:
            self.log(f"preempted ({self.flag.describe()}): checkpoint written at step {self.step}; "
                     f"exiting with {EXIT_REQUEUE} (requeue me)")
            _write_exit_status(self.run_dir, info, EXIT_REQUEUE, "preempted", self.step)
            return EXIT_REQUEUE
        if self.saves.stops_at(self.step) and self.step < self.derived.max_steps:
            self.log(f"stopped at step {self.step} (--stop-at-step)")
            _write_exit_status(self.run_dir, info, EXIT_OK, "stop_at_step", self.step)
            return EXIT_OK
        return None

    def _validation_due(self) -> bool:
        every = self.cfg.eval.every_steps
        return bool(self.cfg.data.val) and (bool(every and self.step % every == 0)
                                            or self.step == self.derived.max_steps)


class _StepRows:
    """The metrics rows of training steps: one every `log.every_steps`, at step 1, at the last step and at
    every skipped step; `loss` is the step's mean loss (exact: what resume and golden tests compare),
    `loss_avg` the mean of the finite step losses since the last row (what the console and plot show)."""

    def __init__(self, trainer: _Trainer, every_steps: int) -> None:
        cfg, device = trainer.cfg, trainer.device
        self.trainer, self.every_steps = trainer, every_steps
        self.flops_per_token = trainer.flops_fn(cfg.model)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        self.peak = peak_tflops(device_name, cfg.dist.precision, cfg.log.peak_tflops)
        self.timer, self.t_start = StepTimer(), time.monotonic()
        self.loss_sum, self.loss_count = 0.0, 0  # finite step losses since the last row

    def add(self, result: StepResult, lr: float) -> None:
        t, d = self.trainer, self.trainer.derived
        assert t.sink is not None
        self.timer.add(result.seconds, result.data_wait_s)
        finite = math.isfinite(result.loss)
        if finite:
            self.loss_sum, self.loss_count = self.loss_sum + result.loss, self.loss_count + 1
        if t.step % self.every_steps == 0 or t.step == d.max_steps or t.step == 1 or result.skipped:
            t.sink.log(self._row(result, lr))
            self.timer.reset()
            self.loss_sum, self.loss_count = 0.0, 0
        t.sink.progress(t.step, result.loss if finite else None)

    def _row(self, result: StepResult, lr: float) -> dict[str, Any]:
        t = self.trainer
        window = self.timer.window(t.derived.tokens_per_step, t.info.world_size)
        return {"step": t.step, "loss_avg": self.loss_sum / self.loss_count if self.loss_count else None,
                "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm, "tokens": t.tokens, **window,
                "mfu": mfu(self.flops_per_token, window["tokens_per_s_per_device"], self.peak)
                if self.flops_per_token else None,
                "mem_gb": memory_gb(t.device.type), "skipped_steps": t.skipped,
                "elapsed_s": time.monotonic() - self.t_start}
