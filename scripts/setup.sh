#!/usr/bin/env bash
# Set up everything derivex needs on a fresh Debian machine: system packages (only when
# missing), a virtual environment in .venv, the package, and a warm kernel cache. Safe to run
# again.
#
#   bash scripts/setup.sh          what `derivex serve` needs: the package, the engine's
#                                  kernels and a short single-process venue's (the rest
#                                  compiles on first use)
#   bash scripts/setup.sh --dev    everything the test suite needs (scripts/test.sh): the
#                                  development extras, chromium, every kernel family
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
if [ "${1:-}" = "--dev" ]; then dev=1; fi

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
# the browser tests/ui drive (through PyPI playwright; never `playwright install`)
if ((dev)); then command -v chromium >/dev/null 2>&1 || need_apt+=(chromium); fi
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" python3-dev
fi
python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"derivex needs Python >= 3.11, found {sys.version.split()[0]}")
PY
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# uv installs the dependencies in ~6 s where pip takes ~25 s (resolution, unpacking and
# byte-compiling numpy, numba, scipy...); pip is the fallback where uv does not install.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine, CI),
# a package installed without .pyc files is compiled from source by every process
if .venv/bin/python -m pip install -q "uv>=0.5"; then
    install=(.venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python)
else
    install=(.venv/bin/python -m pip install -q)
fi
if ((dev)); then
    "${install[@]}" -e ".[dev]"
    # compile and cache every kernel family once, before anything runs in parallel: the
    # engine, then a short served venue with two workers, then its verification
    .venv/bin/python scripts/warm.py
else
    "${install[@]}" -e .
    # the engine (two processes where there are two cores), then a short single-process venue
    .venv/bin/python scripts/warm.py --serve
fi
