#!/usr/bin/env bash
# Creates .venv (if missing) and installs gf-train with everything the CPU path and the tests need.
# Idempotent: a second run with an up-to-date venv only checks and returns.
# GPU clusters: see README ("GPU clusters"); this script is for CPU machines and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GF_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.gf-installed"
want=$(cat pyproject.toml requirements/*.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export DS_BUILD_OPS=0 PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing into $VENV (about 2 minutes on a fresh machine)" >&2
# pip's warnings about local index folders that do not exist on this machine are noise: drop them.
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
quiet pip install -q -c requirements/constraints-cpu.txt -r requirements/cpu.txt -r requirements/dev.txt
# mosaicml-streaming: --no-deps, its real runtime deps are in requirements/cpu.txt; torchvision
# is replaced at import time by gf_train.data.compat.ensure_torchvision when it cannot be imported.
quiet pip install -q --no-deps "mosaicml-streaming==0.13.0"
quiet pip install -q --no-deps -e .
python - <<'PY'
import torch
if not torch.cuda.is_available() and "+cpu" not in torch.__version__ and not torch.__version__.startswith("2.13"):
    raise SystemExit(f"[setup] expected the CPU build of torch, found {torch.__version__}")
PY
echo "$want" > "$stamp"
