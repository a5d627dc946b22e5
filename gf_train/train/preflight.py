"""Checks made from the config, the dataset manifests and the files a run names, before any work: before the
model is built, DeepSpeed starts or the run directory is written (`train` calls `preflight` first).

Owner: `gf_train.train`. Each failure is one ValueError / FileNotFoundError line naming the culprit and the
fix (`gf-train` exits 1 with it). Checked: the data paths exist and hold manifests (remote streams not yet
mirrored are left to the loader); `data.cache_limit` holds streaming's minimum for each split of s3://
streams (`gf_train.data.cache.check_cache_limit`); the tokenizer's vocabulary fits `model.vocab_size`, all
streams share one tokenizer and one seq_len (`gf_train.data.check_vocab`); the data's seq_len is
`model.ctx_len`; the data's tokenizer is `model.tokenizer`/`model.vocab_hash` when those are set (else they
are filled in from the data, so checkpoints and exports record it), the tokenizer of the checkpoint being
resumed, and that of the `--init-from` weights unless `data.allow_new_tokenizer=true` (see
`gf_train.tokenizer_identity`).
Config-only warnings (values with no effect) belong to `gf_train.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gf_train.config import RunConfig
from gf_train.tokenizer_identity import TokenizerId, of_manifest, of_model, of_model_config


def _manifests(cfg: RunConfig) -> list[dict[str, Any]]:
    from gf_train.data import read_manifest
    from gf_train.data.remote import is_remote

    if not cfg.data.train:
        raise ValueError("data.train is empty: list at least one MDS folder (data_prep/tokenize.py --out X gives "
                         "X/train), e.g. data.train=[{path: X/train}]")
    out = []
    for split in ("train", "val"):
        for i, s in enumerate(getattr(cfg.data, split)):
            where = f"data.{split}[{i}].path"
            if is_remote(s.path):  # s3://...: the manifest is read from the store (one-line errors)
                out.append(read_manifest(s.path))
                continue
            local = Path(s.path).expanduser()
            if s.remote is None and not local.exists():
                raise FileNotFoundError(f"{where} {s.path} does not exist; fix the path or tokenize a corpus there "
                                        "(data_prep/tokenize.py --out DIR gives DIR/train and DIR/val)")
            try:
                m = read_manifest(local)
            except FileNotFoundError as e:
                if s.remote is not None:
                    continue  # not mirrored yet: the loader checks the samples
                raise FileNotFoundError(f"{where} {s.path}: {e}") from None
            out.append(m)
    return out


def _checkpoint_to_resume(run_dir: Path, resume_from: Path | None) -> Path | None:
    from gf_train.checkpoint import locate
    from gf_train.checkpoint.resolve import candidates

    if resume_from is not None:
        return locate(resume_from)  # its files are verified when it is loaded (gf_train.train.resume)
    found = candidates(run_dir)  # auto-resume's first choice; a damaged one is set aside when loaded
    return found[0] if found else None


def preflight(cfg: RunConfig, run_dir: Path, *, resume_from: Path | None = None, init_from: Path | None = None
              ) -> TokenizerId | None:
    """Raise on the first problem (see module docstring). Fills `cfg.model.tokenizer`/`vocab_hash` from the
    data when unset and returns the run's tokenizer (None when no manifest is readable yet)."""
    from gf_train.data.cache import check_cache_limit

    manifests = _manifests(cfg)
    for split in ("train", "val"):
        check_cache_limit(getattr(cfg.data, split), cfg.data.cache_limit, f"data.{split}")
    run_id = of_model_config(cfg.model)
    if manifests:
        from gf_train.data import check_vocab

        first = check_vocab(manifests, cfg.model.vocab_size)
        if int(first["seq_len"]) != cfg.model.ctx_len:
            raise ValueError(f"{first['_path']}: the data has seq_len {first['seq_len']} but model.ctx_len is "
                             f"{cfg.model.ctx_len}; set model.ctx_len={first['seq_len']} or re-tokenize with "
                             f"--seq-len {cfg.model.ctx_len}")
        data_id = of_manifest(first)
        if data_id is not None:
            if run_id is not None and not run_id.matches(data_id):
                raise ValueError(f"{first['_path']}: the data was tokenized with {data_id} but model.tokenizer is "
                                 f"{run_id}; use data tokenized with the model's tokenizer, or drop model.tokenizer"
                                 "/model.vocab_hash for a model of the data's tokenizer")
            cfg.model.tokenizer, cfg.model.vocab_hash = data_id.name, data_id.vocab_hash
            run_id = data_id
    if run_id is None:
        return None
    step_dir = _checkpoint_to_resume(Path(run_dir), resume_from)
    if step_dir is not None:
        theirs = of_model(step_dir)
        if theirs is not None and not theirs.matches(run_id):
            raise ValueError(f"the checkpoint {step_dir} was trained with tokenizer {theirs} but this run's data uses "
                             f"{run_id}; resume with data tokenized with {theirs.name}, or start a new --run-dir "
                             f"with --init-from {step_dir} data.allow_new_tokenizer=true")
    elif init_from is not None:
        if not Path(init_from).exists():
            raise FileNotFoundError(f"--init-from {init_from} does not exist")
        theirs = of_model(init_from)
        if theirs is not None and not theirs.matches(run_id) and not cfg.data.allow_new_tokenizer:
            raise ValueError(f"--init-from {init_from} was trained with tokenizer {theirs} but this run's data uses "
                             f"{run_id}; for continued pretraining with a new tokenizer set "
                             "data.allow_new_tokenizer=true, else use data tokenized with "
                             f"{theirs.name}")
    return run_id
