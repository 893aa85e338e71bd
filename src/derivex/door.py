"""The per-command door: one order command per Python call at a fraction of a microsecond,
through the compiled entry points of ``derivex.core.entry``.

How a call runs: the Python side stamps ``seq`` and ``ts_ns`` (the sequencer's rules) and
calls the entry point through a binding, with the address of a context vector (``Ctx``)
that points at the engine's arena, a one-record command buffer, an event buffer and a
summary log. The entry writes the record, processes it, and returns the row of its summary;
the result (``derivex.results.OrderResult``) holds the log and the row, nothing is copied.

Bindings, fastest first (``BINDINGS``):

- ``"cffi-api"``: a small C module compiled on first use with cffi in API mode (needs a C
  compiler then; kept in the user cache directory, keyed by its source);
- ``"cffi-abi"``: the entry points called through cffi's ABI mode (no compiler);
- ``None``: no binding (cffi missing, or ``NUMBA_DISABLE_JIT``): the caller uses the slow
  path, ``Exchange.submit``.

A command that needs a pool to grow runs through ``Engine.process_into`` instead (the same
result type); a full event buffer or log is replaced by a fresh one (earlier results keep
theirs). Identical results and state hashes on every path (tests/test_door.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable

import numpy as np

from derivex.core.engine import Engine
from derivex.core.records import EVENT_DTYPE, command_array
from derivex.core.summary import CTX_WIDTH, ROW_WIDTH, Ctx
from derivex.results import OrderResult, ResultLog

BINDINGS = ("cffi-api", "cffi-abi")
NEED_GROWTH = -1  # (derivex.core.entry's codes, repeated so that this import compiles nothing)
NEED_ROOM = -2

_C_DECLARATIONS = """
int64_t derivex_place(intptr_t ctx, int64_t seq, int64_t ts_ns, int64_t account,
    int64_t instrument, int64_t side, int64_t order_type, int64_t tif, int64_t flags,
    int64_t price_ticks, int64_t qty_lots, int64_t label);
int64_t derivex_cancel(intptr_t ctx, int64_t seq, int64_t ts_ns, int64_t account,
    int64_t order_id, int64_t flags, int64_t label);
int64_t derivex_amend(intptr_t ctx, int64_t seq, int64_t ts_ns, int64_t account,
    int64_t order_id, int64_t flags, int64_t label, int64_t price_ticks, int64_t qty_lots);
