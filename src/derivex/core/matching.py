"""Matching: the liquidity scan and the match loop (price-time priority, trades at the
resting price, self-trade prevention, resting reduce-only clamping, gas per level and fill).

Cost of a match: O(levels crossed + resting orders reached), each bounded by the taker's gas.
"""

from __future__ import annotations

from derivex.core.accounting import settle_fill_side
from derivex.core.book import order_remove
from derivex.core.config import P_GAS_PER_FILL, P_GAS_PER_LEVEL
from derivex.core.emit import cancelled, filled, position_changed, set_label
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    Account8,
    Counter,
    Ins8,
    Level4,
    Level8,
    Order4,
    Order8,
    Pos4,
    Pos8,
)
from derivex.core.mmp import mmp_fill
from derivex.core.pools import order_id_of, position_release_if_idle
from derivex.core.records import Liquidity, OrderFlag, Reason, Side
from derivex.core.risk import risk_in, risk_out
from derivex.core.stp import counts_as_own, stp_family


@kernel
def crosses(side, limit, is_market, level_price):
    """Whether an incoming order on ``side`` trades against a level at ``level_price``."""
    if is_market:
        return True
    if side == Side.BUY:
        return level_price <= limit
    return level_price >= limit


@kernel
def reducing_capacity(st, position, side):
    """Lots an order on ``side`` may trade without increasing the position's size."""
    if position == NIL:
        return 0
    qty = st.pos_i8[position, Pos8.QTY]
    if side == Side.BUY:
        return -qty if qty < 0 else 0
    return qty if qty > 0 else 0


@kernel
def opposite_best_price(st, instrument, side):
    """Best price on the side opposite to ``side``, or 0 when that side is empty."""
    row = instrument * 2 + (1 - side)
    n = st.ladder_len[row]
    if n == 0:
        return 0
    return st.ladder_price[row, n - 1]


@kernel
def scan(st, instrument, side, limit, is_market, qty, account, stop_at_own):
    """Walk the opposite side exactly as ``match`` would, without changing anything.

    Returns ``(fillable, gas_needed, own_reached)``. Own orders (with a FAMILY scope, the
    family's too: core/stp.py) are skipped (they would be cancelled) unless ``stop_at_own``,
    which stops at the first one reached."""
    family = stp_family(st, account)
    gas_level = st.params[P_GAS_PER_LEVEL]
    gas_fill = st.params[P_GAS_PER_FILL]
    opp = 1 - side
    row = instrument * 2 + opp
    rem = qty
    gas = 0
    own = False
    touched = 0
    index = st.ladder_len[row] - 1
    while rem > 0 and index >= 0 and not own:
        level = st.ladder_level[row, index]
        if not crosses(side, limit, is_market, st.lvl_i8[level, Level8.PRICE_TICKS]):
            break
        gas += gas_level
        slot = st.lvl_i4[level, Level4.HEAD]
        while slot != NIL and rem > 0:
            gas += gas_fill
            position = st.ord_i4[slot, Order4.POSITION]
            maker = st.pos_i4[position, Pos4.ACCOUNT]
            available = st.ord_i8[slot, Order8.QTY_LOTS]
            if counts_as_own(st, maker, account, family):
                if stop_at_own:
                    own = True
                    break
                available = 0
            else:
                # scan_used holds 1 + lots this maker filled so far (0: untouched)
                if st.scan_used[maker] == 0:
                    st.scan_used[maker] = 1
                    st.scan_accounts[touched] = maker
                    touched += 1
                if (st.ord_i4[slot, Order4.META] >> 1) & OrderFlag.REDUCE_ONLY:
                    # capacity after this maker's earlier fills in the same match
                    capacity = reducing_capacity(st, position, opp) - (st.scan_used[maker] - 1)
                    if capacity < 0:
                        capacity = 0
                    if capacity < available:
                        available = capacity
                fill = rem if rem < available else available
                rem -= fill
                st.scan_used[maker] += fill
            slot = st.ord_i4[slot, Order4.NEXT]
        index -= 1
    for t in range(touched):
        st.scan_used[st.scan_accounts[t]] = 0
    return qty - rem, gas, own


@kernel
def cancel_resting(st, ev, n, seq, command, slot, instrument, side, reason, leg):
    """Emit CANCELLED for a resting order and remove it from the book and the pools (its
    position slot is left to the caller). Returns ``(n_events, position slot)``."""
    position = st.ord_i4[slot, Order4.POSITION]
    n = cancelled(
        ev,
        n,
        seq,
        command,
        side,
        reason,
        leg,
        st.pos_i4[position, Pos4.ACCOUNT],
        instrument,
        order_id_of(st, slot),
        st.ord_i8[slot, Order8.PRICE_TICKS],
        st.ord_i8[slot, Order8.QTY_LOTS],
    )
    set_label(ev, n, st.ord_label[slot])
    order_remove(st, slot, instrument, side)
    return n, position


