"""The C entry point for one order command: the per-command door's compiled half.

A numba dispatcher costs about a microsecond per call with array arguments (it checks and
unboxes each one). ``order_entry`` is a ``cfunc`` with a fixed C signature over plain
integers: the caller passes the address of a *context* (an int64 vector, ``Ctx``) that
holds the addresses of the engine's arena and layout, a one-record command buffer, an
event buffer and a summary log, plus the command's fields. The entry writes the record,
runs ``process_batch`` on it, appends the command's events to the event buffer at the
context's cursor and a one-row summary (``Row``) to the log, and returns the row index.

A negative return means nothing was applied: ``NEED_GROWTH`` (a pool must grow: run the
command through ``Engine.process_into``) or ``NEED_ROOM`` (the event buffer or the log is
full: hand the entry fresh ones). ``derivex.door`` is the Python half (the binding, the
fallback and the typed results).

Cost: one ``process_batch`` call on one record plus O(events of the command) for the
summary. Pure: no I/O, no clock (the caller passes ``seq`` and ``ts_ns``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from derivex.core.arena import view_at
from derivex.core.batch_symbol import bind, register
from derivex.core.engine import process_batch
from derivex.core.jit import ENTRY_OPTIONS, kernel
from derivex.core.layout import STATUS_DONE, STATUS_GROW
from derivex.core.records import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, command_array
from derivex.core.summary import CTX_WIDTH, ROW_WIDTH, Ctx, Outcome, Row

NEED_GROWTH = -1
NEED_ROOM = -2

_ACCEPTED = int(EventKind.ACCEPTED)
_FILLED = int(EventKind.FILLED)
_EXPIRED = int(EventKind.EXPIRED)
_CANCEL = int(CommandKind.CANCEL_ORDER)

#: ``process_batch(arena, layout, cmds, start, ev, n)`` as the entry point calls it
#: (C-contiguous arrays, int64 positions): by its C symbol (core/batch_symbol.py): linking
#: its IR into the entry point would compile the whole engine again
BATCH_SIGNATURE = tuple(
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
call_batch = register("derivex_process_batch", process_batch, BATCH_SIGNATURE, __file__)


@kernel
def summarise(ev, start, end, row):
    """Fill the summary ``row`` from the events ``ev[start:end]`` of one order command."""
    row[Row.START] = start
    row[Row.END] = end
    first = ev[start]
    if first["kind"] != _ACCEPTED:
        row[Row.OUTCOME] = Outcome.REJECTED
        row[Row.REASON] = first["reason"]
        row[Row.ORDER_ID] = 0
        row[Row.PRICE_TICKS] = 0
        row[Row.ORDERED_LOTS] = 0
        row[Row.FILLED_LOTS] = 0
        row[Row.NOTIONAL] = 0
        return
    order_id = first["order_id"]
    ordered = first["qty_lots"]
    filled = np.int64(0)
    notional = np.int64(0)
    expired = False
    for k in range(start + 1, end):
        e = ev[k]
        if e["order_id"] != order_id:
            continue
        if e["kind"] == _FILLED:
            filled += e["qty_lots"]
            notional += e["qty_lots"] * e["price_ticks"]
        elif e["kind"] == _EXPIRED:
            expired = True
    if first["command"] == _CANCEL:
        outcome = Outcome.CANCELLED
    elif expired:
        outcome = Outcome.EXPIRED
    elif filled == ordered:
        outcome = Outcome.FILLED
    else:
        outcome = Outcome.RESTING
    row[Row.OUTCOME] = outcome
    row[Row.REASON] = 0
    row[Row.ORDER_ID] = np.int64(order_id)
    row[Row.PRICE_TICKS] = first["price_ticks"]
    row[Row.ORDERED_LOTS] = ordered
    row[Row.FILLED_LOTS] = filled
    row[Row.NOTIONAL] = notional


# inlined at numba IR level into the one entry point: compiled once, with it (a separate
# kernel would be compiled, then linked and optimised again inside the entry point)
@numba.njit(inline="always", **{**ENTRY_OPTIONS, "_nrt": False})
def run_one(ctx, arena, layout, cmds, ev, log):
    """Process the one record in ``cmds``; returns the summary row or NEED_*."""
    row = ctx[Ctx.LOG_NEXT]
    if row >= ctx[Ctx.LOG_CAPACITY]:
        return NEED_ROOM
    start = ctx[Ctx.CURSOR]
    # the compiled batch kernel by its C symbol (core/batch_symbol.py): linking its IR here
    # would compile the whole engine again; int64 positions, its one specialisation
    _, end, status, _ = call_batch(arena, layout, cmds, np.int64(0), ev, start)
    if status != STATUS_DONE:
        return NEED_GROWTH if status == STATUS_GROW else NEED_ROOM
    summarise(ev, start, end, log[row])
    ctx[Ctx.CURSOR] = end
    ctx[Ctx.LOG_NEXT] = row + 1
    return row


# numba's runtime off: the views over the context's addresses (``view_at``) own nothing and
# need no reference counting (numba.carray would need the runtime, and the runtime costs
# reference-count calls on every view)
@numba.njit(inline="always", **{**ENTRY_OPTIONS, "_nrt": False})
def _run(
    ctx_ptr,
    seq,
    ts_ns,
    kind,
    account,
    instrument,
    order_id,
    side,
    order_type,
    tif,
    flags,
    price_ticks,
    qty_lots,
    label,
):
    ctx = view_at(ctx_ptr, 0, CTX_WIDTH, np.int64)
    arena = view_at(ctx[Ctx.ARENA], 0, ctx[Ctx.ARENA_BYTES], np.uint8)
    layout = view_at(ctx[Ctx.LAYOUT], 0, (ctx[Ctx.LAYOUT_ROWS], 3), np.int64)
    cmds = view_at(ctx[Ctx.COMMAND], 0, 1, COMMAND_DTYPE)
    ev = view_at(ctx[Ctx.EVENTS], 0, ctx[Ctx.EVENT_CAPACITY], EVENT_DTYPE)
    log = view_at(ctx[Ctx.LOG], 0, (ctx[Ctx.LOG_CAPACITY], ROW_WIDTH), np.int64)
    c = cmds[0]
    c["seq"] = seq
    c["ts_ns"] = ts_ns
    c["kind"] = kind
    c["side"] = side
    c["order_type"] = order_type
    c["tif"] = tif
    c["flags"] = flags
    c["stp"] = 0
    c["count"] = 0
    c["account"] = account
    c["instrument"] = instrument
    c["order_id"] = order_id
    c["price_ticks"] = price_ticks
    c["qty_lots"] = qty_lots
    c["label"] = label
    return run_one(ctx, arena, layout, cmds, ev, log)


# before the entry point compiles or loads (here, as it is decorated): it calls the symbol
bind("derivex_process_batch")


@numba.cfunc(
    types.int64(
        types.voidptr,  # ctx
        types.int64,  # kind: PLACE_ORDER, CANCEL_ORDER or AMEND_ORDER
        types.int64,  # seq
        types.int64,  # ts_ns
        types.int64,  # account
        types.int64,  # instrument (place)
        types.int64,  # order_id (cancel, amend)
        types.int64,  # side (place)
        types.int64,  # order_type (place)
        types.int64,  # tif (place)
        types.int64,  # flags
        types.int64,  # price_ticks (place, amend)
        types.int64,  # qty_lots (place, amend)
        types.int64,  # label (place: the client label; cancel, amend: the client order id)
    ),
    **{**ENTRY_OPTIONS, "_nrt": False},
)
def order_entry(
    ctx,
    kind,
    seq,
    ts_ns,
    account,
    instrument,
    order_id,
    side,
    order_type,
    tif,
    flags,
    price_ticks,
    qty_lots,
    label,
):
    """One order command through the context ``ctx`` (one entry point for the three
    kinds: each entry point would be a full compile of the engine); returns the summary
    row or NEED_*. Other kinds are processed too (the engine rejects what it must)."""
    return _run(
        ctx,
        seq,
        ts_ns,
        kind,
        account,
        instrument,
        order_id,
        side,
        order_type,
        tif,
        flags,
        price_ticks,
        qty_lots,
        label,
    )


#: C declaration of the entry point (what a binding declares before calling it)
C_DECLARATION = """
int64_t derivex_order(intptr_t ctx, int64_t kind, int64_t seq, int64_t ts_ns,
    int64_t account, int64_t instrument, int64_t order_id, int64_t side, int64_t order_type,
    int64_t tif, int64_t flags, int64_t price_ticks, int64_t qty_lots, int64_t label);
"""
