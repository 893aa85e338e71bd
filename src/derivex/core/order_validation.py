"""Validation of PLACE_ORDER and AMEND_ORDER as whole commands: every check, in the order
``docs/core-semantics.md`` fixes, returning the reason and the terms the order goes on with
(its price after the band and post-only repricing, its quantity after a reduce-only clamp).
Nothing changes except the base gas ``admit_trader`` charges (or ``load_own_order``, for an
amend). The commands themselves (``orders``) apply what passed.

Cost: O(1) (O(log levels) for level lookups), plus an O(levels reached) scan for
fill-or-kill orders and accounts that reject self-trades.
"""

from __future__ import annotations

import numpy as np

from derivex.core.client_ids import new_client_id_reason, uses_client_id
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account8, Counter, Ins4, Order4, Order8
from derivex.core.matching import reducing_capacity, scan
from derivex.core.mmp import mmp_order_reason
from derivex.core.order_checks import (
    admit_trader,
    capacity_reason,
    check_price,
    check_quantity,
    check_trader,
    level_capacity_reason,
    open_for_orders_reason,
    order_fields_reason,
    post_only_price,
    within_position_limit,
)
from derivex.core.pools import position_find
from derivex.core.records import (
    InstrumentStatus,
    OrderFlag,
    OrderType,
    Reason,
    TimeInForce,
)
from derivex.core.risk import (
    band_reason,
    banded_price,
    margin_reason,
    market_band_price,
    market_reason,
    risk_on,
)
from derivex.core.stp import rejects_incoming


@kernel
def flag_terms(st, instrument, side, flags, price, qty, position, banded):
    """The terms a reduce-only and a post-only order go on with, shared by place and amend.
    Returns ``(reason, price, qty)``: a reduce-only order is clamped to the lots that only
    reduce the position (rejected if none); a post-only order is repriced one tick away from
    the opposite best price (rejected if it would take and has reject-post-only, or if the
    new price leaves the band when ``banded``)."""
    if flags & OrderFlag.REDUCE_ONLY:
        capacity = reducing_capacity(st, position, side)
        if capacity == 0:
            return Reason.REDUCE_ONLY_WOULD_INCREASE, price, qty
        if capacity < qty:
            qty = capacity
    if flags & OrderFlag.POST_ONLY:
        price = post_only_price(st, instrument, side, price, flags & OrderFlag.REJECT_POST_ONLY)
        if price < 0:
            return Reason.POST_ONLY_WOULD_TAKE, price, qty
        reason = band_reason(st, instrument, price) if banded else Reason.OK
        if reason != Reason.OK:  # repriced away from the book and out of the band
            return reason, price, qty
    return Reason.OK, price, qty


@kernel
def validate_place(st, c):
    """Validate the PLACE_ORDER ``c`` completely (charging its base gas once the account is
    admitted). Returns ``(reason, price, qty, tif, sweep, position)``: the order's price and
    quantity, its time in force (a market GTC order becomes IOC), whether it trades at any
    price, and the account's position slot in the instrument (NIL if none yet); only the
    reason is meaningful unless it is OK."""
    return validate_place_terms(
        st,
        np.int64(c["account"]),
        np.int64(c["instrument"]),
        np.int64(c["side"]),
        np.int64(c["order_type"]),
        np.int64(c["tif"]),
        np.int64(c["flags"]),
        np.int64(c["qty_lots"]),
        np.int64(c["price_ticks"]),
        False,
        c["label"],
    )


