"""Linked orders (docs/conditional-orders.md, "Linked orders"): PLACE_LINKED places an OTO,
OCO or OTOCO group in one command, and ``link_pass`` (run by the trigger stage on every
command's events and on the events of every order it fires) makes a fill, firing or
cancellation of one leg act on the others.

The group table is the trigger pool itself: every leg other than an OTO primary is a
trigger order whose row carries its links (``Trig8.LINK``, ``PRIMARY``, ``PARTNER``,
``FULL``, ``BASE``, ``SEEN``). A secondary of an OTO primary is HELD (in no book) until the
primary's fills release it per the fill condition; an OCO member watches the other member
(its trigger id, then the order it spawned). A row watches ids, never slots, so a watched
order that is gone leaves nothing dangling. Liquidation, the kill switch, instrument close
and expiry cancel every row of an account or instrument, held ones included (the legs of a
group share account and instrument).

Cost: PLACE_LINKED is O(legs) plus the primary's matching. ``link_pass`` is O(events x
trigger pool high-water mark) while any linked row lives (each fill, cancel or firing is
compared with every row's watched ids) and O(events) otherwise.
"""

from __future__ import annotations

import numpy as np

from derivex.core.config import P_GAS_BASE, P_MAX_OPEN_ORDERS_PER_ACCOUNT
from derivex.core.emit import order_accepted, set_label
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account4, Account8, Counter, Ins8
from derivex.core.market_data import leg_span
from derivex.core.order_checks import admit_trader, reject
from derivex.core.orders import place_order
from derivex.core.records import (
    CommandKind,
    EventKind,
    FillCondition,
    LinkType,
    OrderType,
    Reason,
    TimeInForce,
    TriggerType,
)
from derivex.core.trigger_book import (
    book_link,
    enqueue_crossed,
    fires_below,
    source_price,
    spec_of,
    trigger_alloc,
    trigger_id,
)
from derivex.core.trigger_layout import (
    HELD,
    QUEUED,
    ROLE_OCO,
    ROLE_SECONDARY,
    SOURCES,
    UNUSED,
    Trig8,
    TrigBook,
    TrigMeta,
)
from derivex.core.triggers import (
    _place_reason,
    place_trigger,
    remove_trigger,
    trigger_event,
)

#: Legs of one group at most: a primary and two secondaries (OTOCO).
MAX_LINK_LEGS = 3


@kernel
def pro_rata(full, seen, base):
    """floor(full * seen / base) for 0 <= seen <= base, 0 < base, full <= 2**62, exactly
    (long multiplication: no int64 overflow). O(63)."""
    quotient = full // base
    rest = full - quotient * base
    q = np.int64(0)
    r = np.int64(0)
    for bit in range(62, -1, -1):
        q = 2 * q
        r = 2 * r
        if r >= base:
            q += 1
            r -= base
        if (seen >> bit) & 1:
            r += rest
            if r >= base:
                q += 1
                r -= base
    return quotient * seen + q


@kernel
def _shape_reason(cmds, i, legs):
    """BAD_LINK unless the header's link type, fill condition and legs fit together."""
    c = cmds[i]
    link_type = np.int64(c["link_type"])
    fill = np.int64(c["fill_condition"])
    if link_type < LinkType.OTO or link_type > LinkType.OTOCO or fill > FillCondition.INCREMENTAL:
        return Reason.BAD_LINK
    if link_type == LinkType.OTO and (legs < 2 or legs > 3):
        return Reason.BAD_LINK
    if link_type != LinkType.OTO and legs != (2 if link_type == LinkType.OCO else 3):
        return Reason.BAD_LINK
    first = cmds[i + 1]
    for j in range(i + 1, i + 1 + legs):
        leg = cmds[j]
        if leg["account"] != c["account"] or leg["instrument"] != first["instrument"]:
            return Reason.BAD_LINK
        if leg["kind"] == CommandKind.LINKED_ORDER and (j > i + 1 or link_type == LinkType.OCO):
            return Reason.BAD_LINK  # only a primary may be a plain order
    return Reason.OK


