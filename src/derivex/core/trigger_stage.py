"""The trigger stage that runs after every command (docs/conditional-orders.md): the
cancellations the command implies, the evaluation of the trigger books its events moved,
and the firing of the queue under the per-command cap, each fired trigger spawning a new
order. The commands (PLACE_TRIGGER, cancelling a trigger order) are in ``triggers``.

Cost: O(events of the command) when no trigger order exists (last prices only); otherwise
see ``trigger_book``, plus the matching of each spawned order.
"""

from __future__ import annotations

import numpy as np

from derivex.core.arena import unpack
from derivex.core.batch_symbol import ARENA, EVENTS, I64, LAYOUT, register
from derivex.core.config import (
    P_GAS_MAX,
    P_GAS_PER_FILL,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
)
from derivex.core.emit import order_accepted, set_label
from derivex.core.jit import cold_kernel, inline_kernel, kernel
from derivex.core.layout import (
    NIL,
    STATUS_DONE,
    STATUS_EVENTS,
    STATUS_GROW,
    Counter,
    Ins4,
    Order4,
    Order8,
)
from derivex.core.link_pass import link_pass, link_room
from derivex.core.market_data import flush
from derivex.core.matching import match
from derivex.core.order_validation import validate_place_terms
from derivex.core.orders import finish_incoming
from derivex.core.pools import free_capacity, order_alloc, order_id_of, position_get_or_create
from derivex.core.records import (
    CommandKind,
    EventKind,
    IndexStatus,
    InstrumentStatus,
    LiquidationStage,
    OrderType,
    Reason,
    TimeInForce,
    TriggerSource,
)
from derivex.core.trigger_book import (
    collect,
    dequeue,
    enqueue_crossed,
    evaluate,
    sort_crossed,
    trigger_free,
    trigger_id,
)
from derivex.core.trigger_layout import SOURCES, Trig8, TrigBook, TrigMeta
from derivex.core.triggers import remove_trigger, trigger_event


@kernel
def _cancel_matching(st, ev, n, seq, account, instrument, reason):
    k = collect(st, account, instrument)
    for j in range(k):
        n = remove_trigger(st, ev, n, seq, st.trg_scratch[j], reason)
    return n


@kernel
def _cancellations(st, ev, n, lo, hi, seq):
    """Pass 1 over a command's events: cancel the triggers that liquidation, close, expiry,
    cancel-all and the kill switch (BLOCK_ACCOUNT) concern."""
    for j in range(lo, hi):
        e = ev[j]
        kind = e["kind"]
        if kind == EventKind.LIQUIDATION_PROGRESSED and e["status"] == LiquidationStage.STARTED:
            n = _cancel_matching(
                st, ev, n, seq, np.int64(e["account"]), -1, Reason.CANCEL_LIQUIDATION
            )
        elif kind == EventKind.INSTRUMENT_STATUS_CHANGED:
            if e["status"] == InstrumentStatus.CLOSED:
                n = _cancel_matching(
                    st, ev, n, seq, -1, np.int64(e["instrument"]), Reason.CANCEL_INSTRUMENT_CLOSED
                )
            elif e["status"] == InstrumentStatus.SETTLED:
                n = _cancel_matching(
                    st, ev, n, seq, -1, np.int64(e["instrument"]), Reason.CANCEL_EXPIRED
                )
        elif kind == EventKind.ACCEPTED and e["command"] == CommandKind.CANCEL_ALL:
            n = _cancel_matching(st, ev, n, seq, np.int64(e["account"]), -1, Reason.CANCEL_ALL)
        elif kind == EventKind.ACCEPTED and e["command"] == CommandKind.CANCEL_ALL_INSTRUMENT:
            n = _cancel_matching(
                st, ev, n, seq, np.int64(e["account"]), np.int64(e["instrument"]), Reason.CANCEL_ALL
            )
        elif kind == EventKind.ACCEPTED and e["command"] == CommandKind.BLOCK_ACCOUNT:
            # the kill switch: untriggered and queued triggers go with the resting orders
            n = _cancel_matching(
                st, ev, n, seq, np.int64(e["account"]), -1, Reason.CANCEL_ACCOUNT_BLOCKED
            )
    return n