@kernel
def validate_place_terms(
    st, account, instrument, side, order_type, tif, flags, qty, limit, paid, label
):
    """``validate_place`` on the terms of an order; ``paid``: its base gas was charged
    already (an order a trigger spawns: the trigger prepaid it), so the account is only
    checked, not charged; ``label``: its client order id when ``flags`` say so."""
    if paid:
        reason = check_trader(st, account)
    else:
        reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reason, np.int64(0), np.int64(0), np.int64(0), False, np.int64(NIL)
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return Reason.UNKNOWN_INSTRUMENT, np.int64(0), np.int64(0), np.int64(0), False, NIL
    reason = order_fields_reason(side, order_type, tif, flags)
    if reason == Reason.OK and uses_client_id(flags):
        reason = new_client_id_reason(st, account, label)
    if reason == Reason.OK:
        reason = open_for_orders_reason(st, instrument)
    if reason == Reason.OK:
        reason = mmp_order_reason(st, account, instrument, order_type, flags)
    if reason == Reason.OK:
        reason = market_reason(st, instrument, flags & OrderFlag.REDUCE_ONLY)
    if reason == Reason.OK:
        reason = check_quantity(st, instrument, qty)
    if reason != Reason.OK:
        return reason, np.int64(0), np.int64(0), np.int64(0), False, np.int64(NIL)
    is_market = order_type == OrderType.MARKET
    price = np.int64(0)
    if not is_market:
        price = limit
        reason = check_price(st, instrument, price)
        if reason != Reason.OK:
            return reason, np.int64(0), np.int64(0), np.int64(0), False, np.int64(NIL)
    if is_market and tif == TimeInForce.GTC:
        tif = TimeInForce.IOC
    sweep = is_market  # trades at any price
    banded = risk_on(st)
    if is_market and banded:
        price = market_band_price(st, instrument, side)  # no further than the band
        sweep = False
    elif banded:
        price, reason = banded_price(st, instrument, side, price)
        if reason != Reason.OK:
            return reason, np.int64(0), np.int64(0), np.int64(0), False, np.int64(NIL)
    position = position_find(st, account, instrument)
    reason, price, qty = flag_terms(st, instrument, side, flags, price, qty, position, banded)
    if reason != Reason.OK:
        return reason, price, qty, tif, sweep, position
    if not within_position_limit(st, position, side, qty, 0):
        return Reason.POSITION_LIMIT, price, qty, tif, sweep, position
    reason = margin_reason(st, account, instrument, position, side, qty, qty * price)
    if reason == Reason.OK:
        resting = (not is_market) and tif == TimeInForce.GTC
        reason = capacity_reason(st, account, instrument, side, price, position, resting)
    if reason != Reason.OK:
        return reason, price, qty, tif, sweep, position
    stp_reject = rejects_incoming(st, account)
    if tif == TimeInForce.FOK or stp_reject:
        fillable, gas_needed, own = scan(
            st, instrument, side, price, sweep, qty, account, stp_reject
        )
        if own:
            return Reason.SELF_TRADE_REJECTED, price, qty, tif, sweep, position
        if tif == TimeInForce.FOK:
            if gas_needed > st.acc_i8[account, Account8.GAS]:
                return Reason.GAS_EXHAUSTED, price, qty, tif, sweep, position
            if fillable < qty:
                return Reason.FOK_NOT_FILLED, price, qty, tif, sweep, position
    return Reason.OK, price, qty, tif, sweep, position


@kernel
def validate_amend(st, c, account, slot, position, instrument):
    """Validate the AMEND_ORDER ``c`` of the live order ``slot`` (found and its account
    admitted by ``load_own_order``). Returns ``(reason, price, qty, keep)``: the new price
    and quantity, and whether the order keeps its place in the queue (same price, no more
    lots); only the reason is meaningful unless it is OK."""
    meta = st.ord_i4[slot, Order4.META]
    side = np.int64(meta & 1)
    flags = np.int64(meta >> 1)
    reason = Reason.OK
    if st.ins_i4[instrument, Ins4.STATUS] == InstrumentStatus.HALTED:
        reason = Reason.INSTRUMENT_HALTED
    if reason == Reason.OK:
        reason = market_reason(st, instrument, flags & OrderFlag.REDUCE_ONLY)
    qty = c["qty_lots"]
    if reason == Reason.OK:
        reason = check_quantity(st, instrument, qty)
    price = c["price_ticks"]
    if reason == Reason.OK:
        reason = check_price(st, instrument, price)
    if reason != Reason.OK:
        return reason, price, qty, False
    old_price = st.ord_i8[slot, Order8.PRICE_TICKS]
    old_qty = st.ord_i8[slot, Order8.QTY_LOTS]
    # the band applies to every amend that moves the price or adds lots; a pure reduction
    # at the old price stays possible after the mark has left the order behind
    banded = risk_on(st) and (price != old_price or qty > old_qty)
    if banded:
        price, reason = banded_price(st, instrument, side, price)
        if reason != Reason.OK:
            return reason, price, qty, False
    reason, price, qty = flag_terms(st, instrument, side, flags, price, qty, position, banded)
    if reason != Reason.OK:
        return reason, price, qty, False
    if not within_position_limit(st, position, side, qty, old_qty):
        return Reason.POSITION_LIMIT, price, qty, False
    reason = margin_reason(
        st, account, instrument, position, side, qty - old_qty, qty * price - old_qty * old_price
    )
    if reason != Reason.OK:
        return reason, price, qty, False
    keep = price == old_price and qty <= old_qty
    if price != old_price:
        reason = level_capacity_reason(st, instrument, side, price)
        if reason != Reason.OK:
            return reason, price, qty, keep
    if (not keep) and rejects_incoming(st, account):
        _, _, own = scan(st, instrument, side, price, False, qty, account, True)
        if own:
            return Reason.SELF_TRADE_REJECTED, price, qty, keep
    return Reason.OK, price, qty, keep
