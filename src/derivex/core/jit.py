"""Compile settings for every kernel, in one place.

Kernels are cached on disk (numba writes the cache under its cache directory, which
``derivex`` points at the user cache dir, never the source tree). Setting the environment
variable ``NUMBA_DISABLE_JIT=1`` runs every kernel as plain Python for debugging and for the
pure-Python test pass. ``error_model="numpy"``: division by zero is never relied upon (every
divisor is validated first), and the numpy model keeps the compiled code branch-free.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def kernel(function: F) -> F:
    """Compile ``function`` as a cached no-python kernel (no fastmath)."""
    compiled: F = numba.njit(cache=True, error_model="numpy", fastmath=False)(function)
    return compiled
