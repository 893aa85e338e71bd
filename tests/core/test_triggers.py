"""Worked examples of conditional orders (docs/conditional-orders.md) through ``Exchange``:
stop-loss in a gap, take-profit, trailing stop, time priority under the per-command cap,
placement checks, cancellation paths, and that batching never changes an outcome.

The ``venue`` fixture: BTC perpetual (tick 50, maker -1bp, taker 5bp), risk checks off,
three funded accounts. 10_000_000 ticks = the "100" of the comments.
"""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind, EventKind, Reason, command_array, concat_commands
from derivex.exchange import Exchange
from tests.conftest import ManualClock

pytestmark = pytest.mark.nojit


def kinds(events):
    return [EventKind(int(k)).name for k in events["kind"]]


def of_kind(events, kind):
    return events[events["kind"] == kind]


def long_position(ex, perp, buyer, seller, lots=5, price=10_000_000):
    ex.place(seller, perp, "sell", lots, price)
    ex.place(buyer, perp, "buy", lots, price)


def position_lots(ex, account):
    return sum(p.qty_lots for p in ex.positions(account))


def test_stop_loss_closes_a_long_in_a_gap(venue):
    ex, perp, _, (a, b, c) = venue
    long_position(ex, perp, b, a)  # b long 5 at 100, last = 100
    stop = ex.place_trigger(b, perp, "sell", 5, "stop", 9_900_000, reduce_only=True)
    assert stop.accepted and kinds(stop.events) == ["ACCEPTED", "TRIGGER_PLACED"]
    trigger_id = int(stop.events["order_id"][0])
    assert trigger_id >> 62 == 1
    # bids at 97 and 96 only: the market gaps through the stop at 99
    ex.place(c, perp, "buy", 3, 9_700_000)
    ex.place(c, perp, "buy", 5, 9_600_000)
    gap = ex.place(a, perp, "sell", 1, 9_700_000)  # trades at 97: last price 97 <= 99
    fired = of_kind(gap.events, EventKind.TRIGGER_FIRED)
    assert len(fired) == 1 and int(fired["order_id"][0]) == trigger_id
    assert int(fired["price_ticks"][0]) == 9_700_000  # the price that crossed
    spawned = int(fired["a"][0])
    # the spawned order: a new id, its ACCEPTED names the trigger; fills 2 at 97, 3 at 96
    accepted = gap.events[
        (gap.events["kind"] == EventKind.ACCEPTED) & (gap.events["order_id"] == spawned)
    ]
    assert (
        int(accepted["a"][0]) == trigger_id
        and int(accepted["command"][0]) == CommandKind.PLACE_TRIGGER
    )
    fills = gap.events[
        (gap.events["kind"] == EventKind.FILLED) & (gap.events["order_id"] == spawned)
    ]
    assert [(int(f["price_ticks"]), int(f["qty_lots"])) for f in fills] == [
        (9_700_000, 2),
        (9_600_000, 3),
    ]
    assert position_lots(ex, b) == 0
    assert ex.trigger_orders() == []
    # everything the trigger stage emitted follows the command's own events
    first_trigger_event = int(np.flatnonzero(gap.events["command"] == CommandKind.PLACE_TRIGGER)[0])
    assert set(gap.events["command"][first_trigger_event:].tolist()) == {CommandKind.PLACE_TRIGGER}
    ex.check_invariants()


def test_take_profit_limit(venue):
    ex, perp, _, (a, b, c) = venue
    long_position(ex, perp, b, a)
    take = ex.place_trigger(
        b, perp, "sell", 5, "take", 10_500_000, order_type="limit", price_ticks=10_450_000
    )
    assert take.accepted
    ex.place(c, perp, "buy", 2, 10_400_000)  # below the take's limit: stays untouched
    ex.place(a, perp, "sell", 1, 10_500_000)
    rally = ex.place(c, perp, "buy", 1, 10_500_000)  # last = 105 >= 105: fires
    fired = of_kind(rally.events, EventKind.TRIGGER_FIRED)
    assert len(fired) == 1 and int(fired["reason"][0]) == Reason.OK
    spawned = int(fired["a"][0])
    # the limit sell at 104.5 rests (the only bid, 104, is below it)
    order = ex.order(spawned)
    assert order is not None and order.price_ticks == 10_450_000 and order.remaining_lots == 5
    ex.check_invariants()


