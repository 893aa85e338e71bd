"""Conditional orders: PLACE_TRIGGER, cancelling a trigger order, and the trigger stage that
runs after every command (docs/conditional-orders.md is the contract).

The trigger stage reads the events of the command just applied: fills move the last price,
MARK_CHANGED the mark, a valid INDEX_CHANGED the index of every instrument of its
underlying. Liquidation, instrument close, expiry and cancel-all cancel the triggers they
concern first. Every trigger that the command crossed leaves its book; they join the fire
queue in time priority (placement order). Then the queue fires, head first, at most
``trigger_fire_cap`` orders per command: each spawns a new order (new id, ``command`` =
PLACE_TRIGGER, its ACCEPTED carries the trigger id in ``a``) that is validated again
(margin, reduce-only clamp, band) and matched; its fills are evaluated in turn (cascades).
What the cap leaves waits in the queue for the stage after the next command.

Gas: PLACE_TRIGGER charges the base weight twice (the second pays for the order it spawns),
so firing charges nothing more than the spawned order's fills. Cost: see ``trigger_book``.
"""

from __future__ import annotations

import numpy as np

from derivex.core.config import (
    P_GAS_BASE,
    P_GAS_MAX,
    P_GAS_PER_FILL,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_OPEN_ORDERS_PER_ACCOUNT,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
)
from derivex.core.emit import order_accepted, set_label
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    STATUS_DONE,
    STATUS_EVENTS,
    STATUS_GROW,
    Account4,
    Account8,
    Counter,
    Ins4,
    Order4,
    Order8,
)
from derivex.core.market_data import flush
from derivex.core.matching import match
from derivex.core.order_checks import (
    admit_trader,
    check_price,
    check_quantity,
    open_for_orders_reason,
    order_fields_reason,
    reject,
)
from derivex.core.order_validation import validate_place_terms
from derivex.core.orders import finish_incoming
from derivex.core.pools import free_capacity, order_alloc, order_id_of, position_get_or_create
from derivex.core.records import (
    CommandKind,
    EventKind,
    IndexStatus,
    InstrumentStatus,
    LiquidationStage,
    Liquidity,
    OrderType,
    Reason,
    TimeInForce,
    TriggerSource,
    TriggerType,
)
from derivex.core.trigger_book import (
    book_link,
    book_unlink,
    collect,
    dequeue,
    enqueue_crossed,
    evaluate,
    fires_below,
    queue_remove,
    sort_crossed,
    source_price,
    spec_of,
    trigger_alloc,
    trigger_free,
    trigger_id,
    trigger_slot_of,
)
from derivex.core.trigger_layout import SOURCES, UNTRIGGERED, Trig8, TrigBook, TrigMeta


@kernel
def trigger_event(
    ev, n, seq, kind, side, reason, spec, account, instrument, tid, price, qty, a, label
):
    """One TRIGGER_* event (all 64 bytes written)."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = kind
    e["command"] = CommandKind.PLACE_TRIGGER
    e["side"] = side
    e["liquidity"] = Liquidity.NONE
    e["reason"] = reason
    e["leg"] = spec & 0xFFFF
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = tid
    e["price_ticks"] = price
    e["qty_lots"] = qty
    e["a"] = a
    e["label"] = label
    return n + 1


@kernel
def _event_of(st, ev, n, seq, kind, reason, slot, price, a):
    spec = st.trg_i8[slot, Trig8.SPEC]
    return trigger_event(
        ev,
        n,
        seq,
        kind,
        (spec >> 16) & 1,
        reason,
        spec,
        st.trg_i8[slot, Trig8.ACCOUNT],
        st.trg_i8[slot, Trig8.INSTRUMENT],
        trigger_id(st, slot),
        price,
        st.trg_i8[slot, Trig8.QTY],
        a,
        st.trg_label[slot],
    )


@kernel
def _detail(st, slot):
    """``a`` of a trigger's events: the limit price, or the offset of a trailing order."""
    if (st.trg_i8[slot, Trig8.SPEC] & 3) == TriggerType.TRAILING:
        return st.trg_i8[slot, Trig8.OFFSET]
    return st.trg_i8[slot, Trig8.PRICE]