@kernel
def _link_event(st, ev, n, seq, kind, slot, price, qty, a, b):
    n = trigger_event(
        ev,
        n,
        seq,
        kind,
        (st.trg_i8[slot, Trig8.SPEC] >> 16) & 1,
        0,
        st.trg_i8[slot, Trig8.SPEC],
        st.trg_i8[slot, Trig8.ACCOUNT],
        st.trg_i8[slot, Trig8.INSTRUMENT],
        trigger_id(st, slot),
        price,
        qty,
        a,
        st.trg_label[slot],
    )
    ev[n - 1]["command"] = CommandKind.PLACE_LINKED
    if kind == EventKind.ORDER_LINKED:
        ev[n - 1]["b"] = b
    return n


@kernel
def _terms(st, c, instrument):
    """``(trigger, reference, offset, tif, limit)`` of a validated LINKED_TRIGGER leg, as
    PLACE_TRIGGER stores them (a trailing leg trails from the source price now)."""
    tif = np.int64(c["tif"])
    limit = np.int64(0)
    if np.int64(c["order_type"]) == OrderType.LIMIT:
        limit = c["price_ticks"]
    elif tif == TimeInForce.GTC:
        tif = np.int64(TimeInForce.IOC)
    trigger = c["trigger_price_ticks"]
    reference = np.int64(0)
    offset = np.int64(0)
    if np.int64(c["trigger_type"]) == TriggerType.TRAILING:
        spec = spec_of(c["trigger_type"], c["trigger_source"], c["order_type"], tif, 0, c["side"])
        offset = trigger
        reference = source_price(st, instrument, np.int64(c["trigger_source"]))
        trigger = reference - offset if fires_below(spec) else reference + offset
    return trigger, reference, offset, tif, limit


@kernel
def _store_row(st, ev, n, seq, c, account, instrument, held):
    """Store a validated LINKED_TRIGGER leg as a trigger order (HELD or in its book):
    ACCEPTED and TRIGGER_PLACED as for PLACE_TRIGGER. Returns (n, slot)."""
    trigger, reference, offset, tif, limit = _terms(st, c, instrument)
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
    t[Trig8.FULL] = c["qty_lots"]
    st.trg_label[slot] = c["label"]
    st.trg_acct[account] += 1
    st.trg_meta[TrigMeta.LINKED] += 1
    if held:
        t[Trig8.STATE] = HELD
    else:
        book_link(st, slot)
    tid = trigger_id(st, slot)
    n = order_accepted(
        ev, n, seq, CommandKind.PLACE_TRIGGER, side, 0, account, instrument, tid, trigger,
        t[Trig8.QTY],
    )  # fmt: skip
    set_label(ev, n, c["label"])
    detail = offset if (t[Trig8.SPEC] & 3) == TriggerType.TRAILING else limit
    n = trigger_event(
        ev, n, seq, EventKind.TRIGGER_PLACED, side, 0, t[Trig8.SPEC], account, instrument,
        tid, trigger, t[Trig8.QTY], detail, c["label"],
    )  # fmt: skip
    return n, slot


@kernel
def _group_reason(st, cmds, i, legs, account):
    """Every check of a complete PLACE_LINKED after its account is admitted: ``(reason,
    leg)`` (leg: the offending leg's index, 0 for the header)."""
    reason = _shape_reason(cmds, i, legs)
    if reason != Reason.OK:
        return reason, 0
    instrument = np.int64(cmds[i + 1]["instrument"])
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return Reason.UNKNOWN_INSTRUMENT, 0
    for j in range(i + 1, i + 1 + legs):
        if cmds[j]["kind"] == CommandKind.LINKED_TRIGGER:
            reason = _place_reason(st, cmds[j], account, instrument)[0]
            if reason != Reason.OK:
                return reason, j - i
    open_orders = st.acc_i4[account, Account4.OPEN_ORDERS] + st.trg_acct[account]
    if open_orders + legs > st.params[P_MAX_OPEN_ORDERS_PER_ACCOUNT]:
        return Reason.ACCOUNT_ORDER_LIMIT, 0
    if st.trg_meta[TrigMeta.LIVE] + legs > st.trg_meta[TrigMeta.MAX]:
        return Reason.TRIGGER_POOL_FULL, 0
    # each trigger leg prepays its spawn; the primary pays its own way
    if st.acc_i8[account, Account8.GAS] < 2 * (legs + 1) * st.params[P_GAS_BASE]:
        return Reason.GAS_EXHAUSTED, 0
    return Reason.OK, 0


