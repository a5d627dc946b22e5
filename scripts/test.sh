#!/usr/bin/env bash
# The test suite, as the README and CI run it: set up .venv if needed, then pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/config -x`, `-m "not slow"`).
# GF_TEST_WORKERS=N runs the tests in N pytest-xdist workers (default 0: in this process). Not the default
# yet: one green parallel clean-clone run so far (docs/benchmarks.md). `--dist loadgroup` keeps the Slurm
# tests in one worker; pytest 9.2 broke that (pytest-xdist#1386), hence pytest < 9.2 in requirements/dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=12 \
  -n "${GF_TEST_WORKERS:-0}" --dist loadgroup "$@"
