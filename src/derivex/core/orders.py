"""Order commands: place, cancel, amend. Each validates completely, then mutates.

Validation order and event contents follow ``docs/core-semantics.md`` exactly.
Cost: O(1) validation (O(log levels) for level lookups), plus the match.
"""

from __future__ import annotations

import numpy as np

from derivex.core.accounting import gas_refill
from derivex.core.book import ladder_search, order_free, order_rest, order_shrink, order_unlink
from derivex.core.config import (
    P_GAS_BASE,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_OPEN_ORDERS_PER_ACCOUNT,
    P_MAX_ORDER_LOTS,
    P_MAX_ORDERS,
    P_MAX_ORDERS_PER_BOOK,
    P_MAX_POSITION_LOTS,
    P_MAX_POSITIONS,
)
from derivex.core.emit import amended, expired, order_accepted, rejected, set_label
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Order4,
    Order8,
    Pos4,
    Pos8,
)
from derivex.core.matching import (
    cancel_resting,
    crosses,
    match,
    opposite_best_price,
    reducing_capacity,
    scan,
)
from derivex.core.pools import (
    order_alloc,
    order_id_of,
    order_slot_of,
    position_find,
    position_get_or_create,
    position_release_if_idle,
)
from derivex.core.records import (
    CLIENT_ORDER_FLAGS,
    SYSTEM_ACCOUNTS,
    AccountState,
    CommandKind,
    InstrumentStatus,
    OrderFlag,
    OrderType,
    Reason,
    SelfTradePrevention,
    Side,
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


@kernel
def reject(st, ev, n, cmds, i, reason, leg):
    """REJECTED event echoing the command's fields as sent."""
    c = cmds[i]
    n = rejected(
        ev,
        n,
        c["seq"],
        c["kind"],
        c["side"],
        reason,
        leg,
        c["account"],
        c["instrument"],
        c["order_id"],
        c["price_ticks"],
        c["qty_lots"],
    )
    set_label(ev, n, c["label"])
    return n


@kernel
def check_trader(st, account):
    """Reason code for an account that may not trade, else OK."""
    if account >= st.counters[Counter.ACCOUNT_HWM] or st.acc_i4[account, Account4.STATUS] != 1:
        return Reason.UNKNOWN_ACCOUNT
    if account < SYSTEM_ACCOUNTS:
        return Reason.SYSTEM_ACCOUNT
    if st.acc_i4[account, Account4.STATE] == AccountState.IN_LIQUIDATION:
        return Reason.ACCOUNT_IN_LIQUIDATION
    return Reason.OK


@kernel
def admit_trader(st, account):
    """Gate of every trading command: the account may trade and can pay the base gas (which
    is then charged). Returns OK or the reject reason; nothing is charged on a reject."""
    reason = check_trader(st, account)
    if reason == Reason.OK and not charge_base_gas(st, account):
        reason = Reason.GAS_EXHAUSTED
    return reason


@kernel
def charge_base_gas(st, account):
    """Refill, then charge the base weight; False (nothing charged) if the budget is short."""
    gas_refill(st, account, st.counters[Counter.CLOCK_NS])
    base = st.params[P_GAS_BASE]
    if st.acc_i8[account, Account8.GAS] < base:
        return False
    st.acc_i8[account, Account8.GAS] -= base
    return True


@kernel
def check_quantity(st, instrument, qty):
    if qty <= 0:
        return Reason.QTY_NOT_POSITIVE
    if qty > st.params[P_MAX_ORDER_LOTS]:
        return Reason.QTY_TOO_LARGE
    step = st.ins_i8[instrument, Ins8.MIN_LOTS]
    if step != 1 and qty % step != 0:
        return Reason.QTY_OFF_STEP
    return Reason.OK


@kernel
def check_price(st, instrument, price):
    if price <= 0:
        return Reason.PRICE_NOT_POSITIVE
    if price > st.ins_i8[instrument, Ins8.MAX_PRICE]:
        return Reason.PRICE_TOO_LARGE
    tick = st.ins_i8[instrument, Ins8.TICK]
    if tick != 1 and price % tick != 0:
        return Reason.PRICE_OFF_TICK
    return Reason.OK


@kernel
def post_only_price(st, instrument, side, price, reject_flag):
    """Final price of a post-only order, or -1 if it must be rejected."""
    best = opposite_best_price(st, instrument, side)
    if best == 0:
        return price
    tick = st.ins_i8[instrument, Ins8.TICK]
    if side == Side.BUY:
        if price < best:
            return price
        if reject_flag:
            return -1
        price = best - tick
        return price if price > 0 else -1
    if price > best:
        return price
    if reject_flag:
        return -1
    price = best + tick
    return price if price <= st.ins_i8[instrument, Ins8.MAX_PRICE] else -1


@kernel
def within_position_limit(st, position, side, qty, released):
    """Whether the worst-case position stays within the limit if ``qty`` more lots rest on
    ``side`` (``released`` lots of an amended order on that side count as gone)."""
    limit = st.params[P_MAX_POSITION_LOTS]
    pos = 0
    open_buy = 0
    open_sell = 0
    if position != NIL:
        pos = st.pos_i8[position, Pos8.QTY]
        open_buy = st.pos_i8[position, Pos8.OPEN_BUY]
        open_sell = st.pos_i8[position, Pos8.OPEN_SELL]
    if side == Side.BUY:
        return pos + open_buy - released + qty <= limit
    return -(pos - (open_sell - released) - qty) <= limit


@kernel
def level_capacity_reason(st, instrument, side, price):
    """Capacity reason for resting at ``price`` if that needs a new level, else OK."""
    row = instrument * 2 + side
    if (
        st.ladder_len[row] < st.params[P_MAX_LEVELS_PER_SIDE]
        and st.counters[Counter.LEVELS_LIVE] < st.params[P_MAX_LEVELS]
    ):
        return Reason.OK  # room for a new level either way: no need to look the price up
    index = ladder_search(st, row, side, price)
    if index < st.ladder_len[row] and st.ladder_price[row, index] == price:
        return Reason.OK
    if st.ladder_len[row] >= st.params[P_MAX_LEVELS_PER_SIDE]:
        return Reason.BOOK_LEVEL_LIMIT
    if st.counters[Counter.LEVELS_LIVE] >= st.params[P_MAX_LEVELS]:
        return Reason.LEVEL_POOL_FULL
    return Reason.OK


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
    c = cmds[i]
    seq = c["seq"]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    instrument = np.int64(c["instrument"])
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_INSTRUMENT, 0)
    side = np.int64(c["side"])
    order_type = np.int64(c["order_type"])
    tif = np.int64(c["tif"])
    flags = np.int64(c["flags"])
    if side > 1:
        return reject(st, ev, n, cmds, i, Reason.BAD_SIDE, 0)
    if order_type > 1:
        return reject(st, ev, n, cmds, i, Reason.BAD_ORDER_TYPE, 0)
    if tif > 2:
        return reject(st, ev, n, cmds, i, Reason.BAD_TIME_IN_FORCE, 0)
    is_market = order_type == OrderType.MARKET
    post_only = flags & OrderFlag.POST_ONLY
    if (
        (flags & ~CLIENT_ORDER_FLAGS)
        or ((flags & OrderFlag.REJECT_POST_ONLY) and not post_only)
        or (post_only and (is_market or tif != TimeInForce.GTC))
    ):
        return reject(st, ev, n, cmds, i, Reason.BAD_FLAGS, 0)
    status = st.ins_i4[instrument, Ins4.STATUS]
    if status == InstrumentStatus.HALTED:
        return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_HALTED, 0)
    if status == InstrumentStatus.CLOSED or status == InstrumentStatus.SETTLED:
        return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_CLOSED, 0)
    reason = market_reason(st, instrument, flags & OrderFlag.REDUCE_ONLY)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    qty = c["qty_lots"]
    reason = check_quantity(st, instrument, qty)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    price = np.int64(0)
    if not is_market:
        price = c["price_ticks"]
        reason = check_price(st, instrument, price)
        if reason != Reason.OK:
            return reject(st, ev, n, cmds, i, reason, 0)
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
            return reject(st, ev, n, cmds, i, reason, 0)
    position = position_find(st, account, instrument)
    if flags & OrderFlag.REDUCE_ONLY:
        capacity = reducing_capacity(st, position, side)
        if capacity == 0:
            return reject(st, ev, n, cmds, i, Reason.REDUCE_ONLY_WOULD_INCREASE, 0)
        if capacity < qty:
            qty = capacity
    if post_only:
        price = post_only_price(st, instrument, side, price, flags & OrderFlag.REJECT_POST_ONLY)
        if price < 0:
            return reject(st, ev, n, cmds, i, Reason.POST_ONLY_WOULD_TAKE, 0)
        reason = band_reason(st, instrument, price) if banded else Reason.OK
        if reason != Reason.OK:  # repriced away from the book and out of the band
            return reject(st, ev, n, cmds, i, reason, 0)
    if not within_position_limit(st, position, side, qty, 0):
        return reject(st, ev, n, cmds, i, Reason.POSITION_LIMIT, 0)
    reason = margin_reason(st, account, instrument, position, side, qty, qty * price)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    resting = (not is_market) and tif == TimeInForce.GTC
    if resting:
        if st.acc_i4[account, Account4.OPEN_ORDERS] >= st.params[P_MAX_OPEN_ORDERS_PER_ACCOUNT]:
            return reject(st, ev, n, cmds, i, Reason.ACCOUNT_ORDER_LIMIT, 0)
        if st.ins_i4[instrument, Ins4.RESTING] >= st.params[P_MAX_ORDERS_PER_BOOK]:
            return reject(st, ev, n, cmds, i, Reason.BOOK_ORDER_LIMIT, 0)
    if st.counters[Counter.ORDERS_LIVE] >= st.params[P_MAX_ORDERS]:
        return reject(st, ev, n, cmds, i, Reason.ORDER_POOL_FULL, 0)
    if resting:
        reason = level_capacity_reason(st, instrument, side, price)
        if reason != Reason.OK:
            return reject(st, ev, n, cmds, i, reason, 0)
    if position == NIL and st.counters[Counter.POSITIONS_LIVE] >= st.params[P_MAX_POSITIONS]:
        return reject(st, ev, n, cmds, i, Reason.POSITION_POOL_FULL, 0)
    stp_reject = st.acc_i4[account, Account4.STP] == SelfTradePrevention.REJECT_INCOMING
    if tif == TimeInForce.FOK or stp_reject:
        fillable, gas_needed, own = scan(
            st, instrument, side, price, sweep, qty, account, stp_reject
        )
        if own:
            return reject(st, ev, n, cmds, i, Reason.SELF_TRADE_REJECTED, 0)
        if tif == TimeInForce.FOK:
            if gas_needed > st.acc_i8[account, Account8.GAS]:
                return reject(st, ev, n, cmds, i, Reason.GAS_EXHAUSTED, 0)
            if fillable < qty:
                return reject(st, ev, n, cmds, i, Reason.FOK_NOT_FILLED, 0)
    # accepted: from here on the command cannot fail
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
def find_own_order(st, account, order_id):
    """(slot, reason) of a live order owned by ``account``."""
    slot = order_slot_of(st, order_id)
    if slot == NIL:
        return NIL, Reason.UNKNOWN_ORDER
    position = st.ord_i4[slot, Order4.POSITION]
    if st.pos_i4[position, Pos4.ACCOUNT] != account:
        return NIL, Reason.NOT_ORDER_OWNER
    return slot, Reason.OK


