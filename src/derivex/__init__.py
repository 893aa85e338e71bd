"""derivex: a deterministic exchange core for crypto derivatives.

Importing the package points numba's on-disk kernel cache at the user cache directory
(never the source tree) unless ``NUMBA_CACHE_DIR`` is already set. The directory is keyed by
a digest of the kernel sources: numba checks only the timestamp of the file that defines a
cached function, not of the kernels it calls in other modules, so an edit to a callee would
otherwise leave stale machine code in use.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

#: Subpackages that hold compiled kernels or what kernels fold in (record codes, layouts).
#: Everything else (gateway, CLI, simulation, the Exchange wrapper) only calls kernels, so an
#: edit there must not throw the compiled cache away.
KERNEL_PACKAGES = ("core", "ipc", "journal", "pricing", "runtime")


def _kernel_cache_dir(package: Path | None = None) -> str:
    """Cache directory for the kernels of ``package`` (default: this one), named by a digest
    of the Python sources of its kernel subpackages."""
    from platformdirs import user_cache_dir

    digest = hashlib.sha256()
    package = package or Path(__file__).parent
    for path in sorted(p for name in KERNEL_PACKAGES for p in (package / name).rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return os.path.join(user_cache_dir("derivex"), "numba", digest.hexdigest()[:16])


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _kernel_cache_dir()
    if "numba" in sys.modules:  # imported before us: its config already read the environment
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.exchange import Exchange, OrderResult, Quote  # noqa: E402
from derivex.journal.verify import verify_proof  # noqa: E402

__all__ = ["Engine", "EngineConfig", "Exchange", "OrderResult", "Quote", "verify_proof"]
__version__ = "0.1.0"
