#!/usr/bin/env bash
# The README's first command: set up .venv if needed, then run the embedded end-to-end default
# (corpus -> tokenize -> train a tiny GoldFinch on 2 CPU ranks -> stop + resume -> export -> generate -> plot).
# Arguments go to `python -m gf_train.quickstart` (e.g. --out DIR, --steps N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m gf_train.quickstart "$@"
