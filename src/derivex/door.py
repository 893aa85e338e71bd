"""The per-command door: one order command per Python call at a fraction of a microsecond,
through the compiled entry point of ``derivex.core.entry``.

How a call runs: the Python side stamps ``seq`` and ``ts_ns`` (the sequencer's rules) and
calls the entry point through a binding, with the address of a context vector (``Ctx``)
that points at the engine's arena, a one-record command buffer, an event buffer and a
summary log. The entry writes the record, processes it, and returns the row of its summary;
the result (``derivex.results.OrderResult``) holds the log and the row, nothing is copied.

Bindings, fastest first (``BINDINGS``):

- ``"native"``: ``derivex.door_native``, a CPython extension compiled on first use (needs a
  C compiler then), whose vectorcall ``order`` converts the fourteen integers itself; the
  same module gives ``Exchange`` its order methods in C (``OrderMethods.install_native``);
- ``"cffi-api"``: a small C module compiled on first use with cffi in API mode (needs a C
  compiler then; kept in the user cache directory, keyed by its source);
- ``"cffi-abi"``: the entry point called through cffi's ABI mode (no compiler);
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

from derivex.core.engine import Engine, headroom
from derivex.core.records import EVENT_DTYPE, command_array
from derivex.core.summary import CTX_WIDTH, ROW_WIDTH, Ctx
from derivex.results import OrderResult, ResultLog

BINDINGS = ("native", "cffi-api", "cffi-abi")
NEED_GROWTH = -1  # (derivex.core.entry's codes, repeated so that this import compiles nothing)
NEED_ROOM = -2

_ARGUMENTS = (
    "intptr_t ctx, int64_t kind, int64_t seq, int64_t ts_ns, int64_t account, "
    "int64_t instrument, int64_t order_id, int64_t side, int64_t order_type, int64_t tif, "
    "int64_t flags, int64_t price_ticks, int64_t qty_lots, int64_t label"
)
_NAMES = "ctx, kind, seq, ts_ns, account, instrument, order_id, side, order_type, tif, " + (
    "flags, price_ticks, qty_lots, label"
)
_C_DECLARATIONS = f"""
int64_t derivex_order({_ARGUMENTS});
void derivex_bind(intptr_t order);
"""

# the C half of the API-mode binding: forwards each call to the numba entry point whose
# address derivex_bind stored (a direct call from compiled code, no libffi in between)
_C_SOURCE = f"""
#include <stdint.h>
typedef int64_t (*order_t)({_ARGUMENTS});
static order_t order_fn;
void derivex_bind(intptr_t order) {{ order_fn = (order_t)order; }}
int64_t derivex_order({_ARGUMENTS}) {{ return order_fn({_NAMES}); }}
"""

EVENT_CHUNK = 1 << 15  # events per buffer (2 MiB)
LOG_ROWS = 1 << 13  # summary rows per log


class Binding:
    """The entry point as a Python callable (``order``, arguments as ``derivex_order`` in
    ``_C_DECLARATIONS``) and the binding's name."""

    def __init__(self, name: str, order: Callable[..., int]) -> None:
        self.name, self.order = name, order


_loaded: dict[str, Binding | None] = {}
#: why a binding did not load (binding name -> error), for diagnosis
load_errors: dict[str, str] = {}


def load_binding(preferred: str | None = None) -> Binding | None:
    """The fastest binding that loads (or ``preferred``, one of ``BINDINGS``); None when no
    binding can run here. The first call compiles (or loads from the cache) the entry
    point, and for ``cffi-api`` the C module. Never raises: a binding that fails to load
    is skipped."""
    names = (preferred,) if preferred else BINDINGS
    for name in names:
        if name not in _loaded:
            try:
                _loaded[name] = _API[name]()
            except Exception as error:  # no compiler, no cffi, JIT disabled: skip it
                _loaded[name] = None
                load_errors[name] = f"{type(error).__name__}: {error}"
        binding = _loaded[name]
        if binding is not None:
            return binding
    return None


def _entry_address() -> int:
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        raise RuntimeError("the JIT is disabled: no compiled entry point")
    from derivex.core import entry

    address = entry.order_entry.address
    if address is None:
        raise RuntimeError("the entry point did not compile")
    from derivex import door_native

    native = door_native.load()
    if native is not None:  # the C order methods call the entry point through it
        native.bind_entry(int(address))
    return int(address)


def _native() -> Binding:
    from derivex import door_native

    address = _entry_address()
    native = door_native.load()
    if native is None:
        raise RuntimeError(f"the native module did not build: {door_native.load_error}")
    native.bind_entry(address)
    return Binding("native", native.order)