@kernel
def cancel_order(st, ev, n, cmds, i):
    c = cmds[i]
    seq = c["seq"]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    slot, reason = find_own_order(st, account, np.int64(c["order_id"]))
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    position = st.ord_i4[slot, Order4.POSITION]
    instrument = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
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
    c = cmds[i]
    seq = c["seq"]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    slot, reason = find_own_order(st, account, np.int64(c["order_id"]))
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    position = st.ord_i4[slot, Order4.POSITION]
    instrument = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
    meta = st.ord_i4[slot, Order4.META]
    side = np.int64(meta & 1)
    flags = np.int64(meta >> 1)
    status = st.ins_i4[instrument, Ins4.STATUS]
    if status == InstrumentStatus.HALTED:
        return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_HALTED, 0)
    reason = market_reason(st, instrument, flags & OrderFlag.REDUCE_ONLY)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    qty = c["qty_lots"]
    reason = check_quantity(st, instrument, qty)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    price = c["price_ticks"]
    reason = check_price(st, instrument, price)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    old_price = st.ord_i8[slot, Order8.PRICE_TICKS]
    old_qty = st.ord_i8[slot, Order8.QTY_LOTS]
    # the band applies to every amend that moves the price or adds lots; a pure reduction
    # at the old price stays possible after the mark has left the order behind
    banded = risk_on(st) and (price != old_price or qty > old_qty)
    if banded:
        price, reason = banded_price(st, instrument, side, price)
        if reason != Reason.OK:
            return reject(st, ev, n, cmds, i, reason, 0)
    if flags & OrderFlag.REDUCE_ONLY:
        capacity = reducing_capacity(st, position, side)
        if capacity == 0:
            return reject(st, ev, n, cmds, i, Reason.REDUCE_ONLY_WOULD_INCREASE, 0)
        if capacity < qty:
            qty = capacity
    if flags & OrderFlag.POST_ONLY:
        price = post_only_price(st, instrument, side, price, flags & OrderFlag.REJECT_POST_ONLY)
        if price < 0:
            return reject(st, ev, n, cmds, i, Reason.POST_ONLY_WOULD_TAKE, 0)
        reason = band_reason(st, instrument, price) if banded else Reason.OK
        if reason != Reason.OK:
            return reject(st, ev, n, cmds, i, reason, 0)
    if not within_position_limit(st, position, side, qty, old_qty):
        return reject(st, ev, n, cmds, i, Reason.POSITION_LIMIT, 0)
    reason = margin_reason(
        st, account, instrument, position, side, qty - old_qty, qty * price - old_qty * old_price
    )
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    keep = price == old_price and qty <= old_qty
    if price != old_price:
        reason = level_capacity_reason(st, instrument, side, price)
        if reason != Reason.OK:
            return reject(st, ev, n, cmds, i, reason, 0)
    if (not keep) and st.acc_i4[account, Account4.STP] == SelfTradePrevention.REJECT_INCOMING:
        _, _, own = scan(st, instrument, side, price, False, qty, account, True)
        if own:
            return reject(st, ev, n, cmds, i, Reason.SELF_TRADE_REJECTED, 0)
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
