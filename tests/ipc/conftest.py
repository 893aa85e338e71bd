"""Fixtures for derivex.ipc tests.

Importing ``derivex`` points numba's cache at the user cache dir (never the
source tree); spawned child processes inherit that environment variable and
the parent's ``sys.path``, so they import the same code and cache.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

try:
    import derivex.ipc  # noqa: F401
except ImportError:  # pragma: no cover - not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pytest

from derivex import ipc


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
