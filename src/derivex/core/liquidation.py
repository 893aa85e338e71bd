"""Liquidation: accounts below maintenance margin, staged (orders cancelled, positions
reduced through the book in steps, insurance fund takeover, then auto-deleveraging), and
the insurance fund unwinding what it took over. ``docs/liquidation.md`` is the contract.
Cost: O(accounts x S) to find the accounts below maintenance, plus the rounds.
"""

from __future__ import annotations

import numpy as np

from derivex.core.admin import cancel_account_orders
from derivex.core.book import order_free
from derivex.core.config import (
    P_ADL_MAX_COUNTERPARTIES,
    P_ADL_MODE,
    P_LIQUIDATION_FEE_PPM,
    P_LIQUIDATION_STEP_PPM,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
)
from derivex.core.deleveraging import deleverage, socialise_loss
from derivex.core.emit import liquidation_stage
from derivex.core.fixed import mul_div_ceil
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
    Und8,
)
from derivex.core.matching import match
from derivex.core.pools import order_alloc, position_release_if_idle
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    AccountState,
    CommandKind,
    IndexStatus,
    InstrumentKind,
    InstrumentStatus,
    LiquidationStage,
    OrderFlag,
    Reason,
    Side,
)
from derivex.core.risk import exposed_to_stale_index, margins, market_band_price
from derivex.core.transfers import (
    FUND,
    PPM,
    move_balance,
    position_of,
    set_account_state,
    transfer_signed,
)


@kernel
def _first_position(st, account):
    """The position a liquidation round works on: perpetuals first, then options, lowest
    instrument id first; NIL when flat."""
    best = NIL
    best_key = np.int64(0)
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        if st.pos_i8[position, Pos8.QTY] != 0:
            instrument = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
            key = instrument
            if st.ins_i4[instrument, Ins4.KIND] != InstrumentKind.PERPETUAL:
                key += 1 << 40
            if best == NIL or key < best_key:
                best = position
                best_key = key
        position = st.pos_i4[position, Pos4.NEXT]
    return best


