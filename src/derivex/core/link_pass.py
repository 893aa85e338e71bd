"""The link pass of linked orders (docs/conditional-orders.md, "Linked orders"): after its
crossings, the trigger stage hands every command's events, and every fired order's events,
to ``link_pass``, which makes a fill, firing or cancellation of one leg of a group act on the
others. Placement (PLACE_LINKED) is in ``order_links``.

A grouped trigger row watches ids, never slots: ``Trig8.PRIMARY`` (an OTO / OTOCO
secondary: the primary, then the order a primary trigger placed) and ``Trig8.PARTNER`` (an
OCO member: the other member, then the order it placed). A HELD secondary enters its book
(in placement order) or the fire queue when its primary's fills release it.

Cost: O(events + reactions) while any grouped row lives, nothing otherwise: the link index
(``core/link_index.py``) gives the rows watching an event's order id, in slot order, each in
O(its bucket's chain), about 1, whatever the size of the trigger pool.
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import kernel
from derivex.core.layout import NIL, Ins8
from derivex.core.link_index import watch_set, watcher_after
from derivex.core.records import (
    CommandKind,
    EventKind,
    FillCondition,
    LinkType,
    Reason,
    TriggerType,
)
from derivex.core.trigger_book import (
    book_link,
    enqueue_crossed,
    fires_below,
    source_price,
    trigger_id,
)
from derivex.core.trigger_layout import HELD, QUEUED, SOURCES, Trig8, TrigBook, TrigMeta
from derivex.core.triggers import remove_trigger, trigger_event


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
def link_event(st, ev, n, seq, kind, slot, price, qty, a, b):
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
    return link_event(
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
        watch_set(st, slot, 0, np.int64(e["a"]))  # the primary was a trigger: watch its order
        t[Trig8.BASE] = e["qty_lots"]
        return n
    if kind == EventKind.FILLED:
        t[Trig8.SEEN] += e["qty_lots"]
        done = e["remaining_lots"] == 0
        if fill == FillCondition.FIRST_HIT or (fill == FillCondition.COMPLETE_FILL and done):
            watch_set(st, slot, 0, 0)
            if held:
                n = _activate(st, ev, n, seq, slot, t[Trig8.FULL], oid)
        elif fill == FillCondition.INCREMENTAL:
            target = t[Trig8.FULL]
            if not done:
                seen = min(t[Trig8.SEEN], t[Trig8.BASE])
                target = _step_floor(st, slot, pro_rata(target, seen, t[Trig8.BASE]))
            else:
                watch_set(st, slot, 0, 0)
            if target > (0 if held else t[Trig8.QTY]):
                n = _activate(st, ev, n, seq, slot, target, oid)
        return n
    if _gone(kind, e):
        watch_set(st, slot, 0, 0)
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
        watch_set(st, slot, 1, np.int64(e["a"]))
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
                n = link_event(
                    st, ev, n, seq, EventKind.LINK_REDUCED, slot, t[Trig8.TRIGGER], left,
                    np.int64(e["order_id"]), 0,
                )  # fmt: skip
        return n
    if _gone(kind, e):
        # the order the other member placed ended with a remainder unfilled
        if fill == FillCondition.COMPLETE_FILL:
            return remove_trigger(st, ev, n, seq, slot, Reason.OCO_OTHER_CLOSED)
        watch_set(st, slot, 1, 0)  # incremental: keeps its reduced quantity, outside the group
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
            # the rows watching the order, in slot order, each looked up again after the
            # reactions before it (a reaction changes or frees only its own row); order ids
            # are never 0 (order generations start at 1, trigger ids are tagged)
            oid = np.int64(e["order_id"])
            slot = watcher_after(st, oid, NIL)
            while slot != NIL:
                if st.trg_i8[slot, Trig8.PRIMARY] == oid:
                    n = _on_primary(st, ev, n, seq, slot, e)
                else:
                    n = _on_partner(st, ev, n, seq, slot, e)
                slot = watcher_after(st, oid, slot)
        j += 1
    return n