void derivex_bind(intptr_t place, intptr_t cancel, intptr_t amend);
"""

# the C half of the API-mode binding: forwards each call to the numba entry point whose
# address derivex_bind stored (a direct call from compiled code, no libffi in between)
_C_SOURCE = """
#include <stdint.h>
typedef int64_t (*place_t)(intptr_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t);
typedef int64_t (*cancel_t)(intptr_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
typedef int64_t (*amend_t)(intptr_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t);
static place_t place_fn;
static cancel_t cancel_fn;
static amend_t amend_fn;
void derivex_bind(intptr_t place, intptr_t cancel, intptr_t amend) {
    place_fn = (place_t)place; cancel_fn = (cancel_t)cancel; amend_fn = (amend_t)amend;
}
int64_t derivex_place(intptr_t ctx, int64_t seq, int64_t ts_ns, int64_t account,
    int64_t instrument, int64_t side, int64_t order_type, int64_t tif, int64_t flags,
    int64_t price_ticks, int64_t qty_lots, int64_t label) {
    return place_fn(ctx, seq, ts_ns, account, instrument, side, order_type, tif, flags,
        price_ticks, qty_lots, label);
}
int64_t derivex_cancel(intptr_t ctx, int64_t seq, int64_t ts_ns, int64_t account,
    int64_t order_id, int64_t flags, int64_t label) {
    return cancel_fn(ctx, seq, ts_ns, account, order_id, flags, label);
}
int64_t derivex_amend(intptr_t ctx, int64_t seq, int64_t ts_ns, int64_t account,
    int64_t order_id, int64_t flags, int64_t label, int64_t price_ticks, int64_t qty_lots) {
    return amend_fn(ctx, seq, ts_ns, account, order_id, flags, label, price_ticks, qty_lots);
}
"""

EVENT_CHUNK = 1 << 15  # events per buffer (2 MiB)
LOG_ROWS = 1 << 13  # summary rows per log


class Binding:
    """The three entry points as Python callables (``place``, ``cancel``, ``amend``) and
    the binding's name."""

    def __init__(self, name: str, place: Callable, cancel: Callable, amend: Callable) -> None:
        self.name, self.place, self.cancel, self.amend = name, place, cancel, amend


_loaded: dict[str, Binding | None] = {}


def load_binding(preferred: str | None = None) -> Binding | None:
    """The fastest binding that loads (or ``preferred``, one of ``BINDINGS``); None when no
    binding can run here. The first call compiles (or loads from the cache) the entry
    points, and for ``cffi-api`` the C module. Never raises: a binding that fails to load
    is skipped."""
    names = (preferred,) if preferred else BINDINGS
    for name in names:
        if name not in _loaded:
            try:
                _loaded[name] = _API[name]()
            except Exception:  # no compiler, no cffi, JIT disabled: skip this binding
                _loaded[name] = None
        binding = _loaded[name]
        if binding is not None:
            return binding
    return None


def _entry_addresses() -> tuple[int, int, int]:
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        raise RuntimeError("the JIT is disabled: no compiled entry points")
    from derivex.core import entry

    addresses = (entry.place_entry.address, entry.cancel_entry.address, entry.amend_entry.address)
    if any(address is None for address in addresses):
        raise RuntimeError("an entry point did not compile")
    return int(addresses[0]), int(addresses[1]), int(addresses[2])  # type: ignore[arg-type]


def _abi() -> Binding:
    import cffi

    ffi = cffi.FFI()
    place, cancel, amend = _entry_addresses()
    i8 = "int64_t"
    return Binding(
        "cffi-abi",
        ffi.cast(f"{i8}(*)(intptr_t, {', '.join([i8] * 11)})", place),
        ffi.cast(f"{i8}(*)(intptr_t, {', '.join([i8] * 6)})", cancel),
        ffi.cast(f"{i8}(*)(intptr_t, {', '.join([i8] * 8)})", amend),
    )


def _api() -> Binding:
    import cffi

    from derivex._kernel_cache import cache_root

    place, cancel, amend = _entry_addresses()
    digest = hashlib.sha256((_C_DECLARATIONS + _C_SOURCE + sys.version).encode()).hexdigest()
    name = f"_derivex_door_{digest[:16]}"
    directory = os.path.join(cache_root(), "door")
    os.makedirs(directory, exist_ok=True)
    built = [f for f in os.listdir(directory) if f.startswith(name) and f.endswith(".so")]
    if not built:
        ffi = cffi.FFI()
        ffi.cdef(_C_DECLARATIONS)
        ffi.set_source(name, _C_SOURCE)
        path = ffi.compile(tmpdir=directory)
    else:
        path = os.path.join(directory, built[0])
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lib = module.lib
    lib.derivex_bind(place, cancel, amend)
    return Binding("cffi-api", lib.derivex_place, lib.derivex_cancel, lib.derivex_amend)


_API: dict[str, Callable[[], Binding]] = {"cffi-api": _api, "cffi-abi": _abi}


class OrderDoor:
    """The context one engine's per-command calls share: buffers, their addresses, and
    the binding. ``bind(engine)`` again after the engine or its arena changed (growth,
    recovery); ``fresh_log`` when the log or the event buffer is full."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.ctx = np.zeros(CTX_WIDTH, dtype=np.int64)
        self.address = int(self.ctx.ctypes.data)
        self.command = command_array(1)
        self.ctx[Ctx.COMMAND] = self.command.ctypes.data
        self.arena: np.ndarray | None = None
        self.log = self.fresh_log()

    def bind(self, engine: Engine) -> None:
        """Point the context at ``engine``'s arena and layout. O(1)."""
        arena, layout = engine.arena, engine.layout
        assert arena.flags.c_contiguous and layout.flags.c_contiguous
        self.arena = arena
        self._layout = layout  # kept referenced: the context holds its address
        self.ctx[Ctx.ARENA] = arena.ctypes.data
        self.ctx[Ctx.ARENA_BYTES] = arena.shape[0]
        self.ctx[Ctx.LAYOUT] = layout.ctypes.data
        self.ctx[Ctx.LAYOUT_ROWS] = layout.shape[0]

    def fresh_log(self) -> ResultLog:
        """A new summary log and event buffer (the old ones stay with their results)."""
        log = ResultLog(
            np.zeros((LOG_ROWS, ROW_WIDTH), dtype=np.int64),
            np.zeros(EVENT_CHUNK, dtype=EVENT_DTYPE),
        )
        self.ctx[Ctx.EVENTS] = log.events.ctypes.data
        self.ctx[Ctx.EVENT_CAPACITY] = EVENT_CHUNK
        self.ctx[Ctx.CURSOR] = 0
        self.ctx[Ctx.LOG] = log.rows.ctypes.data
        self.ctx[Ctx.LOG_CAPACITY] = LOG_ROWS
        self.ctx[Ctx.LOG_NEXT] = 0
        self.log = log
        return log

    def slow(self, engine: Engine) -> OrderResult:
        """Run the record the entry point wrote (``self.command``) through the engine's
        Python wrapper (which grows pools and buffers), then re-bind. O(the growth)."""
        events = engine.process(self.command)
        self.bind(engine)
        return OrderResult.from_events(events)


__all__ = ["BINDINGS", "Binding", "OrderDoor", "load_binding"]
