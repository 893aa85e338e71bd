"""Worked examples of market-maker protection (core/mmp.py) through ``Exchange``: a sweep
through a market maker's quotes freezes it and cancels the rest; quotes and MMP orders are
refused while frozen; the freeze ends with the frozen time or at once with a reset; named
groups; config validation; windows in command time.

The ``venue`` fixture: BTC perpetual (tick 50), a BTC call, three funded accounts; the
manual clock starts at START_NS and moves only when a test advances it.
"""

from __future__ import annotations

import pytest

from derivex.core.mmp_query import FOREVER
from derivex.core.records import CommandKind, EventKind, Reason, Underlying
from derivex.exchange import Quote

pytestmark = pytest.mark.nojit

SECOND = 1_000_000_000
PRICE = 10_000_000


def kinds(events):
    return [EventKind(int(k)).name for k in events["kind"]]


def of_kind(events, kind):
    return events[events["kind"] == kind]


def quotes(perp, call):
    return [
        Quote(perp, PRICE - 100, 5, PRICE + 100, 5),
        Quote(call, 500_000, 10, 500_100, 10),
    ]


def test_a_sweep_through_the_quotes_freezes_the_market_maker(venue, clock):
    ex, perp, call, (mm, taker, _) = venue
    assert ex.set_mmp_config(mm, "BTC", 10, 60, qty_limit_lots=4).accepted
    assert ex.mass_quote(mm, quotes(perp, call)).accepted
    # the taker sweeps 5 lots of the ask: 5 >= 4 lots in the window: breach
    sweep = ex.place(taker, perp, "buy", 5, PRICE + 100)
    events = sweep.events
    trig = of_kind(events, EventKind.MMP_TRIGGERED)
    assert len(trig) == 1
    assert int(trig["account"][0]) == mm and int(trig["instrument"][0]) == Underlying.BTC
    assert int(trig["qty_lots"][0]) == 5
    assert int(trig["a"][0]) == clock.now_ns + 60 * SECOND
    assert int(trig["command"][0]) == CommandKind.PLACE_ORDER
    cancels = of_kind(events, EventKind.CANCELLED)
    # the bid on the perpetual and both sides of the call, instrument ascending
    assert [int(c["reason"]) for c in cancels] == [Reason.CANCEL_MMP_TRIGGERED] * 3
    assert sorted(int(c["instrument"]) for c in cancels) == [perp, call, call]
    assert kinds(events).index("MMP_TRIGGERED") > kinds(events).index("FILLED")
    assert ex.open_orders(mm) == []
    (group,) = ex.mmp_groups(mm)
    assert group.frozen and group.frozen_until_ns == clock.now_ns + 60 * SECOND
    ex.check_invariants()


def test_frozen_refuses_quotes_and_mmp_orders_until_the_frozen_time(venue, clock):
    ex, perp, call, (mm, taker, _) = venue
    ex.set_mmp_config(mm, "BTC", 10, 60, qty_limit_lots=4)
    ex.mass_quote(mm, quotes(perp, call))
    ex.place(taker, perp, "buy", 5, PRICE + 100)
    refused = ex.mass_quote(mm, quotes(perp, call))
    assert not refused.accepted and refused.reason == Reason.MMP_FROZEN
    order = ex.place(mm, perp, "sell", 1, PRICE + 200, mmp=True)
    assert not order.accepted and order.reason == Reason.MMP_FROZEN
    # an order without the flag is not MMP's business
    assert ex.place(mm, perp, "sell", 1, PRICE + 200).accepted
    # withdrawing quotes is never refused
    assert ex.mass_quote(mm, [Quote(perp, 0, 0, 0, 0)]).accepted
    clock.advance(59 * 1000)
    assert ex.mass_quote(mm, quotes(perp, call)).reason == Reason.MMP_FROZEN
    clock.advance(1 * 1000)
    assert ex.mass_quote(mm, quotes(perp, call)).accepted
    assert not ex.mmp_groups(mm)[0].frozen
    ex.check_invariants()


def test_reset_unfreezes_at_once_and_frozen_time_zero_waits_for_it(venue, clock):
    ex, perp, _, (mm, taker, _) = venue
    ex.set_mmp_config(mm, "BTC", 10, 0, qty_limit_lots=2)
    ex.place(mm, perp, "sell", 3, PRICE, mmp=True)
    ex.place(taker, perp, "buy", 2, PRICE)  # 2 >= 2: frozen until reset
    (group,) = ex.mmp_groups(mm)
    assert group.frozen and group.frozen_until_ns == FOREVER
    assert ex.open_orders(mm) == []  # the MMP order's remaining lot was cancelled
    clock.advance(10**6 * 1000)
    assert ex.place(mm, perp, "sell", 1, PRICE, mmp=True).reason == Reason.MMP_FROZEN
    assert ex.reset_mmp(mm, "BTC").accepted
    assert ex.place(mm, perp, "sell", 1, PRICE, mmp=True).accepted
    missing = ex.reset_mmp(mm, "ETH")
    assert not missing.accepted and missing.reason == Reason.MMP_GROUP_UNKNOWN
    ex.check_invariants()


