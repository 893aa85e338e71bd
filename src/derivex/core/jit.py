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

**Callee libraries** (``CalleeCodegen``): numba compiles every kernel into a library of its
own, optimises it and turns it into machine code, then links its IR into each caller, where
it is inlined, optimised and compiled again. For a kernel compiled *because another kernel
calls it*, that first machine code never runs (the caller inlines the IR), yet it was most
of a cold compile: each level of the call tree optimised and compiled everything below it
again (a serial cold compile of the engine: 206 s of CPU, 149 s of it LLVM). Such a
kernel's own library is therefore built by a second code generator: no module-level
optimisation and ``-O0`` machine code (the function passes still run, so the IR callers link
is simplified once). Its IR is optimised once, at full level, where it is inlined: in the
library whose machine code runs (``process_batch``, the out-of-line kernels,
the per-command entry). The same kernel called from Python is compiled as before, at full
level, and cached under a key of its own (``_KernelCache``): a callee library is never
loaded for a Python call in another process. Measured: the serial cold compile of the engine
went from 206 to 121 s of CPU (one process; LLVM 149 -> 65 s).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numba
from numba.core import caching, codegen, compiler, errors, types, typing
from numba.core.compiler_lock import global_compiler_lock
from numba.core.compiler_machinery import LoweringPass, register_pass
from numba.core.registry import CPUDispatcher
from numba.core.targetconfig import ConfigStack
from numba.core.typed_passes import AnnotateTypes

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


class CalleeCodegen(codegen.JITCPUCodegen):  # type: ignore[misc]  # numba is untyped
    """The code generator of callee libraries: machine code at ``-O0`` (LLVM's fast
    instruction selection and register allocation), and module passes at ``-O0`` too (they
    still inline ``alwaysinline`` callees). Its ``magic_tuple`` marks what it caches, so
    that numba's cache index keeps callee libraries apart from full ones."""

    def _customize_tm_options(self, options: dict[str, Any]) -> None:
        super()._customize_tm_options(options)
        options["opt"] = 0

    def _module_pass_manager(self, **options: Any) -> Any:
        options.pop("cost", None)
        return super()._module_pass_manager(**{**options, "opt": 0})

    def magic_tuple(self) -> tuple[Any, ...]:
        return (*super().magic_tuple(), "derivex-callee")


_callee_codegen: list[CalleeCodegen] = []  # one per process, made on first use
# the compiles in progress, innermost last (numba compiles under its global compiler lock,
# one thread at a time; these stacks are changed only under it):
_modes: list[tuple[Any, bool]] = []  # (py_func, as a callee) per kernel compile
_forced: list[bool | None] = []  # True (as callees), False (own code), None (as numba nests)


def callee_codegen() -> CalleeCodegen:
    if not _callee_codegen:
        _callee_codegen.append(CalleeCodegen("derivex-callees"))
    return _callee_codegen[0]


@contextlib.contextmanager
def _forcing(as_callees: bool | None) -> Iterator[None]:
    with global_compiler_lock:
        _forced.append(as_callees)
        try:
            yield
        finally:
            _forced.pop()


def as_callees() -> contextlib.AbstractContextManager[None]:
    """Compile a force-inlined kernel compiled in this block (not inside another's
    compile) as a callee: ``scripts/warm.py`` compiles the engine's command stages ahead of
    ``process_batch``, which then loads them."""
    return _forcing(True)


def own_code() -> contextlib.AbstractContextManager[None]:
    """Compile a kernel compiled in this block (not inside another's compile) for its own
    machine code, at full level, even while another compile is in progress: a kernel bound
    to a C symbol (``core/batch_symbol.py``)."""
    return _forcing(False)


def _compiling_as_callee(py_func: Any) -> bool:
    """Whether the innermost kernel compile in progress is ``py_func``'s, as a callee."""
    return bool(_modes) and _modes[-1][0] is py_func and _modes[-1][1]


@register_pass(mutates_CFG=False, analysis_only=True)
class _CalleeLibrary(LoweringPass):  # type: ignore[misc]  # numba is untyped
    """Before lowering: a kernel compiled as a callee gets a library of ``CalleeCodegen``
    (lowering makes one of the target's code generator otherwise)."""

    _name = "derivex_callee_library"

    def __init__(self) -> None:  # (abstract in numba's pass classes)
        LoweringPass.__init__(self)

    def run_pass(self, state: Any) -> bool:
        if state.library is None and _compiling_as_callee(state.func_id.func):
            state.library = callee_codegen().create_library(state.func_id.func_qualname)
            state.library.enable_object_caching()
        return False


class _KernelCompiler(compiler.CompilerBase):  # type: ignore[misc]  # numba is untyped
    """numba's nopython pipeline with ``_CalleeLibrary`` before lowering."""

    def define_pipelines(self) -> list[Any]:
        pipeline = compiler.DefaultPassBuilder.define_nopython_pipeline(self.state)
        pipeline.add_pass_after(_CalleeLibrary, AnnotateTypes)
        pipeline.finalize()
        return [pipeline]


class _KernelCache(caching.FunctionCache):  # type: ignore[misc]  # numba is untyped
    """numba's cache of a force-inlined kernel: a compile as a callee looks up (and saves)
    the callee library's key, any other compile the full library's."""

    def _index_key(self, sig: Any, codegen: Any) -> Any:
        if _compiling_as_callee(self._py_func):
            codegen = callee_codegen()
        return super()._index_key(sig, codegen)


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

    def enable_caching(self) -> None:
        if self.targetoptions.get("forceinline"):
            self._cache = _KernelCache(self.py_func)
        else:
            super().enable_caching()

    def compile(self, sig: Any) -> Any:
        """numba's compile, as a callee (``CalleeCodegen``) when this kernel is
        force-inlined and another compile is in progress (its caller's), unless
        ``own_code``/``as_callees`` say otherwise."""
        with global_compiler_lock:
            as_callee = False
            if self.targetoptions.get("forceinline"):
                as_callee = len(ConfigStack()) > 0
                if _forced and _forced[-1] is not None:
                    as_callee = _forced[-1]
            _modes.append((self.py_func, as_callee))
            _forced.append(None)  # (the kernels compiled inside are its callees)
            try:
                return super().compile(sig)
            finally:
                _forced.pop()
                _modes.pop()

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
        pipeline_class=_KernelCompiler,
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
