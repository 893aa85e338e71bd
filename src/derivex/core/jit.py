"""Compile settings for every kernel, in one place.

Kernels are cached on disk (numba writes the cache under its cache directory, which
``derivex`` points at the user cache dir, never the source tree). Setting the environment
variable ``NUMBA_DISABLE_JIT=1`` runs every kernel as plain Python for debugging and for the
pure-Python test pass. ``error_model="numpy"``: division by zero is never relied upon (every
divisor is validated first), and the numpy model keeps the compiled code branch-free.

``_nrt=False``: kernels never allocate, so they need no reference counting. With it on,
numba increments and decrements the count of *every* array of the state tuple whenever its
pruning pass cannot prove a pair redundant (any branchy code): ~46 atomic operations,
~240 ns, per helper call. Measured: a 5-line helper went from 242 ns to below 1 ns.

``forceinline=True`` (LLVM ``alwaysinline``): every kernel takes the state tuple, which numba
flattens into ~190 machine words; a call that LLVM declines to inline pushes all of them
(the batch kernel had ~11,600 stack instructions). Inlining at the LLVM level (cheap to
compile, unlike numba's IR-level ``inline="always"``) removed that: the single-book flow went
from 1.9M to 5.5M commands/s in an A/B run on the same loaded machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


# shared by every core kernel; numba's default strict IEEE float semantics are kept (the
# core has no floats, and no option here may relax them)
_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "_nrt": False}


#: the C entry points (``core/entry.py``): cached, the same error model; numba's runtime on,
#: because they build array views from addresses (``carray``), which needs it
ENTRY_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy"}


def kernel(function: F) -> F:
    """Compile ``function`` as a cached no-python kernel, force-inlined into its callers."""
    compiled: F = numba.njit(forceinline=True, **_OPTIONS)(function)
    return compiled


def inline_kernel(function: F) -> F:
    """Like ``kernel``, inlined into its callers at numba IR level: needed for helpers that
    return new array views, which a kernel without NRT may not return across a call."""
    compiled: F = numba.njit(inline="always", **_OPTIONS)(function)
    return compiled


def cold_kernel(function: F) -> F:
    """Like ``kernel``, but a call of its own instead of inlined: for rare, large paths
    (the trigger stage when trigger orders exist) that would otherwise be copied into the
    batch loop and slow every command down. Pays the call (the flattened state tuple) each
    time it runs, so only for what runs rarely."""
    compiled: F = numba.njit(**_OPTIONS)(function)
    return compiled
