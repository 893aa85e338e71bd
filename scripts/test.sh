#!/usr/bin/env bash
# Set up, then run the whole test suite: lint, the tests with compiled kernels, and the core's
# unit tests once more with the JIT disabled (plain Python).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff format --check src tests bench scripts
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# one test file per worker process, as many workers as cores (at most 4): the servers, NATS
# clusters and browsers the tests start wait on I/O much of the time. The files are handed
# out in collection order, which tests/conftest.py makes the longest first
# (tests/scheduling.py, tests/durations.json): xdist's own order (most tests first) left
# the slow one-test server modules for the end
XDIST=(-n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder)
.venv/bin/python -m pytest -q "${XDIST[@]}" tests
NUMBA_DISABLE_JIT=1 .venv/bin/python -m pytest -q "${XDIST[@]}" -m nojit tests/core
