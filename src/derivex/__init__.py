"""derivex: a deterministic exchange core for crypto derivatives.

Importing the package makes numba keep derivex's compiled kernels under the user cache
directory (never the source tree; ``NUMBA_CACHE_DIR`` overrides the place), each kernel
module keyed by a digest of the sources it imports (``derivex._kernel_cache``): an edit
recompiles only the kernels that import what changed.
"""

from __future__ import annotations

from derivex import _kernel_cache

_kernel_cache.install()

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.exchange import Exchange, OrderResult, Quote  # noqa: E402
from derivex.journal.verify import verify_proof  # noqa: E402

__all__ = ["Engine", "EngineConfig", "Exchange", "OrderResult", "Quote", "verify_proof"]
__version__ = "0.1.0"
