"""The `gf-train` command: the root parser, its subcommand table and `main`.

Owner: `gf_train.cli`. Each subcommand is one module of this package (`add_arguments(parser)` declares its
flags, `main(args)` turns them into typed arguments of one library call); the work lives in the library
(`gf_train.train`, `gf_train.data`, `gf_train.export`, ...), which is what tests call. The subcommand
modules import the library inside `main`, so that `gf-train config show` starts without torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from gf_train.cli import config, convert, data, evaluate, export, generate, plot, train
from gf_train.cli.overrides import gather_overrides
from gf_train.distributed.exit import end_process


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gf-train", description="pretrain GoldFinch, Finch and Llama with DeepSpeed")
    sub = p.add_subparsers(dest="command", required=True)

    # config show
    cfg = sub.add_parser("config", help="inspect the resolved config of a recipe")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved config (recipes merged, overrides applied)")
    config.add_show_arguments(show)
    show.set_defaults(func=config.show_main)

    # One module of this package per subcommand: `add_arguments(parser)` declares its flags, `main(args)` runs it.
    commands: tuple[tuple[str, ModuleType, str], ...] = (
        ("train", train, "train a model (DeepSpeed ZeRO)"),
        ("export", export, "export a checkpoint as safetensors + HF config + model card"),
        ("generate", generate, "generate text from an exported model"),
        ("eval", evaluate, "loss, perplexity and bits per byte on an MDS dataset"),
        ("convert", convert, "convert GoldFinch-paper / RWKV-LM weights"),
        ("plot", plot, "plot metrics.jsonl of a run"),
    )
    for name, module, help_ in commands:
        sp = sub.add_parser(name, help=help_, description=help_)
        module.add_arguments(sp)
        sp.set_defaults(func=module.main)

    data_parser = sub.add_parser("data", help="data preparation")
    data_sub = data_parser.add_subparsers(dest="data_command", required=True)
    tok = data_sub.add_parser("tokenize", help="tokenize corpora into MDS shards")
    data.add_tokenize_arguments(tok)
    tok.set_defaults(func=data.tokenize_main)
    ins = data_sub.add_parser("inspect", help="print a tokenized dataset's manifest and samples")
    data.add_inspect_arguments(ins)
    ins.set_defaults(func=data.inspect_main)
    cc = data_sub.add_parser("cache-clean", help="remove local mirrors of s3:// datasets (data.cache_dir)",
                             description="remove local mirrors of s3:// datasets (data.cache_dir); training never "
                                         "removes them (data.cache_limit bounds one split while a run reads it)")
    data.add_cache_clean_arguments(cc)
    cc.set_defaults(func=data.cache_clean_main)
    return p


def _drop_local_rank(argv: list[str]) -> list[str]:
    """The deepspeed launcher passes `--local_rank=N` first; LOCAL_RANK in the environment says the same."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--local_rank":
            skip = True
        elif not a.startswith("--local_rank="):
            out.append(a)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(_drop_local_rank(list(sys.argv[1:] if argv is None else argv)))
    unknown = gather_overrides(args, unknown)  # `a=1 --flag X b=2`: b=2 is an override too
    if unknown:  # an unknown --flag, or a stray word where no override is taken: a typo
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # user errors (config, data, checkpoints) carry their own fix
        print(f"gf-train: error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"gf-train: error: {e}", file=sys.stderr)
        return 1


def entry() -> NoReturn:
    """The `gf-train` console script and `python -m gf_train`: `main`, then `end_process` (a process that ran
    a process group leaves without interpreter finalization; `gf_train.distributed.exit` says why)."""
    end_process(main())


if __name__ == "__main__":
    entry()
