"""Fixtures for derivex.ipc tests.

numba caches go to a user cache dir (never into the source tree), and
``src`` is put on ``sys.path`` when derivex is not installed; spawned child
processes inherit both (environment and ``sys.path``).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "derivex" / "numba"))

try:
    import derivex.ipc  # noqa: F401
except ImportError:  # pragma: no cover - not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pytest  # noqa: E402

from derivex import ipc  # noqa: E402


@pytest.fixture
def shm_name():
    """A unique segment name; the segment is unlinked after the test."""
    name = f"dxtest_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    yield name
    ipc.unlink(name)


@pytest.fixture
def shm_names():
    """Factory of unique segment names, all unlinked after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"dxtest_{os.getpid()}_{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        ipc.unlink(name)
