"""The `gf-train` command line: the only argument parser of the library.

Each subcommand parses its arguments and calls one library function; the work lives in the library
(`gf_train.train`, `gf_train.data`, `gf_train.export`, ...), which is what tests call. Subcommands import
their modules lazily so that `gf-train config show` starts without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

EXIT_NOT_BUILT = 2


def _config_show(args: argparse.Namespace) -> int:
    from gf_train.config import dump, load

    cfg = load(args.config, args.overrides)
    sys.stdout.write(dump(cfg))
    return 0


def _lazy(module: str, func: str = "main") -> Callable[[argparse.Namespace], int]:
    """Forward to `module.func(args)`; a feature whose module is not there yet exits 2 with a message."""

    def run(args: argparse.Namespace) -> int:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                print(f"gf-train: '{args.command}' is not available in this version ({module} missing)",
                      file=sys.stderr)
                return EXIT_NOT_BUILT
            raise
        return int(getattr(mod, func)(args) or 0)

    return run


def _add_lazy_args(module: str, parser: argparse.ArgumentParser) -> bool:
    """Let the owning module declare its own flags (`add_arguments(parser)`), if it exists yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    add = getattr(mod, "add_arguments", None)
    if add is not None:
        add(parser)
    return True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gf-train", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    # config show
    cfg = sub.add_parser("config", help="inspect the resolved config of a recipe")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved config (recipes merged, overrides applied)")
    show.add_argument("--config", action="append", required=True, help="recipe YAML (repeatable, later wins)")
    show.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.n_layer=12")
    show.set_defaults(func=_config_show)

    # Subcommands owned by other modules: (name, module, help).
    for name, module, help_ in (
        ("train", "gf_train.train.cli", "train a model (DeepSpeed ZeRO)"),
        ("export", "gf_train.export.cli", "export a checkpoint as safetensors + HF config + model card"),
        ("generate", "gf_train.export.generate_cli", "generate text from an exported model"),
        ("eval", "gf_train.export.eval_cli", "loss, perplexity and bits per byte on an MDS dataset"),
        ("convert", "gf_train.export.convert_cli", "convert GoldFinch-paper / RWKV-LM weights"),
        ("plot", "gf_train.export.plot_cli", "plot metrics.jsonl of a run"),
    ):
        sp = sub.add_parser(name, help=help_)
        _add_lazy_args(module, sp)
        sp.set_defaults(func=_lazy(module))

    data = sub.add_parser("data", help="data preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, module, help_ in (
        ("tokenize", "gf_train.data.tokenize", "tokenize corpora into MDS shards"),
        ("inspect", "gf_train.data.inspect", "print a tokenized dataset's manifest and samples"),
    ):
        sp = data_sub.add_parser(name, help=help_)
        _add_lazy_args(module, sp)
        sp.set_defaults(func=_lazy(module))
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
    if unknown:
        # Subcommands that take free `key=value` overrides declare an `overrides` positional; anything
        # else left over is a typo.
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # user errors (config, data, checkpoints) carry their own fix
        print(f"gf-train: error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"gf-train: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
