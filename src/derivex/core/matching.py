"""Matching: the liquidity scan and the match loop (price-time priority, trades at the
resting price, self-trade prevention, resting reduce-only clamping, gas per level and fill).

Cost of a match: O(levels crossed + resting orders reached), each bounded by the taker's gas.
"""

from __future__ import annotations

from derivex.core import consts as K
from derivex.core import layout as L
from derivex.core.accounting import settle_fill_side
from derivex.core.book import order_remove
from derivex.core.config import P_GAS_PER_FILL, P_GAS_PER_LEVEL
from derivex.core.emit import emit, set_label
from derivex.core.jit import kernel
from derivex.core.pools import order_id_of, position_release_if_idle
from derivex.core.risk import risk_in, risk_out


@kernel
def crosses(side, limit, is_market, level_price):
    """Whether an incoming order on ``side`` trades against a level at ``level_price``."""
    if is_market:
        return True
    if side == K.BUY:
        return level_price <= limit
    return level_price >= limit


@kernel
def reducing_capacity(st, position, side):
    """Lots an order on ``side`` may trade without increasing the position's size."""
    if position == L.NIL:
        return 0
    qty = st.pos_i8[position, L.S_QTY]
    if side == K.BUY:
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

    Returns ``(fillable, gas_needed, own_reached)``. Own orders are skipped (they would be
    cancelled) unless ``stop_at_own``, which stops at the first one reached."""
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
        if not crosses(side, limit, is_market, st.lvl_i8[level, L.L_PRICE]):
            break
        gas += gas_level
        slot = st.lvl_i4[level, L.L_HEAD]
        while slot != L.NIL and rem > 0:
            gas += gas_fill
            position = st.ord_i4[slot, L.O_POSITION]
            maker = st.pos_i4[position, L.S_ACCOUNT]
            available = st.ord_i8[slot, L.O_QTY]
            if maker == account:
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
                if (st.ord_i4[slot, L.O_META] >> 1) & K.REDUCE_ONLY:
                    # capacity after this maker's earlier fills in the same match
                    capacity = reducing_capacity(st, position, opp) - (st.scan_used[maker] - 1)
                    if capacity < 0:
                        capacity = 0
                    if capacity < available:
                        available = capacity
                fill = rem if rem < available else available
                rem -= fill
                st.scan_used[maker] += fill
            slot = st.ord_i4[slot, L.O_NEXT]
        index -= 1
    for t in range(touched):
        st.scan_used[st.scan_accounts[t]] = 0
    return qty - rem, gas, own


@kernel
def cancel_resting(st, ev, n, seq, command, slot, instrument, side, reason, leg):
    """Emit CANCELLED for a resting order and remove it from the book and the pools (its
    position slot is left to the caller). Returns ``(n_events, position slot)``."""
    position = st.ord_i4[slot, L.O_POSITION]
    n = emit(
        ev,
        n,
        seq,
        K.E_CANCELLED,
        command,
        side,
        0,
        reason,
        leg,
        st.pos_i4[position, L.S_ACCOUNT],
        instrument,
        order_id_of(st, slot),
        st.ord_i8[slot, L.O_PRICE],
        st.ord_i8[slot, L.O_QTY],
        0,
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
    contract_value = st.ins_i8[instrument, L.I_CONTRACT_VALUE]
    maker_fee = st.ins_i8[instrument, L.I_MAKER_FEE]
    taker_fee = st.ins_i8[instrument, L.I_TAKER_FEE]
    taker_id = order_id_of(st, taker_slot)
    opp = 1 - side
    row = instrument * 2 + opp
    rem = qty
    stopped = False
    while rem > 0:
        depth = st.ladder_len[row]
        if depth == 0:
            break
        level = st.ladder_level[row, depth - 1]
        price = st.lvl_i8[level, L.L_PRICE]
        if not crosses(side, limit, is_market, price):
            break
        if st.acc_i8[account, L.A_GAS] < gas_level:
            stopped = True
            break
        st.acc_i8[account, L.A_GAS] -= gas_level
        per_lot_value = price * contract_value
        slot = st.lvl_i4[level, L.L_HEAD]
        while slot != L.NIL and rem > 0:
            if st.acc_i8[account, L.A_GAS] < gas_fill:
                stopped = True
                break
            st.acc_i8[account, L.A_GAS] -= gas_fill
            following = st.ord_i4[slot, L.O_NEXT]
            position = st.ord_i4[slot, L.O_POSITION]
            maker = st.pos_i4[position, L.S_ACCOUNT]
            if maker == account:
                # only CANCEL_RESTING reaches here: REJECT_INCOMING was settled by the scan
                n, _ = cancel_resting(
                    st, ev, n, seq, command, slot, instrument, opp, K.R_CANCEL_SELF_TRADE, 0
                )
                slot = following
                continue
            available = st.ord_i8[slot, L.O_QTY]
            reduce_only = (st.ord_i4[slot, L.O_META] >> 1) & K.REDUCE_ONLY
            capacity = available
            if reduce_only:
                capacity = reducing_capacity(st, position, opp)
                if capacity == 0:
                    n, _ = cancel_resting(
                        st, ev, n, seq, command, slot, instrument, opp, K.R_CANCEL_REDUCE_ONLY, 0
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
            st.ord_i8[slot, L.O_QTY] = left
            st.lvl_i8[level, L.L_QTY] -= fill
            risk_out(st, position)
            if opp == K.BUY:
                st.pos_i8[position, L.S_OPEN_BUY] -= fill
                st.pos_i8[position, L.S_BUY_VALUE] -= fill * price
            else:
                st.pos_i8[position, L.S_OPEN_SELL] -= fill
                st.pos_i8[position, L.S_SELL_VALUE] -= fill * price
            maker_cash, maker_paid = settle_fill_side(
                st, instrument, position, opp, fill, per_lot_value, maker_fee
            )
            if opp == K.BUY:
                risk_in(st, position, fill, -fill, 0)
            else:
                risk_in(st, position, -fill, 0, -fill)
            risk_out(st, taker_position)
            taker_cash, taker_paid = settle_fill_side(
                st, instrument, taker_position, side, fill, per_lot_value, taker_fee
            )
            risk_in(st, taker_position, fill if side == K.BUY else -fill, 0, 0)
            st.counters[L.C_FILLS] += 1
            maker_id = order_id_of(st, slot)
            n = emit(
                ev,
                n,
                seq,
                K.E_FILLED,
                command,
                opp,
                K.MAKER,
                0,
                0,
                maker,
                instrument,
                maker_id,
                price,
                fill,
                maker_paid,
            )
            ev[n - 1]["b"] = left
            n = emit(
                ev,
                n,
                seq,
                K.E_FILLED,
                command,
                side,
                K.TAKER,
                0,
                0,
                account,
                instrument,
                taker_id,
                price,
                fill,
                taker_paid,
            )
            ev[n - 1]["b"] = rem
            n = emit(
                ev,
                n,
                seq,
                K.E_POSITION,
                command,
                opp,
                K.MAKER,
                0,
                0,
                maker,
                instrument,
                maker_id,
                st.pos_i8[position, L.S_BASIS],
                st.pos_i8[position, L.S_QTY],
                maker_cash,
            )
            ev[n - 1]["b"] = st.acc_i8[maker, L.A_BALANCE]
            n = emit(
                ev,
                n,
                seq,
                K.E_POSITION,
                command,
                side,
                K.TAKER,
                0,
                0,
                account,
                instrument,
                taker_id,
                st.pos_i8[taker_position, L.S_BASIS],
                st.pos_i8[taker_position, L.S_QTY],
                taker_cash,
            )
            ev[n - 1]["b"] = st.acc_i8[account, L.A_BALANCE]
            if left == 0:
                order_remove(st, slot, instrument, opp)
                position_release_if_idle(st, position)
            elif reduce_only and fill == capacity:
                n, _ = cancel_resting(
                    st, ev, n, seq, command, slot, instrument, opp, K.R_CANCEL_REDUCE_ONLY, 0
                )
                position_release_if_idle(st, position)
            slot = following
        if stopped:
            break
    return n, rem, stopped
