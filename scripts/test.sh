#!/usr/bin/env bash
# The test suite, as the README and CI run it: set up .venv if needed, then pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/config -x`, `-m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=12 "$@"