@kernel
def _link_rows(st, ev, n, seq, one, two, link_type, fill, primary, base):
    """Write the links of the group's rows (``two == one``: a single secondary), then one
    ORDER_LINKED per row."""
    single = two == one
    for slot in (one, two):
        t = st.trg_i8[slot]
        role = 0
        if link_type != LinkType.OCO:
            role |= ROLE_SECONDARY
            t[Trig8.PRIMARY] = primary
            t[Trig8.BASE] = base
        if not single and link_type != LinkType.OTO:
            role |= ROLE_OCO
            t[Trig8.PARTNER] = trigger_id(st, two if slot == one else one)
        t[Trig8.LINK] = link_type | (fill << 2) | (role << 4)
    for slot in (one, two):
        t = st.trg_i8[slot]
        n = _link_event(
            st, ev, n, seq, EventKind.ORDER_LINKED, slot, t[Trig8.LINK], t[Trig8.FULL],
            t[Trig8.PRIMARY], t[Trig8.PARTNER],
        )  # fmt: skip
        if single:
            break
    return n


@kernel
def place_linked(st, ev, n, cmds, i):
    """PLACE_LINKED: validate the header and every trigger leg, then place the primary (a
    LINKED_ORDER as PLACE_ORDER or a LINKED_TRIGGER as PLACE_TRIGGER) and store the other
    legs as linked trigger orders (OTO / OTOCO secondaries HELD), each followed by
    ORDER_LINKED. A rejected primary rejects the group (its REJECTED event; the legs' gas is
    refunded). Returns ``(n, records consumed)``. Rejects: what PLACE_TRIGGER rejects for any
    trigger leg, BAD_LINK, and the capacity of the whole group (ACCOUNT_ORDER_LIMIT,
    TRIGGER_POOL_FULL, GAS_EXHAUSTED: each trigger leg prepays its spawn, as PLACE_TRIGGER)."""
    c = cmds[i]
    consumed, complete = leg_span(
        cmds, i, CommandKind.LINKED_ORDER, CommandKind.LINKED_TRIGGER, MAX_LINK_LEGS
    )
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    leg = 0
    if reason == Reason.OK and not complete:
        reason = Reason.BAD_LINK
    if reason == Reason.OK:
        reason, leg = _group_reason(st, cmds, i, consumed - 1, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, leg), consumed
    instrument = np.int64(cmds[i + 1]["instrument"])
    link_type = np.int64(c["link_type"])
    has_primary = link_type != LinkType.OCO
    first_row = i + 2 if has_primary else i + 1
    prepaid = 2 * (i + consumed - first_row) * st.params[P_GAS_BASE]
    st.acc_i8[account, Account8.GAS] -= prepaid
    primary = np.int64(0)
    base = np.int64(0)
    if has_primary:
        start = n
        if cmds[i + 1]["kind"] == CommandKind.LINKED_ORDER:
            n = place_order(st, ev, n, cmds, i + 1)
        else:
            n = place_trigger(st, ev, n, cmds, i + 1)
        for k in range(start, n):
            ev[k]["seq"] = c["seq"]  # every event of the group carries the header's seq
        if ev[start]["kind"] == EventKind.REJECTED:
            st.acc_i8[account, Account8.GAS] += prepaid
            return n, consumed
        primary = np.int64(ev[start]["order_id"])
        base = ev[start]["qty_lots"]
    n, one = _store_row(st, ev, n, c["seq"], cmds[first_row], account, instrument, has_primary)
    two = one
    if first_row + 1 < i + consumed:
        n, two = _store_row(
            st, ev, n, c["seq"], cmds[first_row + 1], account, instrument, has_primary
        )
    return (
        _link_rows(
            st, ev, n, c["seq"], one, two, link_type, np.int64(c["fill_condition"]), primary,
            base,
        ),
        consumed,
    )  # fmt: skip


