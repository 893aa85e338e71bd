"""Validation of the order commands: each check returns a reason code (``Reason.OK`` when
the command may go on) and changes nothing, except ``admit_trader``, which charges the base
gas it checked. ``reject`` writes the REJECTED event. Validation order and event contents
follow ``docs/core-semantics.md`` exactly. Cost: O(1) (O(log levels) for level lookups,
O(levels reached) for the self-trade / fill-or-kill scan).
"""

from __future__ import annotations

import numpy as np

from derivex.core.accounting import gas_refill
from derivex.core.book import ladder_search
from derivex.core.client_ids import client_order_slot, uses_client_id
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
from derivex.core.emit import rejected, set_label
from derivex.core.jit import kernel
from derivex.core.layout import (
    ACCOUNT_ACTIVE,
    ACCOUNT_BLOCKED,
    NIL,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Order4,
    Pos4,
    Pos8,
)
from derivex.core.matching import opposite_best_price
from derivex.core.pools import order_slot_of
from derivex.core.records import (
    CLIENT_ORDER_FLAGS,
    SYSTEM_ACCOUNTS,
    AccountState,
    InstrumentStatus,
    OrderFlag,
    OrderType,
    Reason,
    Side,
    TimeInForce,
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
    if account >= st.counters[Counter.ACCOUNT_HWM]:
        return Reason.UNKNOWN_ACCOUNT
    status = st.acc_i4[account, Account4.STATUS]
    if status == ACCOUNT_BLOCKED:
        return Reason.ACCOUNT_BLOCKED
    if status != ACCOUNT_ACTIVE:
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
def order_fields_reason(side, order_type, tif, flags):
    """Reason for a PLACE_ORDER whose side, order type, time in force or flags are invalid
    (post-only needs a GTC limit order; reject-post-only needs post-only), else OK."""
    if side > 1:
        return Reason.BAD_SIDE
    if order_type > 1:
        return Reason.BAD_ORDER_TYPE
    if tif > 2:
        return Reason.BAD_TIME_IN_FORCE
    is_market = order_type == OrderType.MARKET
    post_only = flags & OrderFlag.POST_ONLY
    if (
        (flags & ~CLIENT_ORDER_FLAGS)
        or ((flags & OrderFlag.REJECT_POST_ONLY) and not post_only)
        or (post_only and (is_market or tif != TimeInForce.GTC))
    ):
        return Reason.BAD_FLAGS
    return Reason.OK


@kernel
def open_for_orders_reason(st, instrument):
    """INSTRUMENT_HALTED / INSTRUMENT_CLOSED for an instrument that takes no new orders."""
    status = st.ins_i4[instrument, Ins4.STATUS]
    if status == InstrumentStatus.HALTED:
        return Reason.INSTRUMENT_HALTED
    if status == InstrumentStatus.CLOSED or status == InstrumentStatus.SETTLED:
        return Reason.INSTRUMENT_CLOSED
    return Reason.OK


@kernel
def capacity_reason(st, account, instrument, side, price, position, resting):
    """Capacity reason for a new order: the account's and the book's resting-order caps
    and a new level (if it rests), the order pool, and the position pool (if the account
    has no position in the instrument yet), in that order; else OK."""
    if resting:
        # untriggered trigger orders count against the cap too (core/triggers.py)
        open_orders = st.acc_i4[account, Account4.OPEN_ORDERS] + st.trg_acct[account]
        if open_orders >= st.params[P_MAX_OPEN_ORDERS_PER_ACCOUNT]:
            return Reason.ACCOUNT_ORDER_LIMIT
        if st.ins_i4[instrument, Ins4.RESTING] >= st.params[P_MAX_ORDERS_PER_BOOK]:
            return Reason.BOOK_ORDER_LIMIT
    if st.counters[Counter.ORDERS_LIVE] >= st.params[P_MAX_ORDERS]:
        return Reason.ORDER_POOL_FULL
    if resting:
        reason = level_capacity_reason(st, instrument, side, price)
        if reason != Reason.OK:
            return reason
    if position == NIL and st.counters[Counter.POSITIONS_LIVE] >= st.params[P_MAX_POSITIONS]:
        return Reason.POSITION_POOL_FULL
    return Reason.OK


@kernel
def load_own_order(st, c):
    """Gate of CANCEL_ORDER and AMEND_ORDER: admit the account (charging its base gas) and
    find the live order it names (by ``order_id``, or by client order id when the command
    has ``OrderFlag.CLIENT_ORDER_ID``: ``core/client_ids.py``). Returns ``(reason, account,
    slot, position, instrument)`` (slot, position and instrument NIL unless the reason is
    OK)."""
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reason, account, NIL, np.int32(NIL), np.int64(NIL)
    if uses_client_id(c["flags"]):
        slot, reason = client_order_slot(st, account, c["label"])
    else:
        slot, reason = find_own_order(st, account, np.int64(c["order_id"]))
    if reason != Reason.OK:
        return reason, account, NIL, np.int32(NIL), np.int64(NIL)
    position = st.ord_i4[slot, Order4.POSITION]
    instrument = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
    return Reason.OK, account, slot, position, instrument
