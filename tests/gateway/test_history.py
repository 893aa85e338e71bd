"""The history methods (``gateway/history_api.py``) over a venue driven by hand with a test
clock: funding paid and its hourly rate history, an option delivered at expiry, deposits,
trades in the transaction log, marks, and the realised volatility of the index; then the
ccxt methods (``fetch_funding_rate_history``, ``fetch_volatility_history``) against the
real gateway."""

from __future__ import annotations

import asyncio
import itertools
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.gateway.auth import Session
from derivex.gateway.history import history_of
from derivex.gateway.keys import KeyStore
from derivex.gateway.listing import list_all, option, perpetual
from derivex.gateway.methods import METHODS, Context
from derivex.gateway.serve import open_venue
from derivex.gateway.venue import Venue
from derivex.market.inputs import Market
from tests.gateway.conftest import Server, symbol

NOW = 1_798_761_600_000_000_000  # 2027-01-01 00:00 UTC
MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
USDC = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _call(venue: Venue, account: int, name: str, **params: Any) -> Any:
    key = KeyStore(None).create(account, ("read", "trade"))
    ctx = Context(venue, None, Session(key))  # type: ignore[arg-type]
    method = METHODS[name]
    method.check_params(params)
    return method.handler(ctx, params)


def test_funding_delivery_deposits_and_trades_make_the_history() -> None:
    clock = Clock()
    ex = Exchange(EngineConfig(mark_ema_ppm=1_000_000), clock=clock)  # (funding needs risk on)
    expiry_ms = (NOW + 8 * HOUR) // 10**6
    catalog = list_all(
        ex, [perpetual("BTC", NOW // 10**6), option("BTC", expiry_ms, Decimal(100_000), "call")]
    )
    venue = Venue(ex, catalog)
    history = history_of(venue)
    perp, call = (
        catalog.by_name["BTC_USDC-PERPETUAL"],
        next(s for s in catalog if s.kind == "option"),
    )

    def index(price: int) -> None:
        venue.apply(ex.set_index("BTC", [(0, clock.now, price)]).events)

    dealer, long_ = ex.create_account(), ex.create_account()
    for account in (dealer, long_):
        venue.apply(ex.deposit(account, 10**6 * USDC).events)
    index(10_000_000)
    venue.place(dealer, perp, "sell", 10, 10_000_000)
    venue.place(long_, perp, "buy", 10, 10_000_000, time_in_force="ioc")
    venue.place(dealer, perp, "buy", 1, 10_005_000)  # a book 0.1% rich
    venue.place(dealer, perp, "sell", 1, 10_015_000)
    index(10_000_000)
    history.sample({perp.instrument})
    clock.now += HOUR
    venue.apply(ex.advance_time().events)  # funding: 750,000 ppb per 8 h (test_lifecycle)
    history.sample({perp.instrument})
    funding = _call(
        venue,
        long_,
        "public/get_funding_rate_history",
        instrument_name=perp.name,
        start_timestamp=0,
        end_timestamp=clock.now // 10**6,
    )
    assert [f["timestamp"] for f in funding] == [NOW // 10**6, (NOW + HOUR) // 10**6]
    assert funding[-1]["interest_8h"] == pytest.approx(7.5e-4)
    assert funding[-1]["interest_1h"] == pytest.approx(7.5e-4 / 8)
    assert funding[-1]["index_price"] == 100_000.0
    marks = _call(
        venue,
        long_,
        "public/get_mark_price_history",
        instrument_name=perp.name,
        start_timestamp=0,
        end_timestamp=clock.now // 10**6,
    )
    assert marks[-1][1] == 100_100.0
    # the option: bought, then delivered at expiry (index TWAP 101,000)
    ex.set_risk(call.instrument, 100_000, np.zeros(len(ex.engine.config.scenarios), np.int64))
    venue.place(dealer, call, "sell", 300, 100_000)
    venue.place(long_, call, "buy", 300, 100_000, time_in_force="ioc")
    for minutes_before, price in ((40, 10_000_000), (20, 10_100_000), (10, 10_200_000)):
        clock.now = NOW + 8 * HOUR - minutes_before * MINUTE
        index(price)
    clock.now = NOW + 8 * HOUR
    venue.apply(ex.advance_time().events)
    delivered = _call(venue, long_, "public/get_delivery_prices", index_name="btc_usdc")
    assert delivered == {
        "data": [{"date": "2027-01-01", "delivery_price": 101_000.0}],
        "records_total": 1,
    }
    public = _call(
        venue, long_, "public/get_last_settlements_by_instrument", instrument_name=call.name
    )
    assert [(s["type"], s["mark_price"]) for s in public["settlements"]] == [("delivery", 101_000)]
    mine = _call(
        venue, long_, "private/get_settlement_history_by_currency", currency="BTC", type="delivery"
    )
    (delivery,) = mine["settlements"]
    assert delivery["instrument_name"] == call.name and delivery["position"] == pytest.approx(
        call.amount(300)
    )
    assert delivery["profit_loss"] == pytest.approx(call.amount(300) * 1_000)
    funded = _call(
        venue, long_, "private/get_settlement_history_by_instrument", instrument_name=perp.name
    )
    # newest first: at expiry the index (102,000) is above the book: the long receives;
    # in the first hour the book was 0.1% rich: the long paid
    # (the index updates before expiry accrue funding too: one entry per hour)
    assert {s["type"] for s in funded["settlements"]} == {"settlement"}
    assert funded["settlements"][0]["funding"] > 0 > funded["settlements"][-1]["funding"]
    assert [s["timestamp"] // 3_600_000 for s in funded["settlements"]] == [
        (NOW + h * HOUR) // 10**6 // 3_600_000 for h in (8, 7, 1)
    ]
    log = _call(
        venue,
        long_,
        "private/get_transaction_log",
        currency="USDC",
        start_timestamp=0,
        end_timestamp=clock.now // 10**6,
    )["logs"]
    assert [entry["type"] for entry in log] == [
        "settlement",
        "delivery",
        "settlement",
        "trade",
        "settlement",
        "trade",
        "deposit",
    ]
    assert log[-1]["change"] == 10**6 and log[-1]["balance"] == 10**6
    trades = _call(
        venue,
        long_,
        "private/get_transaction_log",
        currency="USDC",
        start_timestamp=0,
        end_timestamp=clock.now // 10**6,
        query="trade",
    )["logs"]
    assert [t["instrument_name"] for t in trades] == [call.name, perp.name]


def test_realised_volatility_of_the_index() -> None:
    clock = Clock()
    ex = Exchange(EngineConfig(risk_checks=False), clock=clock)
    venue = Venue(ex, list_all(ex, [perpetual("BTC", NOW // 10**6)]))
    prices = [10_000_000, 10_100_000, 10_000_000, 10_200_000]
    for step, price in enumerate(prices):
        clock.now = NOW + step * 10 * MINUTE
        venue.apply(ex.set_index("BTC", [(0, clock.now, price)]).events)
    clock.now = NOW + HOUR + MINUTE  # one more sample, in the next hour
    venue.apply(ex.set_index("BTC", [(0, clock.now, 10_200_000)]).events)
    vol = _call(venue, 2, "public/get_historical_volatility", currency="BTC")
    squares = sum(math.log(b / a) ** 2 for a, b in itertools.pairwise(prices))
    expected = math.sqrt(squares / 0.5 * 24 * 365) * 100  # 30 minutes of returns
    assert [v[0] for v in vol] == [NOW // 10**6, (NOW + HOUR) // 10**6]
    assert vol[0][1] == pytest.approx(expected)
    assert vol[1][1] == 0.0  # an unchanged index over the next 41 minutes


def test_ccxt_funding_rate_and_volatility_history(server: Server) -> None:
    def step() -> None:
        market = Market.simulated(server.gateway.venue, 11)
        for _ in range(3):
            market.index_step()

    server.thread.call(step)

    async def run() -> None:
        client = server.asynchronous()
        try:
            await client.load_markets()
            market = "BTC/USDC:USDC"
            for _ in range(50):  # the history is sampled every 100 ms
                rates = await client.fetch_funding_rate_history(market)
                if rates:
                    break
                await asyncio.sleep(0.1)
            assert rates and rates[-1]["symbol"] == market
            assert isinstance(rates[-1]["fundingRate"], float)
            volatility = await client.fetch_volatility_history("BTC")
            assert volatility and volatility[-1]["volatility"] >= 0
            assert volatility[-1]["timestamp"] % 3_600_000 == 0
        finally:
            await client.close()

    asyncio.run(run())
    sync = server.sync()
    assert symbol(sync, "BTC_USDC-PERPETUAL") == "BTC/USDC:USDC"
    assert sync.fetch_funding_rate_history("BTC/USDC:USDC")[-1]["fundingRate"] is not None


def test_a_restart_rebuilds_trades_and_history_from_the_journal(tmp_path: Path) -> None:
    clock = Clock()
    opened = open_venue(tmp_path, demo=False, clock=clock)
    venue, ex = opened.venue, opened.venue.exchange
    history = history_of(venue)  # (the gateway's Hub makes it at once)
    perp = venue.catalog.by_name["BTC_USDC-PERPETUAL"]
    venue.apply(ex.set_index("BTC", [(0, clock.now, 10_000_000)]).events)
    buyer, seller = ex.create_account(), ex.create_account()
    for account in (buyer, seller):
        venue.apply(ex.deposit(account, 10**6 * USDC).events)
    for minute, price in enumerate((10_000_000, 10_001_000, 9_999_000)):
        clock.now = NOW + minute * MINUTE
        venue.place(seller, perp, "sell", 7, price)
        venue.place(buyer, perp, "buy", 5, price, time_in_force="ioc")
    venue.cancel_all(seller)

    def seen(v: Venue) -> Any:
        def ask(name: str, **params: Any) -> Any:
            return _call(v, buyer, name, **params)

        window = {"start_timestamp": 0, "end_timestamp": clock.now // 10**6 + 1}
        return (
            ask("private/get_transaction_log", currency="USDC", **window),
            ask(
                "public/get_tradingview_chart_data",
                instrument_name=perp.name,
                resolution="1",
                **window,
            ),
            ask("private/get_order_history_by_currency", currency="BTC"),
            [t.trade_seq for t in v.public_trades[perp.instrument]],
        )

    before = seen(venue)
    assert len(before[1]["ticks"]) == 3  # a candle per minute
    assert len(before[0]["logs"]) == len(venue.trades_of(buyer)) + 1 == 5  # trades, deposit
    assert history.log_of(buyer)[0]["type"] == "deposit"
    assert ex.journal is not None
    ex.journal.close()
    reopened = open_venue(tmp_path, demo=False, clock=clock).venue
    assert reopened.exchange.engine.state_hash() == ex.engine.state_hash()
    assert seen(reopened) == before
    reopened.exchange.journal.close()  # type: ignore[union-attr]