@kernel
def trigger_room(st):
    """1 if the trigger pool must grow before a placement, else 0."""
    m = st.trg_meta
    capacity = st.trg_i8.shape[0]
    if m[TrigMeta.FREE_COUNT] == 0 and m[TrigMeta.HWM] >= capacity and capacity < m[TrigMeta.MAX]:
        return 1
    return 0


@kernel
def _place_reason(st, c, account, instrument):
    """Every check of PLACE_TRIGGER after the account is admitted. Returns (reason, trigger
    price, reference, offset, tif, limit price)."""
    side = np.int64(c["side"])
    order_type = np.int64(c["order_type"])
    tif = np.int64(c["tif"])
    flags = np.int64(c["flags"])
    trigger_type = np.int64(c["trigger_type"])
    source = np.int64(c["trigger_source"])
    zero = np.int64(0)
    reason = order_fields_reason(side, order_type, tif, flags)
    if reason == Reason.OK and (
        trigger_type < TriggerType.STOP
        or trigger_type > TriggerType.TRAILING
        or source > TriggerSource.MARK
        or (trigger_type == TriggerType.TRAILING and order_type != OrderType.MARKET)
    ):
        reason = Reason.BAD_TRIGGER
    if reason == Reason.OK:
        reason = open_for_orders_reason(st, instrument)
    if reason == Reason.OK:
        reason = check_quantity(st, instrument, c["qty_lots"])
    limit = zero
    if reason == Reason.OK and order_type == OrderType.LIMIT:
        limit = c["price_ticks"]
        reason = check_price(st, instrument, limit)
    if order_type == OrderType.MARKET and tif == TimeInForce.GTC:
        tif = np.int64(TimeInForce.IOC)
    value = c["trigger_price_ticks"]
    if reason == Reason.OK:
        reason = check_price(st, instrument, value)  # the trigger price, or the offset
    if reason != Reason.OK:
        return reason, zero, zero, zero, tif, limit
    spec = spec_of(trigger_type, source, order_type, tif, flags, side)
    current = source_price(st, instrument, source)
    below = fires_below(spec)
    trigger = value
    reference = zero
    offset = zero
    if trigger_type == TriggerType.TRAILING:
        if current <= 0:
            return Reason.NO_TRIGGER_PRICE, zero, zero, zero, tif, limit
        offset = value
        reference = current
        trigger = current - offset if below else current + offset
    elif current > 0 and ((below and current <= trigger) or ((not below) and current >= trigger)):
        return Reason.TRIGGER_WOULD_FIRE, zero, zero, zero, tif, limit
    open_orders = st.acc_i4[account, Account4.OPEN_ORDERS] + st.trg_acct[account]
    if open_orders >= st.params[P_MAX_OPEN_ORDERS_PER_ACCOUNT]:
        return Reason.ACCOUNT_ORDER_LIMIT, zero, zero, zero, tif, limit
    if st.trg_meta[TrigMeta.LIVE] >= st.trg_meta[TrigMeta.MAX]:
        return Reason.TRIGGER_POOL_FULL, zero, zero, zero, tif, limit
    if st.acc_i8[account, Account8.GAS] < st.params[P_GAS_BASE]:
        return Reason.GAS_EXHAUSTED, zero, zero, zero, tif, limit  # the spawn's prepayment
    return Reason.OK, trigger, reference, offset, tif, limit


@kernel
def place_trigger(st, ev, n, cmds, i):
    """PLACE_TRIGGER: validate completely (base gas charged once admitted), then store the
    trigger order in its book: ACCEPTED and TRIGGER_PLACED, both with the trigger's id."""
    c = cmds[i]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    instrument = np.int64(c["instrument"])
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_INSTRUMENT, 0)
    reason, trigger, reference, offset, tif, limit = _place_reason(st, c, account, instrument)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    st.acc_i8[account, Account8.GAS] -= st.params[P_GAS_BASE]
    slot = trigger_alloc(st)
    t = st.trg_i8[slot]
    side = np.int64(c["side"])
    t[Trig8.ACCOUNT] = account
    t[Trig8.INSTRUMENT] = instrument
    t[Trig8.SPEC] = spec_of(
        c["trigger_type"], c["trigger_source"], c["order_type"], tif, c["flags"], side
    )
    t[Trig8.QTY] = c["qty_lots"]
    t[Trig8.PRICE] = limit
    t[Trig8.TRIGGER] = trigger
    t[Trig8.OFFSET] = offset
    t[Trig8.REFERENCE] = reference
    t[Trig8.CROSSED] = 0
    st.trg_label[slot] = c["label"]
    st.trg_acct[account] += 1
    book_link(st, slot)
    tid = trigger_id(st, slot)
    n = order_accepted(
        ev,
        n,
        c["seq"],
        CommandKind.PLACE_TRIGGER,
        side,
        0,
        account,
        instrument,
        tid,
        trigger,
        t[Trig8.QTY],
    )
    set_label(ev, n, c["label"])
    return _event_of(
        st, ev, n, c["seq"], EventKind.TRIGGER_PLACED, 0, slot, trigger, _detail(st, slot)
    )


