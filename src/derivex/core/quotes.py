"""Mass quote: one command replaces an account's bid and ask on many instruments.

A ``MASS_QUOTE`` header is followed by ``count`` ``QUOTE_LEG`` records. The whole command is
validated before anything changes; then each leg cancels the account's previous quotes on
its instrument and places the new ones as post-only orders, each side rejected on its own if
it would trade. Cost: O(count^2) validation (duplicate check, count <= max_quote_legs) plus
O(count log levels) placement.
"""

from __future__ import annotations

import numpy as np

from derivex.core.book import ladder_search, order_rest
from derivex.core.config import (
    P_GAS_PER_LEVEL,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_OPEN_ORDERS_PER_ACCOUNT,
    P_MAX_ORDERS,
    P_MAX_ORDERS_PER_BOOK,
    P_MAX_POSITIONS,
    P_MAX_QUOTE_LEGS,
)
from derivex.core.emit import accepted, order_accepted, rejected, set_label
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account4, Account8, Counter, Ins4, Order4, Order8, Pos8
from derivex.core.matching import cancel_resting
from derivex.core.mmp import mmp_quote_reason, mmp_tag_quotes
from derivex.core.order_checks import (
    admit_trader,
    check_price,
    check_quantity,
    post_only_price,
    reject,
    within_position_limit,
)
from derivex.core.pools import (
    order_alloc,
    order_id_of,
    order_slot_of,
    position_find,
    position_get_or_create,
    position_release_if_idle,
)
from derivex.core.records import CommandKind, InstrumentStatus, OrderFlag, Reason, Side
from derivex.core.risk import band_reason, margin_reason, market_reason, risk_on


@kernel
def mass_quote_span(cmds, i, max_legs):
    """Records a mass quote at ``i`` consumes: 1 + count if all its legs follow, else 1."""
    count = np.int64(cmds[i]["count"])
    if count < 1 or count > max_legs or i + count >= cmds.shape[0]:
        return 1
    for j in range(1, count + 1):
        if cmds[i + j]["kind"] != CommandKind.QUOTE_LEG:
            return 1
    return 1 + count


@kernel
def _live_quote(st, position, field):
    """Slot of the live quote order referenced by ``field`` of the position, or NIL."""
    if position == NIL:
        return NIL
    return order_slot_of(st, st.pos_i8[position, field])


@kernel
def _side_qty(st, slot):
    return st.ord_i8[slot, Order8.QTY_LOTS] if slot != NIL else 0


@kernel
def _validate_leg(st, cmds, i, j, account):
    """Reason a leg is invalid, else OK."""
    leg = cmds[i + 1 + j]
    instrument = np.int64(leg["instrument"])
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return Reason.UNKNOWN_INSTRUMENT
    status = st.ins_i4[instrument, Ins4.STATUS]
    if status == InstrumentStatus.HALTED:
        return Reason.INSTRUMENT_HALTED
    if status == InstrumentStatus.CLOSED or status == InstrumentStatus.SETTLED:
        return Reason.INSTRUMENT_CLOSED
    reason = market_reason(st, instrument, False)
    if reason != Reason.OK:
        return reason
    for k in range(j):
        if np.int64(cmds[i + 1 + k]["instrument"]) == instrument:
            return Reason.DUPLICATE_QUOTE_INSTRUMENT
    bid_qty = leg["bid_qty_lots"]
    ask_qty = leg["ask_qty_lots"]
    if bid_qty < 0 or ask_qty < 0:
        return Reason.QTY_NOT_POSITIVE
    if bid_qty > 0:
        reason = check_quantity(st, instrument, bid_qty)
        if reason == Reason.OK:
            reason = check_price(st, instrument, leg["bid_price_ticks"])
        if reason != Reason.OK:
            return reason
    if ask_qty > 0:
        reason = check_quantity(st, instrument, ask_qty)
        if reason == Reason.OK:
            reason = check_price(st, instrument, leg["ask_price_ticks"])
        if reason != Reason.OK:
            return reason
    if bid_qty > 0 and ask_qty > 0 and leg["bid_price_ticks"] >= leg["ask_price_ticks"]:
        return Reason.CROSSED_QUOTE
    position = position_find(st, account, instrument)
    old_bid = _side_qty(st, _live_quote(st, position, Pos8.QUOTE_BID))
    old_ask = _side_qty(st, _live_quote(st, position, Pos8.QUOTE_ASK))
    if not within_position_limit(st, position, Side.BUY, bid_qty, old_bid):
        return Reason.POSITION_LIMIT
    if not within_position_limit(st, position, Side.SELL, ask_qty, old_ask):
        return Reason.POSITION_LIMIT
    return Reason.OK