@kernel
def _book_link_in_order(st, slot):
    """``book_link``, then move the row back to its place by placement (a secondary
    activated late keeps the time priority of its placement). O(rows placed after it)."""
    book_link(st, slot)
    placed = st.trg_i8[slot, Trig8.PLACED]
    prev = st.trg_i8[slot, Trig8.PREV]
    if prev == NIL or st.trg_i8[prev, Trig8.PLACED] < placed:
        return
    after = prev
    while after != NIL and st.trg_i8[after, Trig8.PLACED] > placed:
        after = st.trg_i8[after, Trig8.PREV]
    spec = st.trg_i8[slot, Trig8.SPEC]
    b = st.trg_book[st.trg_i8[slot, Trig8.INSTRUMENT] * SOURCES + ((spec >> 2) & 3)]
    b[TrigBook.TAIL] = prev
    st.trg_i8[prev, Trig8.NEXT] = NIL
    if after == NIL:
        nxt = b[TrigBook.HEAD]
        b[TrigBook.HEAD] = slot
    else:
        nxt = st.trg_i8[after, Trig8.NEXT]
        st.trg_i8[after, Trig8.NEXT] = slot
    st.trg_i8[slot, Trig8.PREV] = after
    st.trg_i8[slot, Trig8.NEXT] = nxt
    st.trg_i8[nxt, Trig8.PREV] = slot


@kernel
def _activate(st, ev, n, seq, slot, qty, primary):
    """Give a secondary ``qty`` lots; a HELD one enters its book, or the fire queue when its
    source is already at or past the trigger (trailing: starts trailing from the source
    price now). LINK_ACTIVATED."""
    t = st.trg_i8[slot]
    t[Trig8.QTY] = qty
    if t[Trig8.STATE] == HELD:
        spec = t[Trig8.SPEC]
        below = fires_below(spec)
        current = source_price(st, t[Trig8.INSTRUMENT], (spec >> 2) & 3)
        if (spec & 3) == TriggerType.TRAILING and current > 0:
            t[Trig8.REFERENCE] = current
            t[Trig8.TRIGGER] = current - t[Trig8.OFFSET] if below else current + t[Trig8.OFFSET]
        trigger = t[Trig8.TRIGGER]
        if current > 0 and ((below and current <= trigger) or (not below and current >= trigger)):
            t[Trig8.STATE] = QUEUED
            t[Trig8.CROSSED] = current
            st.trg_scratch[0] = slot
            enqueue_crossed(st, 1)
        else:
            _book_link_in_order(st, slot)
    return _link_event(
        st, ev, n, seq, EventKind.LINK_ACTIVATED, slot, t[Trig8.TRIGGER], qty, primary, 0
    )


@kernel
def _step_floor(st, slot, lots):
    step = st.ins_i8[st.trg_i8[slot, Trig8.INSTRUMENT], Ins8.MIN_LOTS]
    return lots - lots % step if step > 1 else lots


@kernel
def _gone(kind, e):
    """Whether event ``e`` (of the watched order) says that order left for good."""
    return (
        kind == EventKind.CANCELLED
        or kind == EventKind.EXPIRED
        or kind == EventKind.TRIGGER_CANCELLED
        or (kind == EventKind.TRIGGER_FIRED and e["a"] == 0)
    )


@kernel
def _on_primary(st, ev, n, seq, slot, e):
    """A secondary's reaction to an event of its primary."""
    t = st.trg_i8[slot]
    kind = e["kind"]
    oid = np.int64(e["order_id"])
    fill = (t[Trig8.LINK] >> 2) & 3
    held = t[Trig8.STATE] == HELD
    if kind == EventKind.TRIGGER_FIRED and e["a"] != 0:
        t[Trig8.PRIMARY] = e["a"]  # the primary was a trigger: watch the order it placed
        t[Trig8.BASE] = e["qty_lots"]
        return n
    if kind == EventKind.FILLED:
        t[Trig8.SEEN] += e["qty_lots"]
        done = e["remaining_lots"] == 0
        if fill == FillCondition.FIRST_HIT or (fill == FillCondition.COMPLETE_FILL and done):
            t[Trig8.PRIMARY] = 0
            if held:
                n = _activate(st, ev, n, seq, slot, t[Trig8.FULL], oid)
        elif fill == FillCondition.INCREMENTAL:
            target = t[Trig8.FULL]
            if not done:
                seen = min(t[Trig8.SEEN], t[Trig8.BASE])
                target = _step_floor(st, slot, pro_rata(target, seen, t[Trig8.BASE]))
            else:
                t[Trig8.PRIMARY] = 0
            if target > (0 if held else t[Trig8.QTY]):
                n = _activate(st, ev, n, seq, slot, target, oid)
        return n
    if _gone(kind, e):
        t[Trig8.PRIMARY] = 0
        if held:
            if fill == FillCondition.COMPLETE_FILL and t[Trig8.SEEN] > 0:
                n = _activate(st, ev, n, seq, slot, t[Trig8.FULL], oid)
            else:
                n = remove_trigger(st, ev, n, seq, slot, Reason.OTO_PRIMARY_CLOSED)
    return n