@kernel
def bankruptcy_price(st, instrument, q, equity):
    """Price at which closing all ``q`` lots leaves the account's equity at zero, on the tick
    grid against the account (up for a sale, down for a purchase), within (0, max]."""
    mark = st.ins_i8[instrument, Ins8.MARK]
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    tick = st.ins_i8[instrument, Ins8.TICK]
    top = st.ins_i8[instrument, Ins8.MAX_PRICE] // tick * tick
    size = q if q > 0 else -q
    unit = size * cv
    if q > 0:
        need = size * mark * cv - equity
        price = -((-need) // unit)  # ceil
        price = -((-price) // tick) * tick
        if price < tick:
            price = tick
        return price if price < top else top
    need = size * mark * cv + equity
    price = need // unit // tick * tick
    if price < tick:
        price = tick
    return price if price < top else top


@kernel
def _step_lots(st, instrument, q):
    """Lots one liquidation step closes of a position of ``q``: ``liquidation_step_ppm`` of
    it, rounded up to the lot step, at most all of it."""
    size = q if q > 0 else -q
    step = st.ins_i8[instrument, Ins8.MIN_LOTS]
    lots = mul_div_ceil(size, st.params[P_LIQUIDATION_STEP_PPM], PPM)
    lots = -((-lots) // step) * step
    return lots if lots < size else size


@kernel
def _through_book(st, ev, n, seq, account, position, instrument, side, qty, limit):
    """An engine IOC order closing up to ``qty`` lots no worse than ``limit`` (no gas)."""
    slot = order_alloc(st)
    st.ord_i8[slot, Order8.PRICE_TICKS] = limit
    st.ord_i8[slot, Order8.QTY_LOTS] = qty
    st.ord_i4[slot, Order4.POSITION] = position
    st.ord_i4[slot, Order4.META] = side | (OrderFlag.REDUCE_ONLY << 1)
    st.ord_label[slot] = 0
    gas = st.acc_i8[account, Account8.GAS]
    st.acc_i8[account, Account8.GAS] = 1 << 62
    n, rem, _ = match(
        st,
        ev,
        n,
        seq,
        CommandKind.ADVANCE_TIME,
        instrument,
        side,
        limit,
        False,
        qty,
        slot,
        position,
        account,
    )
    st.acc_i8[account, Account8.GAS] = gas
    order_free(st, slot)
    position_release_if_idle(st, position)  # closed flat: the slot goes back to the pool
    return n, qty - rem


@kernel
def _takeover(st, ev, n, seq, account):
    """Stage 3/4: the account's remaining positions and equity go to the insurance fund;
    if the fund cannot cover the deficit, opposite positions are deleveraged at bankruptcy
    prices (ranked mode) or the fund's deficit is socialised."""
    equity = margins(st, account)[0]
    fund_equity = margins(st, FUND)[0]
    ranked = st.params[P_ADL_MODE] == 0
    if ranked and fund_equity + equity < 0:
        while True:
            position = _first_position(st, account)
            if position == NIL:
                break
            instrument = st.pos_i4[position, Pos4.INSTRUMENT]
            q = st.pos_i8[position, Pos8.QTY]
            price = bankruptcy_price(st, instrument, q, margins(st, account)[0])
            n, left = deleverage(st, ev, n, seq, account, position, instrument, price)
            if left > 0:
                transfer_signed(
                    st,
                    instrument,
                    position,
                    FUND,
                    left if q > 0 else -left,
                    price,
                )
                n = liquidation_stage(
                    ev, n, seq, account, instrument, LiquidationStage.INSURANCE_FUND, price, left, 0
                )
    while True:
        position = _first_position(st, account)
        if position == NIL:
            break
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        q = st.pos_i8[position, Pos8.QTY]
        mark = st.ins_i8[instrument, Ins8.MARK]
        transfer_signed(st, instrument, position, FUND, q, mark)
        n = liquidation_stage(
            ev,
            n,
            seq,
            account,
            instrument,
            LiquidationStage.INSURANCE_FUND,
            mark,
            q if q > 0 else -q,
            0,
        )
    balance = st.acc_i8[account, Account8.BALANCE]  # the remaining equity, + or -
    move_balance(st, account, -balance)
    move_balance(st, FUND, balance)
    n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.INSURANCE_FUND, 0, 0, balance)
    if st.acc_i8[FUND, Account8.BALANCE] < 0 and not ranked:
        n = socialise_loss(st, ev, n, seq)
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        following = st.pos_i4[position, Pos4.NEXT]
        position_release_if_idle(st, position)
        position = following
    n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.ENDED, 0, 0, 0)
    return set_account_state(st, ev, n, seq, account, AccountState.BANKRUPT)


@kernel
def liquidation_round(st, ev, n, seq, account):
    """One round for an account below maintenance (or already in liquidation)."""
    equity, _, mm = margins(st, account)
    if st.acc_i4[account, Account4.STATE] != AccountState.IN_LIQUIDATION:
        n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.STARTED, 0, mm, equity)
        n = set_account_state(st, ev, n, seq, account, AccountState.IN_LIQUIDATION)
        count = st.acc_i4[account, Account4.OPEN_ORDERS]
        n = cancel_account_orders(
            st,
            ev,
            n,
            seq,
            CommandKind.ADVANCE_TIME,
            account,
            np.int64(-1),
            Reason.CANCEL_LIQUIDATION,
        )
        n = liquidation_stage(
            ev, n, seq, account, 0, LiquidationStage.ORDERS_CANCELLED, 0, count, 0
        )
        equity, _, mm = margins(st, account)
    position = _first_position(st, account)
    if (position == NIL and equity >= 0) or (position != NIL and equity >= mm):
        n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.ENDED, 0, mm, equity)
        return set_account_state(st, ev, n, seq, account, AccountState.NORMAL)
    if (
        position != NIL
        and equity > 0
        and st.counters[Counter.ORDERS_LIVE] < st.params[P_MAX_ORDERS]
    ):
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        q = st.pos_i8[position, Pos8.QTY]
        lots = _step_lots(st, instrument, q)
        price = bankruptcy_price(st, instrument, q, equity)
        side = Side.SELL if q > 0 else Side.BUY
        n, filled = _through_book(st, ev, n, seq, account, position, instrument, side, lots, price)
        if filled > 0:
            mark = st.ins_i8[instrument, Ins8.MARK]
            fee = mul_div_ceil(
                filled * mark * st.ins_i8[instrument, Ins8.CONTRACT_VALUE],
                st.params[P_LIQUIDATION_FEE_PPM],
                PPM,
            )
            left = margins(st, account)[0]
            if fee > left:
                fee = left if left > 0 else 0
            move_balance(st, account, -fee)
            move_balance(st, FUND, fee)
            n = liquidation_stage(
                ev, n, seq, account, instrument, LiquidationStage.BOOK, price, filled, fee
            )
            equity, _, mm = margins(st, account)
            if equity >= mm:
                n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.ENDED, 0, mm, equity)
                return set_account_state(st, ev, n, seq, account, AccountState.NORMAL)
            return n
    if (
        _fund_slots_needed(st, account)
        > st.params[P_MAX_POSITIONS] - st.counters[Counter.POSITIONS_LIVE]
    ):
        return n  # no position slot for the fund: the takeover waits for the next TIME
    return _takeover(st, ev, n, seq, account)