@kernel
def _needs_level(st, instrument, side, price):
    row = instrument * 2 + side
    index = ladder_search(st, row, side, price)
    return not (index < st.ladder_len[row] and st.ladder_price[row, index] == price)


@kernel
def _capacity(st, cmds, i, count, account):
    """(reason, leg) of the first capacity limit the whole quote would break."""
    replaced = 0
    new = 0
    new_levels = 0
    new_positions = 0
    for j in range(count):
        leg = cmds[i + 1 + j]
        instrument = np.int64(leg["instrument"])
        position = position_find(st, account, instrument)
        replaced_here = 0
        if _live_quote(st, position, Pos8.QUOTE_BID) != NIL:
            replaced_here += 1
        if _live_quote(st, position, Pos8.QUOTE_ASK) != NIL:
            replaced_here += 1
        new_here = 0
        for side in range(2):
            qty = leg["bid_qty_lots"] if side == 0 else leg["ask_qty_lots"]
            price = leg["bid_price_ticks"] if side == 0 else leg["ask_price_ticks"]
            if qty > 0:
                new_here += 1
                if _needs_level(st, instrument, side, price):
                    new_levels += 1
        replaced += replaced_here
        new += new_here
        if new_here > 0 and position == NIL:
            new_positions += 1
    if (
        st.acc_i4[account, Account4.OPEN_ORDERS] - replaced + new
        > st.params[P_MAX_OPEN_ORDERS_PER_ACCOUNT]
    ):
        return Reason.ACCOUNT_ORDER_LIMIT, 0
    for j in range(count):
        leg = cmds[i + 1 + j]
        instrument = np.int64(leg["instrument"])
        position = position_find(st, account, instrument)
        delta = 0
        if _live_quote(st, position, Pos8.QUOTE_BID) != NIL:
            delta -= 1
        if _live_quote(st, position, Pos8.QUOTE_ASK) != NIL:
            delta -= 1
        if leg["bid_qty_lots"] > 0:
            delta += 1
        if leg["ask_qty_lots"] > 0:
            delta += 1
        if st.ins_i4[instrument, Ins4.RESTING] + delta > st.params[P_MAX_ORDERS_PER_BOOK]:
            return Reason.BOOK_ORDER_LIMIT, j + 1
    if st.counters[Counter.ORDERS_LIVE] - replaced + new > st.params[P_MAX_ORDERS]:
        return Reason.ORDER_POOL_FULL, 0
    for j in range(count):
        leg = cmds[i + 1 + j]
        instrument = np.int64(leg["instrument"])
        for side in range(2):
            qty = leg["bid_qty_lots"] if side == 0 else leg["ask_qty_lots"]
            price = leg["bid_price_ticks"] if side == 0 else leg["ask_price_ticks"]
            full = st.ladder_len[instrument * 2 + side] >= st.params[P_MAX_LEVELS_PER_SIDE]
            if qty > 0 and full and _needs_level(st, instrument, side, price):
                return Reason.BOOK_LEVEL_LIMIT, j + 1
    if st.counters[Counter.LEVELS_LIVE] + new_levels > st.params[P_MAX_LEVELS]:
        return Reason.LEVEL_POOL_FULL, 0
    if st.counters[Counter.POSITIONS_LIVE] + new_positions > st.params[P_MAX_POSITIONS]:
        return Reason.POSITION_POOL_FULL, 0
    return Reason.OK, 0


@kernel
def _replace_side(st, ev, n, seq, leg, instrument, position, side):
    """Cancel the account's live quote on ``side`` of this instrument, if any."""
    field = Pos8.QUOTE_BID if side == Side.BUY else Pos8.QUOTE_ASK
    old = _live_quote(st, position, field)
    if old != NIL:
        n, _ = cancel_resting(
            st,
            ev,
            n,
            seq,
            CommandKind.MASS_QUOTE,
            old,
            instrument,
            side,
            Reason.CANCEL_QUOTE_REPLACED,
            leg,
        )
    st.pos_i8[position, field] = 0
    return n