@kernel
def _on_partner(st, ev, n, seq, slot, e):
    """An OCO member's reaction to an event of the other member."""
    t = st.trg_i8[slot]
    kind = e["kind"]
    link = t[Trig8.LINK]
    fill = (link >> 2) & 3
    # an OTOCO bracket is one-cancels-other on the first firing whatever the fill condition
    # (which governs its primary)
    first_hit = fill == FillCondition.FIRST_HIT or (link & 3) == LinkType.OTOCO
    if kind == EventKind.TRIGGER_FIRED and e["a"] != 0 and not first_hit:
        t[Trig8.PARTNER] = e["a"]
        t[Trig8.BASE] = e["qty_lots"]
        t[Trig8.SEEN] = 0
        return n
    if kind == EventKind.TRIGGER_FIRED or kind == EventKind.TRIGGER_CANCELLED:
        return remove_trigger(st, ev, n, seq, slot, Reason.OCO_OTHER_CLOSED)
    if kind == EventKind.FILLED:
        t[Trig8.SEEN] += e["qty_lots"]
        done = e["remaining_lots"] == 0
        if done:
            return remove_trigger(st, ev, n, seq, slot, Reason.OCO_OTHER_CLOSED)
        if fill == FillCondition.INCREMENTAL:
            seen = min(t[Trig8.SEEN], t[Trig8.BASE])
            left = t[Trig8.FULL] - _step_floor(
                st, slot, pro_rata(t[Trig8.FULL], seen, t[Trig8.BASE])
            )
            if left <= 0:
                return remove_trigger(st, ev, n, seq, slot, Reason.OCO_OTHER_CLOSED)
            if left < t[Trig8.QTY]:
                t[Trig8.QTY] = left
                n = _link_event(
                    st, ev, n, seq, EventKind.LINK_REDUCED, slot, t[Trig8.TRIGGER], left,
                    np.int64(e["order_id"]), 0,
                )  # fmt: skip
        return n
    if _gone(kind, e):
        # the order the other member placed ended with a remainder unfilled
        if fill == FillCondition.COMPLETE_FILL:
            return remove_trigger(st, ev, n, seq, slot, Reason.OCO_OTHER_CLOSED)
        t[Trig8.PARTNER] = 0  # incremental: keeps its reduced quantity, outside the group
    return n


@kernel
def link_room(st, events):
    """Events ``link_pass`` may add over ``events`` events (0 without linked rows): at most
    two watchers per order id, each reacting once per event, plus cascades."""
    linked = st.trg_meta[TrigMeta.LINKED]
    if linked == 0:
        return 0
    return 2 * events + 4 * linked + 4


@kernel
def link_pass(st, ev, n, lo, seq):
    """React to events ``[lo, n)``, including those this pass adds. Returns n."""
    m = st.trg_meta
    j = lo
    while j < n and m[TrigMeta.LINKED] > 0:
        e = ev[j]
        kind = e["kind"]
        if (
            kind == EventKind.FILLED
            or kind == EventKind.CANCELLED
            or kind == EventKind.EXPIRED
            or kind == EventKind.TRIGGER_FIRED
            or kind == EventKind.TRIGGER_CANCELLED
        ):
            oid = np.int64(e["order_id"])
            for slot in range(m[TrigMeta.HWM]):
                t = st.trg_i8[slot]
                if t[Trig8.STATE] == UNUSED or t[Trig8.LINK] == 0:
                    continue
                if t[Trig8.PRIMARY] == oid:
                    n = _on_primary(st, ev, n, seq, slot, e)
                elif t[Trig8.PARTNER] == oid:
                    n = _on_partner(st, ev, n, seq, slot, e)
        j += 1
    return n


@kernel
def linked_trigger_room(st):
    """Trigger pool slots to grow before a PLACE_LINKED (0: enough room, or at the cap)."""
    m = st.trg_meta
    capacity = st.trg_i8.shape[0]
    free = m[TrigMeta.FREE_COUNT] + capacity - m[TrigMeta.HWM]
    if free < MAX_LINK_LEGS and capacity < m[TrigMeta.MAX]:
        return MAX_LINK_LEGS
    return 0
