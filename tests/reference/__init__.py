"""Pure-Python reference model of the derivex core (see docs/core-semantics.md)."""

from __future__ import annotations

import os
import sys

try:  # the package may not be installed yet: fall back to the src layout
    import derivex  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    _SRC = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src"
    )
    if _SRC not in sys.path:
        sys.path.insert(0, _SRC)
