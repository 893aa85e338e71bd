"""derivex: a deterministic exchange core for crypto derivatives.

Importing the package points numba's on-disk kernel cache at the user cache directory
(never the source tree) unless ``NUMBA_CACHE_DIR`` is already set.
"""

from __future__ import annotations

import os

if "NUMBA_CACHE_DIR" not in os.environ:
    from platformdirs import user_cache_dir

    os.environ["NUMBA_CACHE_DIR"] = os.path.join(user_cache_dir("derivex"), "numba")
    import sys

    if "numba" in sys.modules:  # imported before us: its config already read the environment
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.exchange import Exchange, OrderResult, Quote  # noqa: E402

__all__ = ["Engine", "EngineConfig", "Exchange", "OrderResult", "Quote"]
__version__ = "0.1.0"
