"""Issue 12, finding 4: orders far from the market must not rest. The core bands every order
price around the applied mark (docs/risk.md, "Price band"): a buy above the band is clamped
to its top and a sell below it to its bottom (Deribit clamps to max_price / min_price); a buy
below or a sell above is refused; mass quotes outside are refused; market orders are the
clamped unlimited price. The ticker's min_price / max_price are the same band.

BTC perpetual of tests/core/test_lifecycle.py: tick 50 (0.50 USDC), mark = index =
10,000,000 (100,000.00), default band 5%: [9,500,000, 10,500,000].
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind, EventKind, Reason
from derivex.exchange import Exchange, Quote
from derivex.gateway import Venue, shapes
from derivex.gateway.listing import catalog_from_state
from tests.core.test_lifecycle import BASE, USDC, index, venue

LOW, HIGH = 9_500_000, 10_500_000


def trader(ex) -> int:
    account = ex.create_account()
    ex.deposit(account, 10**6 * USDC)
    return account


def book(ex, perp) -> tuple[list, list]:
    """(price, lots) per level, bids then asks."""
    depth = ex.depth(perp, 10)
    return ([(p, q) for p, q, *_ in depth.bids], [(p, q) for p, q, *_ in depth.asks])


def test_band_is_the_mark_plus_minus_the_configured_band_on_the_tick_grid() -> None:
    ex, _, perp, _ = venue()
    assert ex.price_band(perp) == (LOW, HIGH)


def test_far_buy_is_clamped_to_the_top_and_far_sell_to_the_bottom() -> None:
    ex, _, perp, _ = venue()
    a, b = trader(ex), trader(ex)
    buy = ex.place(a, perp, "buy", 1, 20_000_000)  # 200,000.00 on a 100,000 market
    assert buy.accepted
    assert int(buy.events[0]["price_ticks"]) == HIGH
    assert book(ex, perp) == ([(HIGH, 1)], [])
    sell = ex.place(b, perp, "sell", 2, 150)  # 1.50
    assert sell.accepted
    assert int(sell.events[0]["price_ticks"]) == LOW
    fills = sell.events[sell.events["kind"] == EventKind.FILLED]
    assert set(fills["price_ticks"].tolist()) == {HIGH}  # at the resting bid's price
    assert book(ex, perp) == ([], [(LOW, 1)])
    ex.check_invariants()


def test_far_passive_prices_are_refused_and_change_nothing() -> None:
    ex, _, perp, _ = venue()
    a = trader(ex)
    below = ex.place(a, perp, "buy", 1, 150)
    above = ex.place(a, perp, "sell", 1, 20_000_000)
    assert below.reason == Reason.PRICE_BELOW_BAND
    assert above.reason == Reason.PRICE_ABOVE_BAND
    assert book(ex, perp) == ([], [])
    assert ex.place(a, perp, "buy", 1, LOW).accepted  # the edges themselves are inside
    assert ex.place(a, perp, "sell", 1, HIGH).accepted
    assert ex.place(a, perp, "buy", 1, LOW - 50).reason == Reason.PRICE_BELOW_BAND
    assert ex.place(a, perp, "sell", 1, HIGH + 50).reason == Reason.PRICE_ABOVE_BAND
    ex.check_invariants()


def test_market_and_limit_orders_follow_one_rule() -> None:
    """A resting ask left above the band by a falling mark is out of reach of a market buy
    and of a limit buy at any price alike."""
    ex, clock, perp, dealer = venue()
    a = trader(ex)
    assert ex.place(dealer, perp, "sell", 5, 10_400_000).accepted
    index(ex, clock, 9_800_000)  # band now [9,310,000, 10,290,000]
    assert ex.price_band(perp) == (9_310_000, 10_290_000)
    market = ex.place(a, perp, "buy", 1, order_type="market")
    limit = ex.place(a, perp, "buy", 1, 20_000_000, time_in_force="ioc")
    assert market.filled_lots == 0 and limit.filled_lots == 0
    for result in (market, limit):
        accepted = result.events[result.events["kind"] == EventKind.ACCEPTED]
        assert int(accepted[0]["price_ticks"]) == 10_290_000
    index(ex, clock, 10_000_000)  # back: the ask is inside the band again
    assert ex.place(a, perp, "buy", 1, order_type="market").filled_lots == 1
    ex.check_invariants()


def test_post_only_repriced_out_of_the_band_is_refused() -> None:
    ex, clock, perp, dealer = venue()
    a = trader(ex)
    assert ex.place(dealer, perp, "sell", 1, 9_600_000).accepted
    index(ex, clock, 10_400_000)  # band [9,880,000, 10,920,000]; the ask stays at 96,000
    result = ex.place(a, perp, "buy", 1, 10_000_000, post_only=True)
    assert result.reason == Reason.PRICE_BELOW_BAND  # repriced to 95,950: below the band
    ex.check_invariants()


def test_amend_is_banded_unless_it_only_reduces_at_the_old_price() -> None:
    ex, clock, perp, _ = venue()
    a = trader(ex)
    order = ex.place(a, perp, "buy", 4, 10_000_000)
    assert ex.amend(a, order.order_id, 150, 4).reason == Reason.PRICE_BELOW_BAND
    moved = ex.amend(a, order.order_id, 20_000_000, 4)
    assert moved.accepted
    amended = moved.events[moved.events["kind"] == EventKind.AMENDED]
    assert int(amended[0]["price_ticks"]) == HIGH
    assert ex.amend(a, order.order_id, 10_000_000, 4).accepted
    index(ex, clock, 11_000_000)  # band [10,450,000, 11,550,000]: the bid is left below
    assert ex.amend(a, order.order_id, 10_000_000, 2).accepted  # a pure reduction
    assert ex.amend(a, order.order_id, 10_000_000, 3).reason == Reason.PRICE_BELOW_BAND
    assert book(ex, perp)[0] == [(10_000_000, 2)]
    ex.check_invariants()


def test_mass_quote_side_outside_the_band_is_refused_alone() -> None:
    """A quote states an exact price: a side outside the band is rejected (not clamped), and
    only that side; the rest of the mass quote rests."""
    ex, _, perp, _ = venue()
    a = trader(ex)
    result = ex.mass_quote(a, [Quote(perp, 150, 1, 10_100_000, 2)])
    assert result.accepted
    rejected = result.events[result.events["kind"] == EventKind.REJECTED]
    assert rejected["reason"].tolist() == [Reason.PRICE_BELOW_BAND]
    assert rejected["leg"].tolist() == [1] and rejected["price_ticks"].tolist() == [150]
    assert book(ex, perp) == ([], [(10_100_000, 2)])
    result = ex.mass_quote(a, [Quote(perp, 9_900_000, 1, HIGH + 50, 1)])
    rejected = result.events[result.events["kind"] == EventKind.REJECTED]
    assert rejected["reason"].tolist() == [Reason.PRICE_ABOVE_BAND]
    assert book(ex, perp) == ([(9_900_000, 1)], [])  # the old ask was replaced
    assert ex.mass_quote(a, [Quote(perp, LOW, 1, HIGH, 1)]).accepted
    assert book(ex, perp) == ([(LOW, 1)], [(HIGH, 1)])
    ex.check_invariants()


def test_options_default_to_the_wider_option_band() -> None:
    ex, _, _, _ = venue()
    call = ex.add_option("BTC", 2_000_000_000_000_000_000, 10_000_000, "call", tick_size_ticks=5)
    ex.set_risk(call, 100_003, np.zeros(len(BASE.scenarios), dtype=np.int64))
    assert ex.price_band(call) == (5, 200_005)  # 100%: [one tick, 2 x mark] on the grid
    assert ex.set_price_band(call, 50_000).accepted
    assert ex.price_band(call) == (95_005, 105_000)


def test_the_band_is_an_instrument_setting() -> None:
    ex, _, perp, _ = venue()
    assert ex.set_funding_cap(perp, 500_000).accepted
    result = ex.set_price_band(perp, 10_000)  # 1%
    assert result.accepted
    assert int(result.events[0]["price_ticks"]) == 500_000  # the funding cap is kept
    assert int(result.events[0]["qty_lots"]) == 10_000
    assert ex.price_band(perp) == (9_900_000, 10_100_000)
    a = trader(ex)
    assert ex.place(a, perp, "buy", 1, 9_850_000).reason == Reason.PRICE_BELOW_BAND
    for bad in (-1, 1_000_001):
        assert ex.set_price_band(perp, bad).reason == Reason.BAD_INSTRUMENT_PARAMS
    assert ex.price_band(perp) == (9_900_000, 10_100_000)  # a refused setting changes nothing
    record = ex._command(CommandKind.SET_INSTRUMENT, instrument=perp, flags=8)
    assert record[0]["reason"] == Reason.BAD_INSTRUMENT_PARAMS  # unknown setting bits
    assert ex.set_price_band(perp, 0).accepted  # back to the configured 5%
    assert ex.price_band(perp) == (LOW, HIGH)
    ex.check_invariants()


def test_without_risk_checks_there_is_no_band() -> None:
    ex = Exchange(EngineConfig(risk_checks=False), clock=lambda: 1)
    perp = ex.add_perpetual("BTC", tick_size_ticks=50)
    a = trader(ex)
    assert ex.price_band(perp) is None
    assert ex.place(a, perp, "buy", 1, 150).accepted


def test_ticker_min_and_max_price_are_the_engines_band() -> None:
    ex, clock, perp, _ = venue(replace(BASE, market_band_ppm=37_000))
    gateway_venue = Venue(ex, catalog_from_state(ex))
    spec = gateway_venue.catalog.by_id[perp]
    a = trader(ex)
    for price in (10_000_000, 9_876_543, 10_123_457):
        index(ex, clock, price)
        low, high = ex.price_band(perp)
        data = shapes.ticker(gateway_venue, spec)
        assert (data["min_price"], data["max_price"]) == (spec.price(low), spec.price(high))
        assert ex.place(a, perp, "buy", 1, low - 50).reason == Reason.PRICE_BELOW_BAND
        assert ex.place(a, perp, "sell", 1, high + 50).reason == Reason.PRICE_ABOVE_BAND
        assert ex.place(a, perp, "buy", 1, low).accepted
        assert ex.place(a, perp, "sell", 1, high).accepted
