"""Fixtures/setup for derivex.pricing tests (helpers live in pricing_refs.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "derivex" / "numba"))

try:
    import derivex.pricing  # noqa: F401
except ImportError:  # pragma: no cover - not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