@kernel
def _place_side(st, ev, n, seq, leg, account, instrument, position, side, price, qty, label):
    """Rest one quote side as a post-only order, or reject that side if it is outside the
    price band (a quote states an exact price: refused, not clamped; only this side, as the
    mark moves between quotes) or would trade."""
    if qty == 0:
        return n
    reason = band_reason(st, instrument, price) if risk_on(st) else Reason.OK
    if reason != Reason.OK:
        n = rejected(
            ev,
            n,
            seq,
            CommandKind.MASS_QUOTE,
            side,
            reason,
            leg,
            account,
            instrument,
            0,
            price,
            qty,
        )
        set_label(ev, n, label)
        return n
    if post_only_price(st, instrument, side, price, True) < 0:
        n = rejected(
            ev,
            n,
            seq,
            CommandKind.MASS_QUOTE,
            side,
            Reason.POST_ONLY_WOULD_TAKE,
            leg,
            account,
            instrument,
            0,
            price,
            qty,
        )
        set_label(ev, n, label)
        return n
    reason = margin_reason(st, account, instrument, position, side, qty, qty * price)
    if reason != Reason.OK:
        n = rejected(
            ev,
            n,
            seq,
            CommandKind.MASS_QUOTE,
            side,
            reason,
            leg,
            account,
            instrument,
            0,
            price,
            qty,
        )
        set_label(ev, n, label)
        return n
    slot = order_alloc(st)
    st.ord_i8[slot, Order8.PRICE_TICKS] = price
    st.ord_i8[slot, Order8.QTY_LOTS] = qty
    st.ord_i4[slot, Order4.POSITION] = position
    st.ord_i4[slot, Order4.META] = side | ((OrderFlag.QUOTE | OrderFlag.POST_ONLY) << 1)
    st.ord_label[slot] = label
    order_rest(st, slot, instrument, side)
    oid = order_id_of(st, slot)
    st.pos_i8[position, Pos8.QUOTE_BID if side == Side.BUY else Pos8.QUOTE_ASK] = oid
    n = order_accepted(
        ev, n, seq, CommandKind.MASS_QUOTE, side, leg, account, instrument, oid, price, qty
    )
    set_label(ev, n, label)
    return n


@kernel
def mass_quote(st, ev, n, cmds, i):
    """Process the mass quote at ``i``; returns ``(n_events, records consumed)``."""
    c = cmds[i]
    seq = c["seq"]
    span = mass_quote_span(cmds, i, st.params[P_MAX_QUOTE_LEGS])
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0), span
    if span == 1:
        return reject(st, ev, n, cmds, i, Reason.BAD_MASS_QUOTE, 0), span
    count = span - 1
    for j in range(count):
        reason = _validate_leg(st, cmds, i, j, account)
        if reason != Reason.OK:
            return reject(st, ev, n, cmds, i, reason, j + 1), span
    reason, leg_index = mmp_quote_reason(st, cmds, i, count, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, leg_index), span
    reason, leg_index = _capacity(st, cmds, i, count, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, leg_index), span
    extra = st.params[P_GAS_PER_LEVEL] * 2 * count
    if st.acc_i8[account, Account8.GAS] < extra:
        return reject(st, ev, n, cmds, i, Reason.GAS_EXHAUSTED, 0), span
    st.acc_i8[account, Account8.GAS] -= extra
    label = c["label"]
    n = accepted(ev, n, seq, CommandKind.MASS_QUOTE, account, 0, 0, count, 0)
    set_label(ev, n, label)
    for j in range(count):
        leg = cmds[i + 1 + j]
        instrument = np.int64(leg["instrument"])
        bid_qty = leg["bid_qty_lots"]
        ask_qty = leg["ask_qty_lots"]
        position = position_find(st, account, instrument)
        if position == NIL:
            if bid_qty == 0 and ask_qty == 0:
                continue
            position = position_get_or_create(st, account, instrument)
        n = _replace_side(st, ev, n, seq, j + 1, instrument, position, Side.BUY)
        n = _replace_side(st, ev, n, seq, j + 1, instrument, position, Side.SELL)
        n = _place_side(
            st,
            ev,
            n,
            seq,
            j + 1,
            account,
            instrument,
            position,
            Side.BUY,
            leg["bid_price_ticks"],
            bid_qty,
            label,
        )
        n = _place_side(
            st,
            ev,
            n,
            seq,
            j + 1,
            account,
            instrument,
            position,
            Side.SELL,
            leg["ask_price_ticks"],
            ask_qty,
            label,
        )
        mmp_tag_quotes(st, cmds, i, account, instrument, position)
        position_release_if_idle(st, position)
    return n, span