@kernel
def _crossings(st, ev, lo, hi):
    """Pass 2: move the sources the events name, evaluate their books, and queue what
    crossed in time priority."""
    k = 0
    for j in range(lo, hi):
        e = ev[j]
        kind = e["kind"]
        if kind == EventKind.FILLED:
            instrument = np.int64(e["instrument"])
            price = e["price_ticks"]
            st.trg_book[instrument * SOURCES + TriggerSource.LAST, TrigBook.LAST_PRICE] = price
            k = evaluate(st, instrument, TriggerSource.LAST, price, k)
        elif kind == EventKind.MARK_CHANGED:
            k = evaluate(st, np.int64(e["instrument"]), TriggerSource.MARK, e["price_ticks"], k)
        elif kind == EventKind.INDEX_CHANGED and e["status"] == IndexStatus.VALID:
            underlying = e["instrument"]
            for instrument in range(st.counters[Counter.INSTRUMENT_HWM]):
                if st.ins_i4[instrument, Ins4.UNDERLYING] == underlying:
                    k = evaluate(st, instrument, TriggerSource.INDEX, e["price_ticks"], k)
    if k > 1:
        sort_crossed(st, k)
    enqueue_crossed(st, k)


@kernel
def _spawn_room(st, slot):
    """``(units, events)`` a spawn needs: pool growth (0: none) and event room."""
    c_ = st.counters
    need = 0
    capacity = st.ord_label.shape[0]
    if (
        free_capacity(capacity, c_[Counter.ORDER_HWM], c_[Counter.ORDER_FREE_TOP]) < 1
        and capacity < st.params[P_MAX_ORDERS]
    ):
        need = 1
    capacity = st.lvl_free.shape[0]
    if (
        free_capacity(capacity, c_[Counter.LEVEL_HWM], c_[Counter.LEVEL_FREE_TOP]) < 1
        and capacity < st.params[P_MAX_LEVELS]
    ):
        need = 1
    capacity = st.pos_free.shape[0]
    if (
        free_capacity(capacity, c_[Counter.POSITION_HWM], c_[Counter.POSITION_FREE_TOP]) < 1
        and capacity < st.params[P_MAX_POSITIONS]
    ):
        need = 1
    instrument = st.trg_i8[slot, Trig8.INSTRUMENT]
    row = instrument * 2 + ((st.trg_i8[slot, Trig8.SPEC] >> 16) & 1)
    if (
        st.ladder_len[row] + 1 > st.ladder_price.shape[1]
        and st.ladder_price.shape[1] < st.params[P_MAX_LEVELS_PER_SIDE]
    ):
        need = 1
    resting = np.int64(st.ins_i4[instrument, Ins4.RESTING])
    per_fill = st.params[P_GAS_PER_FILL]
    if per_fill > 0:
        bound = st.params[P_GAS_MAX] // per_fill + 1
        if bound < resting:
            resting = bound
    return need, 10 + 5 * resting


