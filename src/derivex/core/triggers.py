"""Conditional orders: PLACE_TRIGGER and cancelling a trigger order; the trigger stage that
runs after every command is in ``trigger_stage`` (docs/conditional-orders.md is the
contract).

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
    P_MAX_OPEN_ORDERS_PER_ACCOUNT,
)
from derivex.core.emit import order_accepted, set_label
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    Account4,
    Account8,
    Counter,
)
from derivex.core.order_checks import (
    admit_trader,
    check_price,
    check_quantity,
    open_for_orders_reason,
    order_fields_reason,
    reject,
)
from derivex.core.records import (
    CommandKind,
    EventKind,
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
    fires_below,
    queue_remove,
    source_price,
    spec_of,
    trigger_alloc,
    trigger_free,
    trigger_id,
    trigger_slot_of,
)
from derivex.core.trigger_layout import QUEUED, SOURCES, UNTRIGGERED, Trig8, TrigBook, TrigMeta


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
    state = st.trg_i8[slot, Trig8.STATE]
    if state == UNTRIGGERED:
        book_unlink(st, slot)
    elif state == QUEUED:
        queue_remove(st, slot)  # (a HELD linked secondary is in neither)
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
def _amend_reason(st, c, slot):
    """Every check of AMEND_TRIGGER on the live trigger ``slot``: (reason, trigger price,
    offset, limit price)."""
    zero = np.int64(0)
    t = st.trg_i8[slot]
    if t[Trig8.STATE] != UNTRIGGERED or t[Trig8.LINK] != 0:
        return Reason.TRIGGER_NOT_EDITABLE, zero, zero, zero
    instrument = t[Trig8.INSTRUMENT]
    spec = t[Trig8.SPEC]
    reason = open_for_orders_reason(st, instrument)
    if reason == Reason.OK:
        reason = check_quantity(st, instrument, c["qty_lots"])
    limit = zero
    if reason == Reason.OK and ((spec >> 4) & 1) == OrderType.LIMIT:
        limit = c["price_ticks"]
        reason = check_price(st, instrument, limit)
    value = c["new_trigger_ticks"]
    if reason == Reason.OK:
        reason = check_price(st, instrument, value)
    if reason != Reason.OK:
        return reason, zero, zero, zero
    below = fires_below(spec)
    trigger = value
    offset = zero
    if (spec & 3) == TriggerType.TRAILING:
        offset = value  # the best price seen so far stays the reference
        reference = t[Trig8.REFERENCE]
        trigger = reference - offset if below else reference + offset
    current = source_price(st, instrument, (spec >> 2) & 3)
    if current > 0 and ((below and current <= trigger) or ((not below) and current >= trigger)):
        return Reason.TRIGGER_WOULD_FIRE, zero, zero, zero
    return Reason.OK, trigger, offset, limit


@kernel
def amend_trigger(st, ev, n, cmds, i):
    """AMEND_TRIGGER: new quantity, limit price (limit types) and trigger price (trailing:
    offset) of an untriggered trigger order outside a group, validated as at placement; it
    keeps its id and time priority. ACCEPTED, then TRIGGER_AMENDED. Rejects: those of
    CANCEL_ORDER on a trigger id, TRIGGER_NOT_EDITABLE (queued or grouped), and what
    PLACE_TRIGGER checks of the new terms. O(1)."""
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
    reason, trigger, offset, limit = _amend_reason(st, c, slot)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    t = st.trg_i8[slot]
    t[Trig8.QTY] = c["qty_lots"]
    t[Trig8.PRICE] = limit
    t[Trig8.TRIGGER] = trigger
    t[Trig8.OFFSET] = offset
    spec = t[Trig8.SPEC]
    if (spec & 3) != TriggerType.TRAILING:
        # widen the book's cached bounds (they may be stale, never too tight)
        b = st.trg_book[t[Trig8.INSTRUMENT] * SOURCES + ((spec >> 2) & 3)]
        if fires_below(spec):
            b[TrigBook.BELOW_MAX] = max(b[TrigBook.BELOW_MAX], trigger)
        else:
            b[TrigBook.ABOVE_MIN] = min(b[TrigBook.ABOVE_MIN], trigger)
    n = order_accepted(
        ev,
        n,
        c["seq"],
        CommandKind.AMEND_TRIGGER,
        (spec >> 16) & 1,
        0,
        account,
        t[Trig8.INSTRUMENT],
        trigger_id(st, slot),
        trigger,
        t[Trig8.QTY],
    )
    set_label(ev, n, st.trg_label[slot])
    n = _event_of(
        st, ev, n, c["seq"], EventKind.TRIGGER_AMENDED, 0, slot, trigger, _detail(st, slot)
    )
    ev[n - 1]["command"] = CommandKind.AMEND_TRIGGER
    return n
