"""`gf-train generate --model DIR --prompt TEXT [--prompt TEXT ...] [--prompts-file FILE]`: sample
continuations of several prompts as one left-padded batch.

Owner: `gf_train.cli`. Argument parsing only: the loop, validation and report live in
`gf_train.model.generate` (typed arguments). Prints each prompt + continuation on stdout (one block per
prompt, separated by a blank line); on stderr, the pre-fill and decode speeds (tokens/s), the cache mode
and its size in bytes, the cache growth per token of each mode and what a Llama of the same width and
depth would keep (2 * n_layer * n_embd numbers per token, spec §10.4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter  # `generate --help` shows the defaults
    parser.add_argument("--model", required=True, help="export folder, or a run / checkpoint directory")
    parser.add_argument("--prompt", action="append", default=[], help="prompt text (repeatable: one batch)")
    parser.add_argument("--prompts-file", default=None, help="UTF-8 file, one prompt per line (blank lines skipped)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate per prompt (>= 1)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=0.85, help="nucleus mass in (0, 1] (1 = off)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    parser.add_argument("--cache-mode", choices=("kv", "compressed"), default=None,
                        help="GOLD cache: kv (fast) or compressed (c + token id per position); default: the model's")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer spec, for a model that records none (default: the model's own; another "
                             "tokenizer than the model's is refused)")


def read_prompts(prompts: list[str], prompts_file: str | None) -> list[str]:
    """--prompt values then the lines of --prompts-file; an empty --prompt is an error."""
    if any(not p for p in prompts):
        raise ValueError("--prompt is empty; give it some text")
    out = list(prompts)
    if prompts_file is not None:
        path = Path(prompts_file)
        if not path.is_file():
            raise ValueError(f"--prompts-file {path} does not exist")
        out += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise ValueError("no prompt given; pass --prompt TEXT (repeatable) or --prompts-file FILE")
    return out


def main(args: argparse.Namespace) -> int:
    from gf_train.data.tokenizers import load_tokenizer
    from gf_train.export.load import load_model
    from gf_train.model.generate import generate_texts, report
    from gf_train.tokenizer_identity import check_prompt_tokenizer

    prompts = read_prompts(args.prompt, args.prompts_file)
    if args.tokenizer is not None:
        check_prompt_tokenizer(args.model, args.tokenizer)
    loaded = load_model(args.model)
    spec = args.tokenizer or loaded.tokenizer_spec
    if spec is None:
        raise ValueError(f"{args.model} ships no tokenizer; pass --tokenizer rwkv_world or a tokenizer.json")
    tok = load_tokenizer(spec)
    r = generate_texts(loaded.model, tok, prompts, args.max_new_tokens, args.temperature, args.top_k,
                       args.top_p, args.seed, args.cache_mode)
    print("\n\n".join(r.texts), flush=True)
    print(report(r, loaded.config), file=sys.stderr)
    return 0