@kernel
def remove_trigger(st, ev, n, seq, slot, reason):
    """TRIGGER_CANCELLED for a live trigger order, which leaves its book or the queue."""
    n = _event_of(
        st,
        ev,
        n,
        seq,
        EventKind.TRIGGER_CANCELLED,
        reason,
        slot,
        st.trg_i8[slot, Trig8.TRIGGER],
        _detail(st, slot),
    )
    if st.trg_i8[slot, Trig8.STATE] == UNTRIGGERED:
        book_unlink(st, slot)
    else:
        queue_remove(st, slot)
    trigger_free(st, slot)
    return n


@kernel
def cancel_trigger(st, ev, n, cmds, i):
    """CANCEL_ORDER naming a trigger order (untriggered, or crossed and waiting in the
    queue): ACCEPTED, then TRIGGER_CANCELLED (CANCEL_BY_USER)."""
    c = cmds[i]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    slot = trigger_slot_of(st, np.int64(c["order_id"]))
    if slot == NIL:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_ORDER, 0)
    if st.trg_i8[slot, Trig8.ACCOUNT] != account:
        return reject(st, ev, n, cmds, i, Reason.NOT_ORDER_OWNER, 0)
    n = order_accepted(
        ev,
        n,
        c["seq"],
        CommandKind.CANCEL_ORDER,
        (st.trg_i8[slot, Trig8.SPEC] >> 16) & 1,
        0,
        account,
        st.trg_i8[slot, Trig8.INSTRUMENT],
        trigger_id(st, slot),
        st.trg_i8[slot, Trig8.TRIGGER],
        st.trg_i8[slot, Trig8.QTY],
    )
    set_label(ev, n, st.trg_label[slot])
    return remove_trigger(st, ev, n, c["seq"], slot, Reason.CANCEL_BY_USER)


@kernel
def _cancel_matching(st, ev, n, seq, account, instrument, reason):
    k = collect(st, account, instrument)
    for j in range(k):
        n = remove_trigger(st, ev, n, seq, st.trg_scratch[j], reason)
    return n


@kernel
def _cancellations(st, ev, n, lo, hi, seq):
    """Pass 1 over a command's events: cancel the triggers that liquidation, close, expiry
    and cancel-all concern."""
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
        st, account, instrument, side, order_type, tif, flags, lots, limit, True
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
def trigger_stage(st, ev, n):
    """The trigger stage after a command (the batch loop runs it before the next command
    and at the end of the batch). Returns ``(n, status, need)``; on GROW / EVENTS the loop
    returns and the stage resumes where it stopped."""
    m = st.trg_meta
    seq = m[TrigMeta.SCAN_SEQ]
    if m[TrigMeta.SCAN_DUE] != 0:
        if m[TrigMeta.LIVE] > 0:
            room = m[TrigMeta.LIVE] + 1
            if n + room > ev.shape[0]:
                return n, STATUS_EVENTS, room
            n = _cancellations(st, ev, n, m[TrigMeta.SCAN_FROM], m[TrigMeta.SCAN_TO], seq)
        _crossings(st, ev, m[TrigMeta.SCAN_FROM], m[TrigMeta.SCAN_TO])
        m[TrigMeta.SCAN_DUE] = 0
        m[TrigMeta.STEP_FIRED] = 0
    while m[TrigMeta.QUEUE_LEN] > 0 and m[TrigMeta.STEP_FIRED] < m[TrigMeta.FIRE_CAP]:
        slot = m[TrigMeta.QUEUE_HEAD]
        need, events = _spawn_room(st, slot)
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
    return n, STATUS_DONE, 0
