"""Order commands: place, cancel, amend. Each validates completely (``order_validation``,
``order_checks``: a reason, nothing changed but the base gas), then applies (an ``apply_*``
function that cannot fail).

Validation order and event contents follow ``docs/core-semantics.md`` exactly.
Cost: O(1) validation (O(log levels) for level lookups), plus the match.
"""

from __future__ import annotations

import numpy as np

from derivex.core.book import order_free, order_rest, order_shrink, order_unlink
from derivex.core.emit import amended, expired, order_accepted, set_label
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Order4, Order8
from derivex.core.matching import cancel_resting, crosses, match
from derivex.core.order_checks import load_own_order, reject
from derivex.core.order_validation import validate_amend, validate_place
from derivex.core.pools import (
    order_alloc,
    order_id_of,
    position_get_or_create,
    position_release_if_idle,
)
from derivex.core.records import CommandKind, OrderType, Reason, TimeInForce


@kernel
def finish_incoming(
    st,
    ev,
    n,
    seq,
    command,
    slot,
    instrument,
    side,
    price,
    is_market,
    resting,
    rem,
    initial_qty,
    stopped,
    account,
    position,
):
    """After matching: rest a GTC remainder or expire it, and release what is idle."""
    if rem > 0:
        if resting and not stopped:
            st.ord_i8[slot, Order8.QTY_LOTS] = rem
            order_rest(st, slot, instrument, side)
        else:
            reason = Reason.CANCEL_IOC_REMAINDER
            if stopped:
                reason = Reason.CANCEL_GAS
            elif is_market and rem == initial_qty:
                reason = Reason.NO_LIQUIDITY
            n = expired(
                ev,
                n,
                seq,
                command,
                side,
                reason,
                account,
                instrument,
                order_id_of(st, slot),
                price,
                rem,
            )
            set_label(ev, n, st.ord_label[slot])
            order_free(st, slot)
    else:
        order_free(st, slot)
    position_release_if_idle(st, position)
    return n


@kernel
def place_order(st, ev, n, cmds, i):
    """PLACE_ORDER: validate completely (``validate_place``), then apply (``apply_place``)."""
    c = cmds[i]
    reason, price, qty, tif, sweep, position = validate_place(st, c)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    return apply_place(st, ev, n, c, price, qty, tif, sweep, position)


@kernel
def apply_place(st, ev, n, c, price, qty, tif, sweep, position):
    """Apply a validated PLACE_ORDER: ACCEPTED, the match, then rest or expire the
    remainder. Cannot fail."""
    seq = c["seq"]
    account = np.int64(c["account"])
    instrument = np.int64(c["instrument"])
    side = np.int64(c["side"])
    flags = np.int64(c["flags"])
    is_market = np.int64(c["order_type"]) == OrderType.MARKET
    resting = (not is_market) and tif == TimeInForce.GTC
    if position == NIL:
        position = position_get_or_create(st, account, instrument)
    slot = order_alloc(st)
    st.ord_i8[slot, Order8.PRICE_TICKS] = price
    st.ord_i8[slot, Order8.QTY_LOTS] = qty
    st.ord_i4[slot, Order4.POSITION] = position
    st.ord_i4[slot, Order4.META] = side | (flags << 1)
    st.ord_label[slot] = c["label"]
    n = order_accepted(
        ev,
        n,
        seq,
        CommandKind.PLACE_ORDER,
        side,
        0,
        account,
        instrument,
        order_id_of(st, slot),
        price,
        qty,
    )
    set_label(ev, n, c["label"])
    n, rem, stopped = match(
        st,
        ev,
        n,
        seq,
        CommandKind.PLACE_ORDER,
        instrument,
        side,
        price,
        sweep,
        qty,
        slot,
        position,
        account,
    )
    return finish_incoming(
        st,
        ev,
        n,
        seq,
        CommandKind.PLACE_ORDER,
        slot,
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
def cancel_order(st, ev, n, cmds, i):
    """CANCEL_ORDER: ACCEPTED, then the order's CANCELLED."""
    c = cmds[i]
    reason, account, slot, position, instrument = load_own_order(st, c)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    seq = c["seq"]
    side = np.int64(st.ord_i4[slot, Order4.META] & 1)
    oid = order_id_of(st, slot)
    price = st.ord_i8[slot, Order8.PRICE_TICKS]
    qty = st.ord_i8[slot, Order8.QTY_LOTS]
    label = st.ord_label[slot]
    n = order_accepted(
        ev, n, seq, CommandKind.CANCEL_ORDER, side, 0, account, instrument, oid, price, qty
    )
    set_label(ev, n, label)
    n, _ = cancel_resting(
        st, ev, n, seq, CommandKind.CANCEL_ORDER, slot, instrument, side, Reason.CANCEL_BY_USER, 0
    )
    position_release_if_idle(st, position)
    return n


@kernel
def amend_order(st, ev, n, cmds, i):
    """AMEND_ORDER: validate (``load_own_order``, ``validate_amend``), then apply
    (``apply_amend``)."""
    c = cmds[i]
    reason, account, slot, position, instrument = load_own_order(st, c)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    reason, price, qty, keep = validate_amend(st, c, account, slot, position, instrument)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    return apply_amend(st, ev, n, c["seq"], account, slot, position, instrument, price, qty, keep)


@kernel
def apply_amend(st, ev, n, seq, account, slot, position, instrument, price, qty, keep):
    """Apply a validated AMEND_ORDER: ACCEPTED and AMENDED, then shrink the order in place
    (``keep``: same price, no more lots) or take it out of the queue and match it again as a
    new incoming order at its new terms. Cannot fail."""
    side = np.int64(st.ord_i4[slot, Order4.META] & 1)
    old_qty = st.ord_i8[slot, Order8.QTY_LOTS]
    oid = order_id_of(st, slot)
    label = st.ord_label[slot]
    n = order_accepted(
        ev, n, seq, CommandKind.AMEND_ORDER, side, 0, account, instrument, oid, price, qty
    )
    set_label(ev, n, label)
    n = amended(ev, n, seq, side, account, instrument, oid, price, qty, 1 if keep else 0)
    set_label(ev, n, label)
    if keep:
        if qty < old_qty:
            order_shrink(st, slot, instrument, side, old_qty - qty)
        return n
    order_unlink(st, slot, instrument, side)
    st.ord_i8[slot, Order8.PRICE_TICKS] = price
    st.ord_i8[slot, Order8.QTY_LOTS] = qty
    n, rem, stopped = match(
        st,
        ev,
        n,
        seq,
        CommandKind.AMEND_ORDER,
        instrument,
        side,
        price,
        False,
        qty,
        slot,
        position,
        account,
    )
    return finish_incoming(
        st,
        ev,
        n,
        seq,
        CommandKind.AMEND_ORDER,
        slot,
        instrument,
        side,
        price,
        False,
        True,
        rem,
        qty,
        stopped,
        account,
        position,
    )


__all__ = ["amend_order", "cancel_order", "crosses", "place_order", "reject"]