def test_trailing_stop_follows_a_rally_then_fires(venue):
    ex, perp, _, (a, b, c) = venue
    long_position(ex, perp, b, a)  # last = 100
    trail = ex.place_trigger(b, perp, "sell", 5, "trailing", trigger_offset_ticks=200_000)
    assert trail.accepted
    placed = of_kind(trail.events, EventKind.TRIGGER_PLACED)
    assert int(placed["price_ticks"][0]) == 9_800_000  # 100 - 2
    assert int(placed["a"][0]) == 200_000
    for price in (10_100_000, 10_300_000):  # the rally: reference 103, trigger 101
        ex.place(a, perp, "sell", 1, price)
        ex.place(c, perp, "buy", 1, price)
    (row,) = ex.trigger_orders(b)
    assert row["reference_ticks"] == 10_300_000 and row["trigger_price_ticks"] == 10_100_000
    ex.place(c, perp, "buy", 10, 10_000_000)  # bids for the spawned market sell
    ex.place(a, perp, "sell", 1, 10_200_000)
    quiet = ex.place(c, perp, "buy", 1, 10_200_000)  # 102 > 101: nothing
    assert not len(of_kind(quiet.events, EventKind.TRIGGER_FIRED))
    drop = ex.place(a, perp, "sell", 1, 10_000_000)  # trades at 100 <= 101: fires
    fired = of_kind(drop.events, EventKind.TRIGGER_FIRED)
    assert len(fired) == 1 and int(fired["price_ticks"][0]) == 10_000_000
    assert position_lots(ex, b) == 0
    ex.check_invariants()


def test_a_trigger_that_would_fire_at_once_is_rejected(venue):
    ex, perp, _, (a, b, _) = venue
    long_position(ex, perp, b, a)  # last = 100
    at = ex.place_trigger(b, perp, "sell", 5, "stop", 10_000_000)
    above = ex.place_trigger(b, perp, "sell", 5, "stop", 10_100_000)
    take_below = ex.place_trigger(b, perp, "sell", 5, "take", 9_900_000)
    assert [r.reason for r in (at, above, take_below)] == [Reason.TRIGGER_WOULD_FIRE] * 3
    # no last price yet on a fresh book: a stop waits for the first trade
    ok = ex.place_trigger(b, perp, "buy", 1, "stop", 20_000_000, source="mark")
    assert ok.accepted
    no_ref = ex.place_trigger(
        b, perp, "sell", 1, "trailing", source="mark", trigger_offset_ticks=50
    )
    assert no_ref.reason == Reason.NO_TRIGGER_PRICE
    assert ex.place_trigger(b, perp, "sell", 1, "stop", 9_900_025).reason == Reason.PRICE_OFF_TICK
    bad = ex.place_trigger(b, perp, "sell", 1, "trailing", order_type="limit", price_ticks=50)
    assert bad.reason == Reason.BAD_TRIGGER
    ex.check_invariants()


def cap_venue(cap):
    ex = Exchange(EngineConfig(risk_checks=False, trigger_fire_cap=cap), clock=ManualClock())
    perp = ex.add_perpetual("BTC", tick_size_ticks=50)
    accounts = [ex.create_account() for _ in range(3)]
    for account in accounts:
        ex.deposit(account, 10**12)
    return ex, perp, accounts


def test_time_priority_and_the_per_command_cap():
    ex, perp, (a, b, c) = cap_venue(2)
    long_position(ex, perp, b, a, lots=10)
    ex.place(c, perp, "buy", 100, 9_000_000)  # liquidity for the spawned sells
    # placed in this order; trigger prices deliberately not in placement order
    ids = [
        int(ex.place_trigger(b, perp, "sell", 1, "stop", price).events["order_id"][0])
        for price in (9_500_000, 9_900_000, 9_700_000, 9_800_000, 9_600_000)
    ]
    assert ids == sorted(ids)
    crash = ex.place(a, perp, "sell", 1, 9_000_000)  # last 90: crosses all five
    fired = [int(x) for x in of_kind(crash.events, EventKind.TRIGGER_FIRED)["order_id"]]
    assert fired == ids[:2]  # the cap; time priority, not price
    assert sum(row["queued"] for row in ex.trigger_orders()) == 3
    nothing = command_array(1)
    nothing["kind"] = CommandKind.NOOP
    later = ex.submit(nothing.copy())
    assert [int(x) for x in of_kind(later, EventKind.TRIGGER_FIRED)["order_id"]] == ids[2:4]
    last = ex.submit(nothing.copy())
    assert [int(x) for x in of_kind(last, EventKind.TRIGGER_FIRED)["order_id"]] == ids[4:]
    assert position_lots(ex, b) == 5
    ex.check_invariants()


def test_reduce_only_clamped_at_activation_and_rejected_when_flat(venue):
    ex, perp, _, (a, b, c) = venue
    long_position(ex, perp, b, a, lots=3)
    ex.place(c, perp, "buy", 50, 9_000_000)
    big = ex.place_trigger(b, perp, "sell", 10, "stop", 9_500_000, reduce_only=True)
    late = ex.place_trigger(b, perp, "sell", 10, "stop", 9_400_000, reduce_only=True)
    assert big.accepted and late.accepted
    crash = ex.place(a, perp, "sell", 1, 9_000_000)
    fired = of_kind(crash.events, EventKind.TRIGGER_FIRED)
    assert [int(r) for r in fired["reason"]] == [Reason.OK, Reason.REDUCE_ONLY_WOULD_INCREASE]
    assert int(fired["qty_lots"][0]) == 3  # clamped to the position
    assert int(fired["a"][1]) == 0  # no order: the owner sees why
    assert position_lots(ex, b) == 0
    ex.check_invariants()


