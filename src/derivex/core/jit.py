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
from numba.core import errors, types, typing
from numba.core.registry import CPUDispatcher

F = TypeVar("F", bound=Callable[..., Any])


# shared by every core kernel; numba's default strict IEEE float semantics are kept (the
# core has no floats, and no option here may relax them)
_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "_nrt": False}


#: the C entry points (``core/entry.py``): cached, the same error model (they build their
#: array views from addresses with ``arena.view_at`` and run without numba's runtime)
ENTRY_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy"}


def _widened(argument: Any) -> Any:
    """The type a kernel is compiled for when called with ``argument``: a literal as its
    plain type, a member of an int64 ``IntEnum`` and a narrower signed integer as int64;
    anything else (unsigned integers, arrays, records, tuples) as it is."""
    if isinstance(argument, types.IntegerLiteral | types.BooleanLiteral):
        argument = argument.literal_type
    if isinstance(argument, types.IntEnumMember) and argument.dtype == types.int64:
        return types.int64
    if isinstance(argument, types.Integer):
        integer: Any = argument  # (signed and bitwidth are not in numba's stubs)
        if integer.signed and integer.bitwidth < 64:
            return types.int64
    return argument


class WideningDispatcher(CPUDispatcher):  # type: ignore[misc]  # numba is untyped
    """A dispatcher that compiles one specialisation per *widened* signature (``_widened``)
    when called from another kernel; the caller casts its arguments (a sign extension, a
    constant). Without it a shared kernel compiled once per combination of literal,
    enum, int32 and int64 arguments its callers happen to pass: ``match`` 5 times,
    ``cancel_resting`` 7, ``accepted`` 13, each a library of its own that LLVM optimised
    and compiled. The kernels are force-inlined into their callers (``kernel``), where
    LLVM folds the constants again, so the machine code of the engine is the same.

    A signature that does not type once widened (a kernel that needs a literal) is
    compiled as called. Calls from Python dispatch as usual."""

    def get_call_template(self, args: Any, kws: Any) -> Any:
        this: Any = self  # (numba's private attributes are not in its stubs)
        pysig, folded = this._compiler.fold_argument_types(args, kws)
        widened = tuple(_widened(argument) for argument in folded)
        if not this._can_compile or widened == tuple(folded):
            return super().get_call_template(args, kws)
        if widened not in self.overloads:
            try:
                self.compile(widened)
            except errors.TypingError:
                return super().get_call_template(args, kws)
        name = self.py_func.__name__
        compiled: Any = self.overloads[widened]
        template = typing.make_concrete_template(
            f"CallTemplate({name})", key=name, signatures=[compiled.signature]
        )
        return template, pysig, folded, {}


def _compile(function: Any, **options: Any) -> Any:
    """``numba.njit(**options)(function)`` with a ``WideningDispatcher``."""
    if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]  # numba is untyped
        return function
    options = {**_OPTIONS, **options}
    cache = options.pop("cache")
    dispatcher = WideningDispatcher(
        py_func=function,
        locals={},
        targetoptions={"nopython": True, "boundscheck": None, **options},
    )
    if cache:
        dispatcher.enable_caching()
    return dispatcher


def kernel(function: F) -> F:
    """Compile ``function`` as a cached no-python kernel, force-inlined into its callers."""
    compiled: F = _compile(function, forceinline=True)
    return compiled


def inline_kernel(function: F) -> F:
    """Like ``kernel``, inlined into its callers at numba IR level: needed for helpers that
    return new array views, which a kernel without NRT may not return across a call."""
    compiled: F = numba.njit(inline="always", **_OPTIONS)(function)
    return compiled


def cold_kernel(function: F) -> F:
    """Like ``kernel``, but a call of its own instead of inlined: for rare, large paths
    (the trigger stage when trigger orders exist, TIME, administration) that would
    otherwise be copied into the batch loop and slow every command down. Callers reach it
    by its C symbol (``core/batch_symbol.py``), with the arena and its layout rather than
    the State (a call with the State makes every caller build all its ~40 views), so its
    code is compiled once, in its own library, not again inside each caller's."""
    compiled: F = _compile(function)
    return compiled