@kernel
def _fund_slots_needed(st, account):
    """Position slots the insurance fund would need to take the account's positions."""
    need = 0
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        if (
            st.pos_i8[position, Pos8.QTY] != 0
            and position_of(st, FUND, st.pos_i4[position, Pos4.INSTRUMENT]) == NIL
        ):
            need += 1
        position = st.pos_i4[position, Pos4.NEXT]
    return need


@kernel
def _round_events(st, account):
    """Worst-case events of one liquidation round of ``account``."""
    positions = 0
    resting = 0
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        positions += 1
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        resting += st.ins_i4[instrument, Ins4.RESTING]
        position = st.pos_i4[position, Pos4.NEXT]
    socialised = st.counters[Counter.ACCOUNT_HWM] if st.params[P_ADL_MODE] != 0 else 0
    return (
        24
        + st.acc_i4[account, Account4.OPEN_ORDERS]
        + 5 * resting
        + positions * (8 + 2 * st.params[P_ADL_MAX_COUNTERPARTIES])
        + socialised
    )


@kernel
def liquidate(st, ev, n, seq):
    """Phase 3: a round for every account below maintenance margin or in liquidation, in
    account order. Returns (n, account to resume at or -1, events needed)."""
    for account in range(
        max(st.counters[Counter.TIME_CURSOR], SYSTEM_ACCOUNTS), st.counters[Counter.ACCOUNT_HWM]
    ):
        state = st.acc_i4[account, Account4.STATE]
        if state != AccountState.IN_LIQUIDATION:
            if (
                st.acc_i4[account, Account4.POSITION_HEAD] == NIL
                and st.acc_i8[account, Account8.BALANCE] >= 0
            ):
                continue
            equity, _, mm = margins(st, account)
            if equity >= mm:
                continue
        if exposed_to_stale_index(st, account):
            continue  # suspended while an index it depends on is stale
        need = _round_events(st, account)
        if n + need > ev.shape[0]:
            return n, account, need
        n = liquidation_round(st, ev, n, seq, account)
    return n, -1, 0


@kernel
def unwind_fund(st, ev, n, seq):
    """Phase 4: the insurance fund reduces each position it took over by one liquidation
    step through the book, no further than the market band around the mark. Returns (n,
    instrument to resume at or -1, events needed)."""
    for instrument in range(st.counters[Counter.TIME_CURSOR], st.counters[Counter.INSTRUMENT_HWM]):
        position = position_of(st, FUND, instrument)
        if position == NIL or st.pos_i8[position, Pos8.QTY] == 0:
            continue
        underlying = st.ins_i4[instrument, Ins4.UNDERLYING]
        if (
            st.ins_i4[instrument, Ins4.STATUS] != InstrumentStatus.ACTIVE
            or st.und_i8[underlying, Und8.STATUS] != IndexStatus.VALID
            or st.ins_i8[instrument, Ins8.MARK] <= 0
            or st.counters[Counter.ORDERS_LIVE] >= st.params[P_MAX_ORDERS]
        ):
            continue
        need = 12 + 5 * st.ins_i4[instrument, Ins4.RESTING]
        if n + need > ev.shape[0]:
            return n, instrument, need
        q = st.pos_i8[position, Pos8.QTY]
        lots = _step_lots(st, instrument, q)
        side = Side.SELL if q > 0 else Side.BUY
        price = market_band_price(st, instrument, side)
        n, filled = _through_book(st, ev, n, seq, FUND, position, instrument, side, lots, price)
        if filled > 0:
            n = liquidation_stage(
                ev,
                n,
                seq,
                FUND,
                instrument,
                LiquidationStage.BOOK,
                price,
                filled,
                0,
            )
    return n, -1, 0
