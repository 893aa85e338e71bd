"""``core.query`` read against what the commands did: a seeded flow of orders, and every
view (best prices, depth, the book walk, open orders, positions and their columns, open
interest, instrument columns, balances, the index and its history) checked against an
independent tally of the accepted orders and the fills."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from derivex.core import query
from derivex.core.config import EngineConfig
from derivex.core.records import Side, Underlying
from derivex.exchange import Exchange

START_NS = 1_800_000_000_000_000_000
SEED = 11


@pytest.fixture(scope="module")
def venue() -> tuple[Exchange, int, list[int]]:
    clock = [START_NS]

    def tick() -> int:
        clock[0] += 1_000
        return clock[0]

    ex = Exchange(EngineConfig(risk_checks=False), clock=tick)
    btc = ex.add_perpetual("BTC", tick_size_ticks=10)
    accounts = [ex.create_account() for _ in range(4)]
    for account in accounts:
        assert ex.deposit(account, 10**12).accepted
    rng = random.Random(SEED)
    placed = 0
    for _ in range(120):
        side = rng.choice(["buy", "sell"])
        price = 10 * rng.randint(990, 1010) if side == "buy" else 10 * rng.randint(1000, 1020)
        result = ex.place(rng.choice(accounts), btc, side, rng.randint(1, 5), price_ticks=price)
        placed += result.accepted
    assert placed == 120, f"seed {SEED}"
    for k in range(3):
        assert ex.set_index("BTC", [(1, START_NS + k, 10_000 + k)]).accepted
    return ex, btc, accounts


def _resting(ex: Exchange, accounts: list[int]) -> list:
    return [info for account in accounts for info in ex.open_orders(account)]


def test_best_prices_and_depth_match_the_resting_orders(venue) -> None:
    ex, btc, accounts = venue
    st = ex.engine.state
    resting = _resting(ex, accounts)
    bids = [o for o in resting if o.side == Side.BUY]
    asks = [o for o in resting if o.side == Side.SELL]
    assert bids and asks, f"seed {SEED}"
    assert query.best_price_ticks(st, btc, Side.BUY) == max(o.price_ticks for o in bids)
    assert query.best_price_ticks(st, btc, Side.SELL) == min(o.price_ticks for o in asks)
    assert max(o.price_ticks for o in bids) < min(o.price_ticks for o in asks)  # not crossed
    for side, orders in (
        (query.depth(st, btc, 1000).bids, bids),
        (query.depth(st, btc, 1000).asks, asks),
    ):
        levels: dict[int, list[int]] = defaultdict(list)
        for o in orders:
            levels[o.price_ticks].append(o.remaining_lots)
        expected = [(p, sum(q), len(q)) for p, q in levels.items()]
        expected.sort(reverse=orders is bids)
        assert side == expected
    assert query.resting_orders(st, btc) == len(resting)


def test_the_book_walk_holds_every_resting_order_once(venue) -> None:
    ex, btc, accounts = venue
    st = ex.engine.state
    rows = np.empty((query.resting_orders(st, btc), 6), dtype=np.int64)
    counts = np.zeros(4, dtype=np.int64)
    assert query.book_rows(st, np.int64(btc), rows, counts) == len(rows)
    walked = {(int(r[2]), int(r[3]), int(r[0]), int(r[1]), int(r[4])) for r in rows}
    expected = {
        (o.order_id, o.account, int(o.side), o.price_ticks, o.remaining_lots)
        for o in _resting(ex, accounts)
    }
    assert walked == expected
    assert counts[0] + counts[1] == len(rows)
    too_small = np.empty((1, 6), dtype=np.int64)
    assert query.book_rows(st, np.int64(btc), too_small, counts) == -1


def test_positions_columns_and_open_interest_agree(venue) -> None:
    ex, btc, accounts = venue
    st = ex.engine.state
    held = [p for account in accounts for p in ex.positions(account)]
    assert held and sum(p.qty_lots for p in held) == 0, f"seed {SEED}"
    assert query.open_interest_lots(st, btc) == sum(p.qty_lots for p in held if p.qty_lots > 0)
    slots, owners, instruments = query.live_positions(st)
    columns = query.position_columns(st, slots)
    live = {
        (int(a), int(i)): (int(q), int(b))
        for a, i, q, b in zip(
            owners, instruments, columns["qty_lots"], columns["basis_units"], strict=True
        )
    }
    for p in held:
        assert live[(p.account, p.instrument)] == (p.qty_lots, p.basis_units)
    orders_per_account = defaultdict(int)
    for o in _resting(ex, accounts):
        orders_per_account[o.account] += 1
    heads = query.account_heads(st, np.array(accounts))
    assert heads["open_orders"].tolist() == [orders_per_account[a] for a in accounts]


def test_accounts_instruments_and_index(venue) -> None:
    ex, btc, accounts = venue
    st = ex.engine.state
    assert query.account_count(st) == accounts[-1] + 1
    assert sum(query.balances(st).values()) == 4 * 10**12  # fees stay in the system accounts
    with pytest.raises(KeyError):
        query.balance_units(st, accounts[-1] + 1)
    columns = query.instrument_columns(st, [btc])
    assert set(columns) == set(query.INSTRUMENT_FIELDS)
    assert columns["tick_size_ticks"].tolist() == [10]
    assert columns["resting_orders"].tolist() == [query.resting_orders(st, btc)]
    index = query.index(st, Underlying.BTC)
    assert (index.price_ticks, index.status, index.sources) == (10_002, "valid", 1)
    assert [price for _, price in query.index_history(st, Underlying.BTC)] == [
        10_000,
        10_001,
        10_002,
    ]
    assert query.index_ticks(st, Underlying.BTC) == 10_002
    assert query.clock_ns(st) == index.ts_ns
    # every record the sequencer stamped was consumed (setup, 120 orders, 3 indices of 2)
    assert query.commands_processed(st) == ex.sequencer.seq >= 120 + 3 * 2
    assert query.global_counters(st)[query.GLOBAL_COUNTER_NAMES.index("commands")] == (
        query.commands_processed(st)
    )