def _abi() -> Binding:
    import cffi

    ffi = cffi.FFI()
    return Binding("cffi-abi", ffi.cast(f"int64_t(*)({_ARGUMENTS})", _entry_address()))


def _api() -> Binding:
    import cffi

    from derivex._kernel_cache import cache_root

    address = _entry_address()
    digest = hashlib.sha256((_C_DECLARATIONS + _C_SOURCE + sys.version).encode()).hexdigest()
    name = f"_derivex_door_{digest[:16]}"
    directory = os.path.join(cache_root(), "door")
    os.makedirs(directory, exist_ok=True)
    built = [f for f in os.listdir(directory) if f.startswith(name) and f.endswith(".so")]
    if built:
        path = os.path.join(directory, built[0])
    else:
        ffi = cffi.FFI()
        ffi.cdef(_C_DECLARATIONS)
        ffi.set_source(name, _C_SOURCE)
        path = ffi.compile(tmpdir=directory)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.lib.derivex_bind(address)
    return Binding("cffi-api", module.lib.derivex_order)


_API: dict[str, Callable[[], Binding]] = {"native": _native, "cffi-api": _api, "cffi-abi": _abi}


class OrderDoor:
    """The context one engine's per-command calls share: buffers, their addresses, and
    the binding. ``bind(engine)`` again after the engine or its arena changed (growth,
    recovery); ``make_room`` when the log or the event buffer is full."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        # the entry point, one attribute away from the hot path
        self.order = binding.order
        self.ctx = np.zeros(CTX_WIDTH, dtype=np.int64)
        self.address = int(self.ctx.ctypes.data)
        self.command = command_array(1)
        self.ctx[Ctx.COMMAND] = self.command.ctypes.data
        self.arena: np.ndarray | None = None
        self.engine: Engine | None = None  # the engine bound (whose arena is self.arena)
        self.event_capacity = EVENT_CHUNK
        self.log = self.fresh_log()

    def bind(self, engine: Engine) -> None:
        """Point the context at ``engine``'s arena and layout. O(1)."""
        arena, layout = engine.arena, engine.layout
        assert arena.flags.c_contiguous and layout.flags.c_contiguous
        self.arena, self.engine = arena, engine
        self._layout = layout  # kept referenced: the context holds its address
        self.ctx[Ctx.ARENA] = arena.ctypes.data
        self.ctx[Ctx.ARENA_BYTES] = arena.shape[0]
        self.ctx[Ctx.LAYOUT] = layout.ctypes.data
        self.ctx[Ctx.LAYOUT_ROWS] = layout.shape[0]

    def fresh_log(self, events: np.ndarray | None = None) -> ResultLog:
        """A new summary log, over ``events`` from the current cursor on (the current
        buffer: only the rows were full) or over a new, empty event buffer of
        ``self.event_capacity`` (``events`` None). The old log and buffer stay with their
        results."""
        if events is None:
            events = np.zeros(self.event_capacity, dtype=EVENT_DTYPE)
            self.ctx[Ctx.EVENTS] = events.ctypes.data
            self.ctx[Ctx.EVENT_CAPACITY] = events.shape[0]
            self.ctx[Ctx.CURSOR] = 0
        log = ResultLog(np.zeros((LOG_ROWS, ROW_WIDTH), dtype=np.int64), events)
        self.ctx[Ctx.LOG] = log.rows.ctypes.data
        self.ctx[Ctx.LOG_CAPACITY] = LOG_ROWS
        self.ctx[Ctx.LOG_NEXT] = 0
        self.log = log
        return log

    def make_room(self, engine: Engine) -> None:
        """After ``NEED_ROOM`` for the command in ``self.command``: a new log if its rows
        are full, else a new event buffer of at least twice the command's worst case (a
        book with many resting orders has a large one: the capacity is kept for the
        calls after). O(1) plus one ``headroom`` call."""
        if self.ctx[Ctx.LOG_NEXT] >= self.ctx[Ctx.LOG_CAPACITY]:
            self.fresh_log(self.log.events)
            return
        _, worst = headroom(engine.state, self.command, 0)
        self.event_capacity = max(self.event_capacity, 2 * int(worst))
        self.fresh_log()

    def slow(self, engine: Engine) -> OrderResult:
        """Run the record the entry point wrote (``self.command``) through the engine's
        Python wrapper (which grows pools and buffers), then re-bind. O(the growth)."""
        events = engine.process(self.command)
        self.bind(engine)
        return OrderResult.from_events(events)


__all__ = ["BINDINGS", "Binding", "OrderDoor", "load_binding"]