def test_the_window_is_in_command_time(venue, clock):
    ex, perp, _, (mm, taker, _) = venue
    ex.set_mmp_config(mm, "BTC", 10, 5, qty_limit_lots=3)
    ex.place(mm, perp, "sell", 10, PRICE, mmp=True)
    ex.place(taker, perp, "buy", 2, PRICE)
    clock.advance(10 * 1000)  # the window [t, t + 10 s) has ended
    ex.place(taker, perp, "buy", 2, PRICE)  # a new window: 2 < 3
    (group,) = ex.mmp_groups(mm)
    assert not group.frozen and group.qty_lots == 2
    clock.advance(9 * 1000)
    ex.place(taker, perp, "buy", 1, PRICE)  # 3 in the window: breach
    assert ex.mmp_groups(mm)[0].frozen
    ex.check_invariants()


def test_named_groups_are_separate(venue):
    ex, perp, call, (mm, taker, _) = venue
    ex.set_mmp_config(mm, "BTC", 10, 60, qty_limit_lots=100)  # default group
    assert ex.set_mmp_config(mm, "BTC", 10, 60, qty_limit_lots=3, group=7).accepted
    unknown = ex.mass_quote(mm, quotes(perp, call), mmp_group=8)
    assert not unknown.accepted and unknown.reason == Reason.MMP_GROUP_UNKNOWN
    assert ex.mass_quote(mm, [quotes(perp, call)[0]], mmp_group=7).accepted
    assert ex.place(mm, call, "sell", 10, 600_000, mmp=True).accepted  # default group
    ex.place(taker, perp, "buy", 5, PRICE + 100)  # group 7 breaches
    left = ex.open_orders(mm)
    assert [(o.instrument, o.remaining_lots) for o in left] == [(call, 10)]
    groups = {g.group: g for g in ex.mmp_groups(mm)}
    assert groups[7].frozen and not groups[0].frozen
    ex.check_invariants()


def test_delta_limit_counts_net_delta(venue):
    ex, _, call, (mm, taker, _) = venue
    scenarios = len(ex.engine.config.scenarios)
    assert ex.set_risk(call, 500_000, [0] * scenarios, greeks=(10**9, 0, 0, 0, 0)).accepted
    ex.set_mmp_config(mm, "BTC", 10, 60, delta_limit=30 * 10**9)
    ex.place(mm, call, "sell", 100, 500_000, mmp=True)
    ex.place(mm, call, "buy", 100, 499_000, mmp=True)
    ex.place(taker, call, "buy", 20, 500_000)  # mm sold 20: delta -20
    ex.place(taker, call, "sell", 20, 499_000)  # bought 20: net 0
    ex.place(taker, call, "buy", 20, 500_000)  # -20
    (group,) = ex.mmp_groups(mm)
    assert not group.frozen and group.qty_lots == 60 and group.delta == -20 * 10**9
    ex.place(taker, call, "buy", 10, 500_000)  # -30: breach
    assert ex.mmp_groups(mm)[0].frozen
    ex.check_invariants()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (dict(interval_s=10, frozen_s=1), Reason.BAD_MMP_CONFIG),  # no limit
        (dict(interval_s=10, frozen_s=1, qty_limit_lots=-1), Reason.BAD_MMP_CONFIG),
        (dict(interval_s=0, frozen_s=1, group=3), Reason.MMP_GROUP_UNKNOWN),
    ],
)
def test_config_is_validated(venue, args, reason):
    ex, _, _, (mm, _, _) = venue
    result = ex.set_mmp_config(mm, "BTC", **args)
    assert not result.accepted and result.reason == reason
    assert ex.mmp_groups(mm) == []


def test_market_orders_cannot_carry_the_flag_and_slots_run_out(venue):
    ex, perp, _, (mm, _, _) = venue
    market = ex.place(mm, perp, "buy", 1, order_type="market", mmp=True)
    assert market.reason == Reason.BAD_FLAGS
    for group in range(6):
        assert ex.set_mmp_config(mm, "BTC", 1, 1, qty_limit_lots=1, group=group).accepted
    assert ex.set_mmp_config(mm, "ETH", 1, 1, qty_limit_lots=1).reason == Reason.MMP_GROUPS_FULL
    # a removed group's slot is reused
    assert ex.set_mmp_config(mm, "BTC", 0, 0, group=2).accepted
    assert ex.set_mmp_config(mm, "ETH", 1, 1, qty_limit_lots=1).accepted
    assert [g.slot for g in ex.mmp_groups(mm) if g.underlying == Underlying.ETH] == [2]
