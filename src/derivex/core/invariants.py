"""``check_invariants``: every internal invariant of the state, checked from scratch.

Money: the sum of all balances equals deposits minus withdrawals, exactly. Positions: the
net position of every instrument is zero; a position's entry value is zero exactly when it is
flat. Books: ladders strictly sorted with the best level last, no crossed book, every level
non-empty with its quantity and count equal to its orders', every order's quantity positive
and on the instrument's grid. Counts: open orders per account/position/book, open quantities,
live counters of every pool, free stacks disjoint from live slots, the position index.
Cost: O(live state). Raises ``AssertionError`` naming the broken invariant.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from derivex.core.escrow import check_transfer_invariants, escrow_totals
from derivex.core.layout import (
    NIL,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Level4,
    Level8,
    Order4,
    Order8,
    Pos4,
    Pos8,
)
from derivex.core.link_index import check_link_index
from derivex.core.mmp_query import check_mmp_invariants
from derivex.core.pools import hash_find
from derivex.core.state import State, free_order_slots
from derivex.core.subaccount_query import check_links
from derivex.core.trigger_query import check_trigger_invariants


def _fail(message: str) -> None:
    raise AssertionError(message)


def check_risk(st: State) -> None:
    """The incrementally kept margin sums and scenario vectors equal a from-scratch
    recomputation over the positions, and resting values match the orders."""
    from derivex.core.market_data import accumulate

    fresh = st._replace(acc_risk=np.zeros_like(st.acc_risk), acc_scen=np.zeros_like(st.acc_scen))
    accumulate(fresh)  # staged (unflushed) market data is in neither: both use applied marks
    if not np.array_equal(fresh.acc_risk, st.acc_risk):
        bad = np.flatnonzero((fresh.acc_risk != st.acc_risk).any(axis=1))
        _fail(f"incremental margin sums differ from a recomputation for accounts {bad[:5]}")
    if not np.array_equal(fresh.acc_scen, st.acc_scen):
        bad = np.flatnonzero((fresh.acc_scen != st.acc_scen).any(axis=1))
        _fail(f"incremental scenario vectors differ from a recomputation: accounts {bad[:5]}")
    values: dict[tuple[int, int], int] = defaultdict(int)
    for slot in range(int(st.counters[Counter.ORDER_HWM])):
        position = int(st.ord_i4[slot, Order4.POSITION])
        if position == NIL:
            continue
        side = int(st.ord_i4[slot, Order4.META]) & 1
        values[(position, side)] += int(st.ord_i8[slot, Order8.PRICE_TICKS]) * int(
            st.ord_i8[slot, Order8.QTY_LOTS]
        )
    for position in np.flatnonzero(st.pos_i4[:, Pos4.LIVE] == 1).tolist():
        for side, field in ((0, Pos8.BUY_VALUE), (1, Pos8.SELL_VALUE)):
            if int(st.pos_i8[position, field]) != values[(int(position), side)]:
                _fail(f"resting value of position {position} side {side} mismatch")


def check_invariants(st: State) -> None:
    check_risk(st)
    check_trigger_invariants(st)
    check_link_index(st.trg_i8)
    check_links(st)
    check_mmp_invariants(st)
    c = st.counters
    accounts = int(c[Counter.ACCOUNT_HWM])
    instruments = int(c[Counter.INSTRUMENT_HWM])
    balance_sum = int(st.acc_i8[:accounts, Account8.BALANCE].astype(object).sum())
    expected = int(c[Counter.TOTAL_DEPOSITS]) - int(c[Counter.TOTAL_WITHDRAWALS])
    escrow_out, credited_in = escrow_totals(st.xfr)  # cross-domain transfers (core/escrow.py)
    balance_sum += escrow_out - credited_in
    if balance_sum != expected:
        _fail(
            f"conservation: sum(balances incl. escrow)={balance_sum} != "
            f"deposits-withdrawals={expected}"
        )
    for problem in check_transfer_invariants(st.xfr):
        _fail(f"transfers: {problem}")

    live_positions = np.flatnonzero(st.pos_i4[:, Pos4.LIVE] == 1)
    if len(live_positions) != int(c[Counter.POSITIONS_LIVE]):
        _fail("live position count mismatch")
    net: defaultdict[int, int] = defaultdict(int)
    per_position_orders: dict[int, list[int]] = {}
    for slot in live_positions.tolist():
        slot = int(slot)
        account = int(st.pos_i4[slot, Pos4.ACCOUNT])
        instrument = int(st.pos_i4[slot, Pos4.INSTRUMENT])
        qty = int(st.pos_i8[slot, Pos8.QTY])
        basis = int(st.pos_i8[slot, Pos8.BASIS])
        net[instrument] += qty
        if (qty == 0) != (basis == 0) or (qty != 0 and (qty > 0) != (basis > 0)):
            _fail(f"position {account}/{instrument}: qty {qty} and basis {basis} disagree")
        if hash_find(st.hash_key, st.hash_val, account, instrument) != slot:
            _fail(f"position index does not find {account}/{instrument}")
        if qty == 0 and int(st.pos_i4[slot, Pos4.ORDERS]) == 0:
            _fail(f"idle position {account}/{instrument} not released")
        orders = []
        order = int(st.pos_i4[slot, Pos4.ORDER_HEAD])
        previous = NIL
        while order != NIL:
            if int(st.ord_i4[order, Order4.POSITION_PREV]) != previous:
                _fail("position order list back link broken")
            orders.append(order)
            previous = order
            order = int(st.ord_i4[order, Order4.POSITION_NEXT])
        if previous != int(st.pos_i4[slot, Pos4.ORDER_TAIL]):
            _fail("position order list tail broken")
        if len(orders) != int(st.pos_i4[slot, Pos4.ORDERS]):
            _fail("position order count mismatch")
        per_position_orders[slot] = orders
    for instrument, total in net.items():
        if total != 0:
            _fail(f"net position of instrument {instrument} is {total}")

    # account position lists: doubly linked, one entry per instrument, cover exactly the
    # live positions
    listed = 0
    open_per_account: defaultdict[int, int] = defaultdict(int)
    for account in range(accounts):
        slot = int(st.acc_i4[account, Account4.POSITION_HEAD])
        previous = NIL
        seen_instruments = set()
        while slot != NIL:
            if int(st.pos_i4[slot, Pos4.ACCOUNT]) != account or st.pos_i4[slot, Pos4.LIVE] != 1:
                _fail(f"account {account} position list holds a foreign or dead slot")
            if int(st.pos_i4[slot, Pos4.PREV]) != previous:
                _fail(f"account {account} position list back link broken")
            instrument = int(st.pos_i4[slot, Pos4.INSTRUMENT])
            if instrument in seen_instruments:
                _fail(f"account {account} has two positions on instrument {instrument}")
            seen_instruments.add(instrument)
            previous = slot
            listed += 1
            open_per_account[account] += int(st.pos_i4[slot, Pos4.ORDERS])
            slot = int(st.pos_i4[slot, Pos4.NEXT])
    if listed != len(live_positions):
        _fail("account position lists do not cover the live positions")
    for account in range(accounts):
        if int(st.acc_i4[account, Account4.OPEN_ORDERS]) != open_per_account[account]:
            _fail(f"account {account} open order count mismatch")

    seen_orders = set()
    level_total = 0
    open_qty: dict[tuple[int, int], int] = defaultdict(int)
    for instrument in range(instruments):
        resting = 0
        tick = int(st.ins_i8[instrument, Ins8.TICK])
        step = int(st.ins_i8[instrument, Ins8.MIN_LOTS])
        best = [0, 0]
        for side in range(2):
            row = instrument * 2 + side
            depth = int(st.ladder_len[row])
            prices = st.ladder_price[row, :depth]
            keys = prices if side == 0 else -prices
            if depth > 1 and not np.all(np.diff(keys) > 0):
                _fail(f"ladder {instrument}/{side} not strictly sorted")
            for index in range(depth):
                level = int(st.ladder_level[row, index])
                level_total += 1
                price = int(st.lvl_i8[level, Level8.PRICE_TICKS])
                if price != int(prices[index]):
                    _fail("ladder price differs from its level")
                qty_sum, count = 0, 0
                order = int(st.lvl_i4[level, Level4.HEAD])
                previous = NIL
                while order != NIL:
                    if order in seen_orders:
                        _fail("order linked twice")
                    seen_orders.add(order)
                    if int(st.ord_i4[order, Order4.PREV]) != previous:
                        _fail("level back link broken")
                    qty = int(st.ord_i8[order, Order8.QTY_LOTS])
                    if qty <= 0 or qty % step != 0:
                        _fail(f"order quantity {qty} invalid")
                    if int(st.ord_i8[order, Order8.PRICE_TICKS]) != price or price % tick != 0:
                        _fail("order price differs from its level or is off tick")
                    if int(st.ord_i4[order, Order4.META]) & 1 != side:
                        _fail("order on the wrong side")
                    position = int(st.ord_i4[order, Order4.POSITION])
                    if int(st.pos_i4[position, Pos4.INSTRUMENT]) != instrument:
                        _fail("order position belongs to another instrument")
                    open_qty[(position, side)] += qty
                    qty_sum += qty
                    count += 1
                    previous = order
                    order = int(st.ord_i4[order, Order4.NEXT])
                if previous != int(st.lvl_i4[level, Level4.TAIL]):
                    _fail("level tail broken")
                if count == 0 or count != int(st.lvl_i4[level, Level4.COUNT]):
                    _fail(f"level {price} count {count} mismatch or empty")
                if qty_sum != int(st.lvl_i8[level, Level8.QTY_LOTS]):
                    _fail(f"level {price} quantity mismatch")
                resting += count
            if depth:
                best[side] = int(prices[depth - 1])
        if best[0] and best[1] and best[0] >= best[1]:
            _fail(f"crossed book on instrument {instrument}: {best[0]} >= {best[1]}")
        if resting != int(st.ins_i4[instrument, Ins4.RESTING]):
            _fail(f"instrument {instrument} resting count mismatch")
    if len(seen_orders) != int(c[Counter.ORDERS_LIVE]):
        _fail("live order count mismatch")
    if level_total != int(c[Counter.LEVELS_LIVE]):
        _fail("live level count mismatch")
    listed_orders = {o for orders in per_position_orders.values() for o in orders}
    if listed_orders != seen_orders:
        _fail("position order lists and books disagree")
    for slot in live_positions.tolist():
        slot = int(slot)
        if int(st.pos_i8[slot, Pos8.OPEN_BUY]) != open_qty[(slot, 0)]:
            _fail("open buy quantity mismatch")
        if int(st.pos_i8[slot, Pos8.OPEN_SELL]) != open_qty[(slot, 1)]:
            _fail("open sell quantity mismatch")
    free_list = free_order_slots(st)
    free_orders = set(free_list)
    if len(free_orders) != len(free_list) or any(s >= int(c[Counter.ORDER_HWM]) for s in free_list):
        _fail("order free list has a cycle or a slot beyond the high-water mark")
    if free_orders & seen_orders:
        _fail("a live order slot is on the free stack")
    if int(c[Counter.ORDER_HWM]) - len(free_orders) != int(c[Counter.ORDERS_LIVE]):
        _fail("order pool accounting mismatch")
