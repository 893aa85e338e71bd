#!/usr/bin/env bash
# Set up, then run the whole test suite: lint, the tests with compiled kernels, and the core's
# unit tests once more with the JIT disabled (plain Python).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check src tests bench scripts
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q tests
NUMBA_DISABLE_JIT=1 .venv/bin/python -m pytest -q -m nojit tests/core