@kernel
def match(
    st,
    ev,
    n,
    seq,
    command,
    instrument,
    side,
    limit,
    is_market,
    qty,
    taker_slot,
    taker_position,
    account,
):
    """Match an incoming order against the opposite side. Returns
    ``(n_events, remaining, stopped_by_gas)``. The taker's position stays allocated."""
    depth = st.ladder_len[instrument * 2 + 1 - side]
    if depth == 0 or not crosses(
        side, limit, is_market, st.ladder_price[instrument * 2 + 1 - side, depth - 1]
    ):
        return n, qty, False  # nothing to trade against: the common passive case
    gas_level = st.params[P_GAS_PER_LEVEL]
    gas_fill = st.params[P_GAS_PER_FILL]
    contract_value = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    maker_fee = st.ins_i8[instrument, Ins8.MAKER_FEE]
    taker_fee = st.ins_i8[instrument, Ins8.TAKER_FEE]
    taker_id = order_id_of(st, taker_slot)
    family = stp_family(st, account)  # NIL unless the taker's STP scope is FAMILY
    opp = 1 - side
    row = instrument * 2 + opp
    rem = qty
    stopped = False
    while rem > 0:
        depth = st.ladder_len[row]
        if depth == 0:
            break
        level = st.ladder_level[row, depth - 1]
        price = st.lvl_i8[level, Level8.PRICE_TICKS]
        if not crosses(side, limit, is_market, price):
            break
        if st.acc_i8[account, Account8.GAS] < gas_level:
            stopped = True
            break
        st.acc_i8[account, Account8.GAS] -= gas_level
        per_lot_value = price * contract_value
        slot = st.lvl_i4[level, Level4.HEAD]
        while slot != NIL and rem > 0:
            if st.acc_i8[account, Account8.GAS] < gas_fill:
                stopped = True
                break
            st.acc_i8[account, Account8.GAS] -= gas_fill
            following = st.ord_i4[slot, Order4.NEXT]
            position = st.ord_i4[slot, Order4.POSITION]
            maker = st.pos_i4[position, Pos4.ACCOUNT]
            if counts_as_own(st, maker, account, family):
                # only CANCEL_RESTING reaches here (REJECT_INCOMING was settled by the scan),
                # and engine orders (a liquidation), which cancel whatever the mode
                n, _ = cancel_resting(
                    st, ev, n, seq, command, slot, instrument, opp, Reason.CANCEL_SELF_TRADE, 0
                )
                if maker != account:  # a family member's position may hold nothing now
                    position_release_if_idle(st, position)
                slot = following
                continue
            available = st.ord_i8[slot, Order8.QTY_LOTS]
            reduce_only = (st.ord_i4[slot, Order4.META] >> 1) & OrderFlag.REDUCE_ONLY
            capacity = available
            if reduce_only:
                capacity = reducing_capacity(st, position, opp)
                if capacity == 0:
                    n, _ = cancel_resting(
                        st, ev, n, seq, command, slot, instrument, opp, Reason.CANCEL_REDUCE_ONLY, 0
                    )
                    position_release_if_idle(st, position)
                    slot = following
                    continue
            fill = rem
            if available < fill:
                fill = available
            if capacity < fill:
                fill = capacity
            rem -= fill
            left = available - fill
            st.ord_i8[slot, Order8.QTY_LOTS] = left
            st.lvl_i8[level, Level8.QTY_LOTS] -= fill
            risk_out(st, position)
            if opp == Side.BUY:
                st.pos_i8[position, Pos8.OPEN_BUY] -= fill
                st.pos_i8[position, Pos8.BUY_VALUE] -= fill * price
            else:
                st.pos_i8[position, Pos8.OPEN_SELL] -= fill
                st.pos_i8[position, Pos8.SELL_VALUE] -= fill * price
            maker_cash, maker_paid = settle_fill_side(
                st, instrument, position, opp, fill, per_lot_value, maker_fee
            )
            if opp == Side.BUY:
                risk_in(st, position, fill, -fill, 0)
            else:
                risk_in(st, position, -fill, 0, -fill)
            risk_out(st, taker_position)
            taker_cash, taker_paid = settle_fill_side(
                st, instrument, taker_position, side, fill, per_lot_value, taker_fee
            )
            risk_in(st, taker_position, fill if side == Side.BUY else -fill, 0, 0)
            st.counters[Counter.FILLS] += 1
            # market-maker protection: both sides' fills count toward their MMP group
            mmp_fill(st, maker, st.ord_i4[slot, Order4.META], instrument, opp, fill, seq, command)
            mmp_fill(
                st,
                account,
                st.ord_i4[taker_slot, Order4.META],
                instrument,
                side,
                fill,
                seq,
                command,
            )
            maker_id = order_id_of(st, slot)
            n = filled(
                ev,
                n,
                seq,
                command,
                opp,
                Liquidity.MAKER,
                maker,
                instrument,
                maker_id,
                price,
                fill,
                maker_paid,
                left,
            )
            n = filled(
                ev,
                n,
                seq,
                command,
                side,
                Liquidity.TAKER,
                account,
                instrument,
                taker_id,
                price,
                fill,
                taker_paid,
                rem,
            )
            n = position_changed(
                ev,
                n,
                seq,
                command,
                opp,
                Liquidity.MAKER,
                maker,
                instrument,
                maker_id,
                st.pos_i8[position, Pos8.BASIS],
                st.pos_i8[position, Pos8.QTY],
                maker_cash,
                st.acc_i8[maker, Account8.BALANCE],
            )
            n = position_changed(
                ev,
                n,
                seq,
                command,
                side,
                Liquidity.TAKER,
                account,
                instrument,
                taker_id,
                st.pos_i8[taker_position, Pos8.BASIS],
                st.pos_i8[taker_position, Pos8.QTY],
                taker_cash,
                st.acc_i8[account, Account8.BALANCE],
            )
            if left == 0:
                order_remove(st, slot, instrument, opp)
                position_release_if_idle(st, position)
            elif reduce_only and fill == capacity:
                n, _ = cancel_resting(
                    st, ev, n, seq, command, slot, instrument, opp, Reason.CANCEL_REDUCE_ONLY, 0
                )
                position_release_if_idle(st, position)
            slot = following
        if stopped:
            break
    return n, rem, stopped