def test_cancel_paths(venue):
    ex, perp, _, (a, b, c) = venue
    long_position(ex, perp, b, a)
    one = int(ex.place_trigger(b, perp, "sell", 1, "stop", 9_000_000).events["order_id"][0])
    assert ex.cancel(c, one).reason == Reason.NOT_ORDER_OWNER
    cancel = ex.cancel(b, one)
    assert cancel.accepted and kinds(cancel.events) == ["ACCEPTED", "TRIGGER_CANCELLED"]
    assert int(cancel.events["reason"][1]) == Reason.CANCEL_BY_USER
    assert ex.cancel(b, one).reason == Reason.UNKNOWN_ORDER
    ex.place_trigger(b, perp, "sell", 1, "stop", 9_000_000)
    ex.place_trigger(b, perp, "sell", 1, "take", 11_000_000)
    everything = ex.cancel_all(b)
    cancelled = of_kind(everything.events, EventKind.TRIGGER_CANCELLED)
    assert [int(r) for r in cancelled["reason"]] == [Reason.CANCEL_ALL] * 2
    ex.place_trigger(a, perp, "buy", 1, "stop", 11_000_000)
    closed = ex.close(perp)
    assert [int(r) for r in of_kind(closed.events, EventKind.TRIGGER_CANCELLED)["reason"]] == [
        Reason.CANCEL_INSTRUMENT_CLOSED
    ]
    assert ex.trigger_orders() == []
    ex.check_invariants()


def test_trigger_orders_count_against_the_open_order_cap():
    ex = Exchange(EngineConfig(risk_checks=False, max_open_orders_per_account=2))
    perp = ex.add_perpetual("BTC", tick_size_ticks=50)
    a = ex.create_account()
    ex.deposit(a, 10**12)
    assert ex.place_trigger(a, perp, "sell", 1, "stop", 9_000_000).accepted
    assert ex.place(a, perp, "buy", 1, 8_000_000).accepted
    assert ex.place_trigger(a, perp, "sell", 1, "stop", 9_000_000).reason == (
        Reason.ACCOUNT_ORDER_LIMIT
    )
    assert ex.place(a, perp, "buy", 1, 8_000_000).reason == Reason.ACCOUNT_ORDER_LIMIT


def test_index_and_mark_sources(venue, clock):
    ex, perp, _, (a, b, _) = venue
    ex.set_index("BTC", [(1, clock.now_ns, 10_000_000)])
    on_index = ex.place_trigger(b, perp, "buy", 1, "stop", 10_200_000, source="index")
    on_mark = ex.place_trigger(b, perp, "buy", 1, "stop", 10_200_000, source="mark")
    assert on_index.accepted and on_mark.accepted
    ex.place(a, perp, "sell", 5, 10_300_000)
    move = ex.set_index("BTC", [(1, clock.now_ns, 10_250_000)])
    fired = of_kind(move.events, EventKind.TRIGGER_FIRED)
    # the index crossed; the mark moves towards it smoothed, not past 102 here
    ids = [int(x) for x in fired["order_id"]]
    assert int(on_index.events["order_id"][0]) in ids
    ex.check_invariants()


def test_batching_never_changes_the_outcome():
    """The same commands one by one and as one batch: same events, same state hash."""

    def script(ex, perp, a, b, c):
        records = []

        def add(kind, **fields):
            r = command_array(1)
            r["kind"] = kind
            for name, value in fields.items():
                r[name] = value
            records.append(r)

        add(
            CommandKind.PLACE_ORDER,
            account=a,
            instrument=perp,
            side=1,
            qty_lots=10,
            price_ticks=10_000_000,
        )
        add(
            CommandKind.PLACE_ORDER,
            account=b,
            instrument=perp,
            side=0,
            qty_lots=10,
            price_ticks=10_000_000,
        )
        add(
            CommandKind.PLACE_ORDER,
            account=c,
            instrument=perp,
            side=0,
            qty_lots=50,
            price_ticks=9_000_000,
        )
        for price in (9_500_000, 9_900_000, 9_700_000):
            add(
                CommandKind.PLACE_TRIGGER,
                account=b,
                instrument=perp,
                side=1,
                order_type=1,
                trigger_type=1,
                trigger_price_ticks=price,
                qty_lots=2,
            )
        add(
            CommandKind.PLACE_ORDER,
            account=a,
            instrument=perp,
            side=1,
            qty_lots=1,
            price_ticks=9_000_000,
        )
        add(CommandKind.NOOP)
        add(CommandKind.NOOP)
        return records

    results = []
    for batched in (False, True):
        ex, perp, (a, b, c) = cap_venue(1)
        records = script(ex, perp, a, b, c)
        if batched:
            events = ex.submit(concat_commands(records)).view(np.uint8)
        else:
            events = np.concatenate([ex.submit(r).view(np.uint8) for r in records])
        results.append((events.tobytes(), ex.state_hash()))
        ex.check_invariants()
    assert results[0] == results[1]