@kernel
def spawn(st, ev, n, seq, slot):
    """Fire the dequeued trigger ``slot``: TRIGGER_FIRED, then the new order placed as a
    PLACE_ORDER with the trigger's terms (gas prepaid), or only TRIGGER_FIRED with the
    reason the new order was rejected."""
    account = st.trg_i8[slot, Trig8.ACCOUNT]
    instrument = st.trg_i8[slot, Trig8.INSTRUMENT]
    spec = st.trg_i8[slot, Trig8.SPEC]
    side = (spec >> 16) & 1
    order_type = (spec >> 4) & 1
    tif = (spec >> 5) & 3
    flags = (spec >> 8) & 0xFF
    lots = st.trg_i8[slot, Trig8.QTY]
    limit = st.trg_i8[slot, Trig8.PRICE]
    label = st.trg_label[slot]
    tid = trigger_id(st, slot)
    crossed_at = st.trg_i8[slot, Trig8.CROSSED]
    trigger_free(st, slot)  # its place under the open-order cap passes to the new order
    reason, price, qty, tif, sweep, position = validate_place_terms(
        st, account, instrument, side, order_type, tif, flags, lots, limit, True, label
    )
    if reason != Reason.OK:
        return trigger_event(
            ev,
            n,
            seq,
            EventKind.TRIGGER_FIRED,
            side,
            reason,
            spec,
            account,
            instrument,
            tid,
            crossed_at,
            lots,
            0,
            label,
        )
    is_market = order_type == OrderType.MARKET
    resting = (not is_market) and tif == TimeInForce.GTC
    if position == NIL:
        position = position_get_or_create(st, account, instrument)
    order = order_alloc(st)
    st.ord_i8[order, Order8.PRICE_TICKS] = price
    st.ord_i8[order, Order8.QTY_LOTS] = qty
    st.ord_i4[order, Order4.POSITION] = position
    st.ord_i4[order, Order4.META] = side | (flags << 1)
    st.ord_label[order] = label
    oid = order_id_of(st, order)
    n = trigger_event(
        ev,
        n,
        seq,
        EventKind.TRIGGER_FIRED,
        side,
        0,
        spec,
        account,
        instrument,
        tid,
        crossed_at,
        qty,
        oid,
        label,
    )
    n = order_accepted(
        ev, n, seq, CommandKind.PLACE_TRIGGER, side, 0, account, instrument, oid, price, qty
    )
    set_label(ev, n, label)
    ev[n - 1]["a"] = tid
    n, rem, stopped = match(
        st,
        ev,
        n,
        seq,
        CommandKind.PLACE_TRIGGER,
        instrument,
        side,
        price,
        sweep,
        qty,
        order,
        position,
        account,
    )
    return finish_incoming(
        st,
        ev,
        n,
        seq,
        CommandKind.PLACE_TRIGGER,
        order,
        instrument,
        side,
        price,
        is_market,
        resting,
        rem,
        qty,
        stopped,
        account,
        position,
    )


@kernel
def trigger_command_start(st, n, kind):
    """Before a command: its events start at ``n`` (unless a TIME command resumes)."""
    if kind != CommandKind.ADVANCE_TIME or st.counters[Counter.TIME_PHASE] == 0:
        st.trg_meta[TrigMeta.SCAN_FROM] = n


@kernel
def trigger_command_end(st, seq, n):
    """After a command: the trigger stage is due on its events."""
    m = st.trg_meta
    m[TrigMeta.SCAN_TO] = n
    m[TrigMeta.SCAN_SEQ] = seq
    m[TrigMeta.SCAN_DUE] = 1


@kernel
def trigger_stage(st, ev, n, arena, layout):
    """The trigger stage after a command (the batch loop runs it before the next command
    and at the end of the batch). Returns ``(n, status, need)``; on GROW / EVENTS the loop
    returns and the stage resumes where it stopped. Without any trigger order only the last
    trade prices move (a short loop over the command's events, inlined); the full stage is
    a call of its own by its C symbol, on ``arena`` and ``layout`` (``st``'s memory:
    ``core/batch_symbol.py``), so it costs the plain path nothing."""
    m = st.trg_meta
    if m[TrigMeta.LIVE] == 0 and m[TrigMeta.QUEUE_LEN] == 0:
        if m[TrigMeta.SCAN_DUE] != 0:
            for j in range(m[TrigMeta.SCAN_FROM], m[TrigMeta.SCAN_TO]):
                if ev[j]["kind"] == EventKind.FILLED:
                    row = np.int64(ev[j]["instrument"]) * SOURCES + TriggerSource.LAST
                    st.trg_book[row, TrigBook.LAST_PRICE] = ev[j]["price_ticks"]
            m[TrigMeta.SCAN_DUE] = 0
            m[TrigMeta.STEP_FIRED] = 0
        return n, STATUS_DONE, 0
    if m[TrigMeta.SCAN_DUE] != 0 and not _concerns_triggers(
        ev, m[TrigMeta.SCAN_FROM], m[TrigMeta.SCAN_TO], m[TrigMeta.LINKED] > 0
    ):
        m[TrigMeta.SCAN_DUE] = 0  # e.g. an order that rested: nothing moved, nothing to cancel
        m[TrigMeta.STEP_FIRED] = 0
    if m[TrigMeta.SCAN_DUE] == 0 and (
        m[TrigMeta.QUEUE_LEN] == 0 or m[TrigMeta.STEP_FIRED] >= m[TrigMeta.FIRE_CAP]
    ):
        return n, STATUS_DONE, 0
    return call_trigger_stage_full(arena, layout, ev, n)


