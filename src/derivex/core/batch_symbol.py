"""``process_batch`` called by a fixed C symbol, so that a compiled caller does not link
(and optimise and compile again) the whole engine.

numba links the IR of every kernel a kernel calls into the caller's library, then optimises
it and turns it into machine code once more: the per-command entry point
(``core/entry.py``), which calls ``process_batch``, was a second full compile of the engine
(17% of a cold start, measured). ``call_batch`` calls the already compiled
``process_batch`` instead, through the C-ABI wrapper numba builds for every compiled kernel
(``cfunc.<mangled name>``). numba's mangled names carry a per-process counter, so a cached
library cannot name that wrapper; it names ``derivex_process_batch`` (``SYMBOL``) and
``link`` binds that symbol, in each process, to the wrapper of ``process_batch`` compiled (or
loaded from the cache) for ``SIGNATURE``.

Cost: one call with the flattened arguments (tens of machine words) instead of the engine
inlined into the caller. Errors: ``call_batch`` is a typing error for arguments other than
``SIGNATURE`` (a mismatch would be a silent ABI break); a library that calls it must be
compiled or loaded after ``link`` (else LLVM reports the symbol unresolved), which is why
the typing of ``call_batch`` runs ``link`` itself and callers run it before a cached caller
loads. With ``NUMBA_DISABLE_JIT`` ``call_batch`` is ``process_batch`` and ``link`` does
nothing.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, errors
from numba.extending import intrinsic

from derivex.core.engine import process_batch
from derivex.core.records import EVENT_DTYPE, command_array

SYMBOL = "derivex_process_batch"

#: ``process_batch(arena, layout, cmds, start, ev, n)`` as ``Engine.process_into`` and the
#: entry point call it (C-contiguous arrays, int64 positions)
SIGNATURE = tuple(
    numba.typeof(value)
    for value in (
        np.zeros(1, np.uint8),
        np.zeros((1, 3), np.int64),
        command_array(1),
        np.int64(0),
        np.zeros(1, EVENT_DTYPE),
        np.int64(0),
    )
)

_linked: list[Any] = []  # the return type, once linked
_NO_JIT = bool(getattr(numba.config, "DISABLE_JIT", False))


def link() -> Any:
    """Compile (or load) ``process_batch`` for ``SIGNATURE`` and bind ``SYMBOL`` to its C
    wrapper in this process; returns its numba return type. Idempotent; the first call
    costs the engine's compile (or its cache load)."""
    if _linked or _NO_JIT:
        return _linked[0] if _linked else None
    dispatcher: Any = process_batch
    dispatcher.compile(SIGNATURE)
    result = dispatcher.overloads[SIGNATURE]
    address = result.library.get_pointer_to_function(result.fndesc.llvm_cfunc_wrapper_name)
    if not address:
        raise RuntimeError("process_batch has no C wrapper to call")
    llvm.add_symbol(SYMBOL, address)
    _linked.append(result.signature.return_type)
    return _linked[0]


@intrinsic
def _call_batch(typingctx, arena, layout, cmds, start, ev, n):
    """``process_batch(...)`` through ``SYMBOL``."""
    arguments = (arena, layout, cmds, start, ev, n)
    if arguments != SIGNATURE:
        raise errors.TypingError(f"call_batch takes {SIGNATURE}, got {arguments}")
    returned = link()

    def codegen(context, builder, signature, args):
        # the type numba gives a kernel's C wrapper: data-model values in, a value out
        function_type = ir.FunctionType(
            context.get_value_type(returned),
            [context.get_value_type(argument) for argument in signature.args],
        )
        function = cgutils.get_or_insert_function(builder.module, function_type, SYMBOL)
        return builder.call(function, args)

    return returned(*arguments), codegen


call_batch = process_batch if _NO_JIT else _call_batch
