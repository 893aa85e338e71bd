"""Linked orders (docs/conditional-orders.md, "Linked orders"): PLACE_LINKED places an OTO,
OCO or OTOCO group in one command; ``link_pass`` (run by the trigger stage on every
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

Cost: PLACE_LINKED is O(legs) plus the primary's matching. ``link_pass`` is O(events +
reactions) whatever the size of the pool: the link index (``core/link_index.py``) finds
the rows watching an event's order id.
"""

from __future__ import annotations

import numpy as np

from derivex.core.config import P_GAS_BASE, P_MAX_OPEN_ORDERS_PER_ACCOUNT
from derivex.core.emit import order_accepted, set_label
from derivex.core.jit import kernel
from derivex.core.layout import Account4, Account8, Counter
from derivex.core.link_index import watch_set
from derivex.core.link_pass import link_event
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
    fires_below,
    source_price,
    spec_of,
    trigger_alloc,
    trigger_id,
)
from derivex.core.trigger_layout import (
    HELD,
    ROLE_OCO,
    ROLE_SECONDARY,
    Trig8,
    TrigMeta,
)
from derivex.core.triggers import (
    _place_reason,
    place_trigger,
    trigger_event,
)

#: Legs of one group at most: a primary and two secondaries (OTOCO).
MAX_LINK_LEGS = 3


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
            watch_set(st, slot, 0, primary)
            t[Trig8.BASE] = base
        if not single and link_type != LinkType.OTO:
            role |= ROLE_OCO
            watch_set(st, slot, 1, trigger_id(st, two if slot == one else one))
        t[Trig8.LINK] = link_type | (fill << 2) | (role << 4)
    for slot in (one, two):
        t = st.trg_i8[slot]
        n = link_event(
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
def linked_trigger_room(st):
    """Trigger pool slots to grow before a PLACE_LINKED (0: enough room, or at the cap)."""
    m = st.trg_meta
    capacity = st.trg_i8.shape[0]
    free = m[TrigMeta.FREE_COUNT] + capacity - m[TrigMeta.HWM]
    if free < MAX_LINK_LEGS and capacity < m[TrigMeta.MAX]:
        return MAX_LINK_LEGS
    return 0
