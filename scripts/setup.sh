#!/usr/bin/env bash
# Set up everything derivex needs on a fresh Debian machine: system packages (only when
# missing), a virtual environment in .venv, the package with its development extras, and a
# warm kernel cache. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
# the browser tests/ui drive (through PyPI playwright; never `playwright install`)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
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
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# compile and cache the kernels once, in one process, before anything runs in parallel
.venv/bin/python -c "import derivex, numpy; from derivex.core.records import command_array; derivex.Engine().process(command_array(1))"
