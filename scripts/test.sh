#!/usr/bin/env bash
# Set up, then run the whole test suite: lint, the tests with compiled kernels, and the core's
# unit tests once more with the JIT disabled (plain Python).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check src tests bench scripts
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# one test file per worker process, as many workers as cores (at most 4): the servers, NATS
# clusters and browsers the tests start wait on I/O much of the time
.venv/bin/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile tests
NUMBA_DISABLE_JIT=1 .venv/bin/python -m pytest -q -n auto --maxprocesses 4 -m nojit tests/core
