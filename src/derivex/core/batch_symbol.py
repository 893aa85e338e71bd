"""Kernels called by a fixed C symbol: a compiled caller then calls the kernel's own machine
code instead of linking its IR (and optimising and compiling it again).

numba links the IR of every kernel a kernel calls into the caller's library, then optimises
the whole and turns it into machine code once more: a large kernel called from two places
is compiled two or three times (the per-command entry point linking ``process_batch`` was a
second full compile of the engine; the out-of-line stages were compiled on their own and
again inside ``process_batch``). A kernel registered here (``register``: a C name, the
kernel, its one signature) is called through the C-ABI wrapper numba builds for every
compiled kernel (``cfunc.<mangled name>``). numba's mangled names carry a per-process
counter, so a cached library cannot name that wrapper: it names the fixed symbol, and
``bind`` makes LLVM resolve that symbol, in each process, to the wrapper of the kernel
compiled (or loaded from the cache) for its signature.

When symbols are bound: the typing of a call binds its symbol (compiling the kernel if it is
not cached); before numba loads cached code, ``_kernel_cache.BEFORE_LOAD`` binds every
symbol registered by a module that the loaded kernel's module imports (directly or through
others: only such code can call it), in registration order (a module registers after those
it imports, so a symbol is bound before any symbol whose kernel calls it). ``link`` binds
them all (``scripts/warm.py``).

Cost: one call with the arguments' words (an array is a handful) instead of the callee
inlined; the callee rebuilds what it needs (``arena.unpack``). Errors: a call whose
arguments cannot be converted to the signature is a typing error (integers are cast to
the declared width, arrays to a declared layout ``A`` or read-only type, a read-only batch
of commands to ``COMMANDS``; anything else would be a silent ABI break). With
``NUMBA_DISABLE_JIT`` a call is the plain function and nothing is bound.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, errors, types
from numba.extending import intrinsic

from derivex.core.jit import own_code
from derivex.core.records import EVENT_DTYPE, command_array

# imported by name, not by an import statement: the kernels' cache keys digest the modules
# they import (``_kernel_cache``), and this one is no input of any kernel
_kernel_cache: Any = importlib.import_module("derivex._kernel_cache")
_NO_JIT = bool(getattr(numba.config, "DISABLE_JIT", False))

#: the argument types of the out-of-line stages and commands: the arena, its layout (any
#: layout, read only: a snapshot's may be a read-only view; only ``unpack`` reads it), the
#: event buffer, the commands (C-contiguous, as the batch kernel's order paths take them, so
#: the command kernels they share compile once; a read-only batch is accepted: no kernel
#: writes a command, and the batch kernel is compiled for read-only batches too)
ARENA = numba.typeof(np.zeros(1, np.uint8))
LAYOUT = types.Array(types.int64, 2, "A", readonly=True)
EVENTS = numba.typeof(np.zeros(1, EVENT_DTYPE))
COMMANDS = numba.typeof(command_array(1))
I64 = types.int64
#: the signature of a command kernel called by symbol: (arena, layout, ev, n, cmds, i)
COMMAND_SIGNATURE = (ARENA, LAYOUT, EVENTS, I64, COMMANDS, I64)
_READ_ONLY_INPUTS = (COMMANDS,)  # declared mutable, passed read-only as well


@dataclass
class Symbol:
    """A kernel callable by the C symbol ``name`` for ``signature``; ``where``: the file of
    the module that registered it (code that can call it imports that module)."""

    name: str
    kernel: Any
    signature: tuple[Any, ...]
    where: str
    returns: Any = None  # the numba return type, once bound in this process


SYMBOLS: dict[str, Symbol] = {}  # by name, in registration order
_binding: set[str] = set()  # names being bound in this process (a load inside skips them)


def register(name: str, kernel: Any, signature: tuple[Any, ...], where: str) -> Any:
    """Register ``kernel`` under the C symbol ``name`` for ``signature`` (numba types),
    from the module whose file is ``where`` (its ``__file__``: the callers import it), and
    return what a kernel calls it with: ``caller(*arguments)`` (the kernel itself with
    ``NUMBA_DISABLE_JIT``). Raises ValueError for a name registered for another kernel."""
    known = SYMBOLS.get(name)
    if known is not None and known.kernel is not kernel:
        raise ValueError(f"symbol {name} is registered for another kernel")
    SYMBOLS[name] = Symbol(name, kernel, tuple(signature), where)
    return kernel if _NO_JIT else _caller(name)


def bind(name: str) -> Any:
    """Compile (or load) the kernel of ``name`` for its signature and bind the symbol to
    its C wrapper in this process; returns its numba return type. Idempotent; the first
    call costs the kernel's compile (or its cache load)."""
    entry = SYMBOLS[name]
    if entry.returns is not None or _NO_JIT:
        return entry.returns
    _binding.add(name)
    try:
        dispatcher: Any = entry.kernel
        with own_code():  # its machine code is what the symbol calls
            dispatcher.compile(entry.signature)
        result = dispatcher.overloads[entry.signature]
        address = result.library.get_pointer_to_function(result.fndesc.llvm_cfunc_wrapper_name)
        if not address:
            raise RuntimeError(f"{name}: the kernel has no C wrapper to call")
        llvm.add_symbol(name, address)
        entry.returns = result.signature.return_type
    finally:
        _binding.discard(name)
    return entry.returns


