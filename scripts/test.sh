#!/usr/bin/env bash
# The test suite, as the README and CI run it: set up .venv if needed, then pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/config -x`, `-m "not slow"`).
# The tests run in GF_TEST_WORKERS pytest-xdist workers (default 2: most tests wait on subprocesses, servers or
# Slurm, so two workers fill the idle time of a 2-core machine; docs/benchmarks.md). GF_TEST_WORKERS=0 runs
# them in this process (for --pdb, -s or a debugger). `--dist loadgroup` keeps the Slurm tests in one worker;
# pytest 9.2 broke that (pytest-xdist#1386), hence pytest < 9.2 in requirements/dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=12 \
  -n "${GF_TEST_WORKERS:-2}" --dist loadgroup "$@"