@kernel
def _concerns_triggers(ev, lo, hi, linked):
    """Whether events ``[lo, hi)`` move a trigger source or cancel trigger orders (with
    ``linked`` groups alive: or end an order a linked row may watch)."""
    for j in range(lo, hi):
        kind = ev[j]["kind"]
        if linked and (
            kind == EventKind.CANCELLED
            or kind == EventKind.EXPIRED
            or kind == EventKind.TRIGGER_CANCELLED
        ):
            return True
        if (
            kind == EventKind.FILLED
            or kind == EventKind.MARK_CHANGED
            or kind == EventKind.INDEX_CHANGED
            or kind == EventKind.LIQUIDATION_PROGRESSED
            or kind == EventKind.INSTRUMENT_STATUS_CHANGED
        ):
            return True
        if kind == EventKind.ACCEPTED and (
            ev[j]["command"] == CommandKind.CANCEL_ALL
            or ev[j]["command"] == CommandKind.CANCEL_ALL_INSTRUMENT
            or ev[j]["command"] == CommandKind.BLOCK_ACCOUNT
        ):
            return True
    return False


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def trigger_stage_full(st, ev, n):
    """``trigger_stage`` when trigger orders exist: cancellations, evaluation, firing."""
    m = st.trg_meta
    # as a command's seq (uint64): the order and event kernels it reaches then compile
    # once, for the commands' type, not a second time for int64
    seq = np.uint64(m[TrigMeta.SCAN_SEQ])
    if m[TrigMeta.SCAN_DUE] != 0:
        if m[TrigMeta.LIVE] > 0:
            room = m[TrigMeta.LIVE] + 1
            room += link_room(st, m[TrigMeta.SCAN_TO] - m[TrigMeta.SCAN_FROM] + room)
            if n + room > ev.shape[0]:
                return n, STATUS_EVENTS, room
            n = _cancellations(st, ev, n, m[TrigMeta.SCAN_FROM], m[TrigMeta.SCAN_TO], seq)
        _crossings(st, ev, m[TrigMeta.SCAN_FROM], m[TrigMeta.SCAN_TO])
        if m[TrigMeta.LINKED] > 0:
            n = link_pass(st, ev, n, m[TrigMeta.SCAN_FROM], seq)
        m[TrigMeta.SCAN_DUE] = 0
        m[TrigMeta.STEP_FIRED] = 0
    while m[TrigMeta.QUEUE_LEN] > 0 and m[TrigMeta.STEP_FIRED] < m[TrigMeta.FIRE_CAP]:
        slot = m[TrigMeta.QUEUE_HEAD]
        need, events = _spawn_room(st, slot)
        events += link_room(st, events)
        if need > 0:
            return n, STATUS_GROW, need
        if n + events > ev.shape[0]:
            return n, STATUS_EVENTS, events
        if st.counters[Counter.RISK_DIRTY] > 0:
            flush(st)  # staged marks apply before an order enters, as before any command
        dequeue(st)
        lo = n
        n = spawn(st, ev, n, seq, slot)
        m[TrigMeta.STEP_FIRED] += 1
        _crossings(st, ev, lo, n)
        if m[TrigMeta.LINKED] > 0:
            n = link_pass(st, ev, n, lo, seq)
    return n, STATUS_DONE, 0


@cold_kernel
def _trigger_stage_symbol(arena, layout, ev, n):
    """``trigger_stage_full`` on the State over ``arena`` (the caller's: no growth inside a
    batch, so the same memory the caller's views use)."""
    return trigger_stage_full(unpack(arena, layout), ev, n)


call_trigger_stage_full = register(
    "derivex_trigger_stage", _trigger_stage_symbol, (ARENA, LAYOUT, EVENTS, I64), __file__
)