def link() -> None:
    """Bind every registered symbol (in registration order)."""
    for name in list(SYMBOLS):
        bind(name)


def _before_load(source: Any) -> None:
    """Bind the symbols that cached code of the kernels in the file ``source`` may call."""
    for entry in list(SYMBOLS.values()):
        if (
            entry.returns is None
            and entry.name not in _binding
            and _kernel_cache.imports(source, entry.where)
        ):
            bind(entry.name)


def _convertible(given: Any, declared: Any) -> bool:
    """Whether an argument of type ``given`` may be passed where ``declared`` is: the same
    type; an integer for an integer (cast); an array of the same dtype and dimensions in a
    layout the declared one covers, writable where it is declared writable (except the
    ``_READ_ONLY_INPUTS``), in any alignment (passed as it is: one data model for all)."""
    if given == declared:
        return True
    if isinstance(declared, types.Integer):
        return isinstance(given, types.Integer | types.Boolean | types.IntEnumMember)
    if isinstance(declared, types.Array) and isinstance(given, types.Array):
        return (
            given.dtype == declared.dtype
            and given.ndim == declared.ndim
            and declared.layout in (given.layout, "A")
            and (given.mutable or not declared.mutable or declared in _READ_ONLY_INPUTS)
        )
    return False


def _caller(name: str) -> Any:
    """The intrinsic that calls symbol ``name`` with its arguments cast to the signature."""

    def call(typingctx: Any, *arguments: Any) -> Any:
        declared = SYMBOLS[name].signature
        if len(arguments) != len(declared) or not all(
            _convertible(given, want) for given, want in zip(arguments, declared, strict=True)
        ):
            raise errors.TypingError(f"{name} takes {declared}, got {arguments}")
        returned = bind(name)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            values = cgutils.unpack_tuple(builder, args[0], len(arguments))
            cast = [
                value
                if isinstance(want, types.Array)
                else context.cast(builder, value, given, want)
                for value, given, want in zip(values, arguments, declared, strict=True)
            ]
            # the type numba gives a kernel's C wrapper: data-model values in, a value out
            function_type = ir.FunctionType(
                context.get_value_type(returned),
                [context.get_value_type(want) for want in declared],
            )
            function = cgutils.get_or_insert_function(builder.module, function_type, name)
            return builder.call(function, cast)

        return returned(types.StarArgTuple.from_types(arguments)), codegen

    call.__name__ = call.__qualname__ = f"call_{name}"  # (numba names the intrinsic so)
    return intrinsic(call)


_kernel_cache.install()
if _before_load not in _kernel_cache.BEFORE_LOAD:
    _kernel_cache.BEFORE_LOAD.append(_before_load)
