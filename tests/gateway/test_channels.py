"""The channels of ``gateway/feeds.py`` and ``gateway/user_changes.py`` against a real
gateway: raw JSON-RPC for every kind, ccxt.pro for the ones ccxt watches
(``watch_bids_asks``: ``quote``, ``watch_ohlcv``: ``chart.trades``), and the error that
names a channel of a kind the venue does not serve."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from derivex.market.inputs import Market
from tests.gateway.conftest import Server, symbol
from tests.gateway.rpc_client import RpcClient

WAIT_S = 10.0


async def _trader(server: Server, key: Any = None) -> RpcClient:
    client = await RpcClient.connect(server.ws_url)
    if key is not None:
        await client.auth(key.client_id, key.client_secret)
    return client


async def _order(client: RpcClient, side: str, name: str, amount: float, price: float) -> Any:
    params = {"instrument_name": name, "amount": amount, "type": "limit", "price": price}
    return await client.result(f"private/{side}", params)


async def _until(client: RpcClient, channel: str, done: Any) -> Any:
    """The first notification of ``channel`` for which ``done`` holds (WAIT_S at most)."""
    seen = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        got = await client.wait_for(channel, seen + 1, max(0.1, deadline - loop.time()))
        seen = len(got)
        if done(got[-1]):
            return got[-1]
    raise AssertionError(f"{channel}: {client.notifications.get(channel)}")


def test_a_channel_of_an_unserved_kind_is_an_error_naming_it(server: Server) -> None:
    async def run() -> None:
        client = await _trader(server, server.key())
        name = server.options[0]
        reply = await client.call(
            "public/subscribe",
            {"channels": [f"quote.{name}", "estimated_expiration_price.btc_usd"]},
        )
        assert reply["error"]["code"] == -32602
        assert "estimated_expiration_price.btc_usd" in reply["error"]["data"]["reason"]
        assert f"quote.{name}" not in client.notifications  # all or nothing
        # a served kind naming what the venue does not list is left out silently (ccxt's
        # watch_balance asks for user.portfolio of currencies a venue may not hold)
        assert await client.result("private/subscribe", {"channels": ["user.portfolio.SOL"]}) == []
        assert await client.result("public/subscribe", {"channels": ["quote.NOPE"]}) == []
        await client.close()

    asyncio.run(run())


def test_quote_grouped_book_and_incremental_ticker(server: Server) -> None:
    name, key = server.option(), server.key()
    channels = [
        f"quote.{name}",
        f"book.{name}.none.10.100ms",
        f"book.{name}.10.10.100ms",
        f"book.{name}.none.1.agg2",
        f"incremental_ticker.{name}",
    ]

    async def run() -> None:
        watcher, maker = await _trader(server), await _trader(server, key)
        assert await watcher.result("public/subscribe", {"channels": channels}) == channels
        first = await watcher.wait_for(f"quote.{name}")
        assert first[0]["best_bid_price"] == 0.0 and first[0]["instrument_name"] == name
        snapshot = (await watcher.wait_for(f"incremental_ticker.{name}"))[0]
        assert snapshot["type"] == "snapshot" and snapshot["state"] == "open"
        await _order(maker, "buy", name, 0.5, 1000)
        await _order(maker, "buy", name, 0.25, 995)
        await _order(maker, "sell", name, 0.3, 1105)
        quote = await _until(watcher, f"quote.{name}", lambda d: d["best_ask_price"] == 1105)
        assert (quote["best_bid_price"], quote["best_bid_amount"]) == (1000, 0.5)
        full = await _until(watcher, f"book.{name}.none.10.100ms", lambda d: len(d["asks"]) == 1)
        assert full["bids"] == [[1000, 0.5], [995, 0.25]] and full["asks"] == [[1105, 0.3]]
        grouped = await _until(watcher, f"book.{name}.10.10.100ms", lambda d: len(d["asks"]) == 1)
        assert grouped["bids"] == [[1000, 0.5], [990, 0.25]] and grouped["asks"] == [[1110, 0.3]]
        top = await _until(watcher, f"book.{name}.none.1.agg2", lambda d: d["asks"] != [])
        assert top["bids"] == [[1000, 0.5]]
        change = await _until(
            watcher, f"incremental_ticker.{name}", lambda d: d.get("best_ask_price") == 1105
        )
        assert change["type"] == "change" and change["best_bid_price"] == 1000
        assert "state" not in change  # only what changed (and the instrument and time)
        await watcher.close()
        await maker.close()

    asyncio.run(run())


def test_index_markprice_platform_and_instrument_state(server: Server) -> None:
    def step() -> None:
        market = Market.simulated(server.gateway.venue, 5)
        market.index_step()
        market.pricing_step()

    async def run() -> None:
        watcher = await _trader(server)
        channels = [
            "deribit_price_index.btc_usdc",
            "markprice.options.btc_usdc",
            "platform_state",
            "instrument.state.option.BTC",
        ]
        assert await watcher.result("public/subscribe", {"channels": channels}) == channels
        assert (await watcher.wait_for("platform_state"))[0] == {"locked": False}
        server.thread.call(step)
        index = await _until(watcher, "deribit_price_index.btc_usdc", lambda d: d["price"] > 0)
        assert index["index_name"] == "btc_usdc"
        rest = await watcher.result("public/get_index_price", {"index_name": "btc_usdc"})
        assert index["price"] == rest["index_price"]
        marks = await _until(
            watcher, "markprice.options.btc_usdc", lambda d: any(m["mark_price"] > 0 for m in d)
        )
        assert {m["instrument_name"] for m in marks} >= set(server.options[:3])
        assert all(m["iv"] > 0 for m in marks if m["mark_price"] > 0)
        halted = server.options[-1]
        spec = server.gateway.venue.catalog.by_name[halted]
        server.thread.call(lambda: server.gateway.venue.exchange.halt(spec.instrument))
        state = await _until(watcher, "instrument.state.option.BTC", lambda d: True)
        assert state["instrument_name"] == halted and state["state"] == "halted"
        server.thread.call(lambda: server.gateway.venue.exchange.resume(spec.instrument))
        state = (await watcher.wait_for("instrument.state.option.BTC", 2))[1]
        assert (state["instrument_name"], state["state"]) == (halted, "open")
        await watcher.close()

    asyncio.run(run())


def test_user_changes_raw_and_100ms(server: Server) -> None:
    name, key, other = server.option(), server.key(), server.key()
    raw, gathered = "user.changes.option.any.raw", f"user.changes.{name}.100ms"

    async def run() -> None:
        mine, theirs = await _trader(server, key), await _trader(server, other)
        assert await mine.result("private/subscribe", {"channels": [raw, gathered]}) == [
            raw,
            gathered,
        ]
        # nobody else's changes reach this subscription
        await theirs.result("private/subscribe", {"channels": [raw]})
        placed = await _order(mine, "sell", name, 0.5, 1200)
        change = (await mine.wait_for(raw))[0]
        assert change["instrument_name"] == name and change["trades"] == []
        assert [o["order_id"] for o in change["orders"]] == [placed["order"]["order_id"]]
        await _order(theirs, "buy", name, 0.2, 1200)
        fill = await _until(mine, raw, lambda d: d["trades"] != [])
        assert fill["trades"][0]["amount"] == 0.2 and fill["trades"][0]["direction"] == "sell"
        assert fill["positions"][0]["size"] == -0.2
        assert fill["orders"][0]["filled_amount"] == 0.2
        batch = await _until(mine, gathered, lambda d: d["trades"] != [])
        assert batch["positions"][0]["size"] == -0.2
        theirs_seen = theirs.notifications.get(raw, [])
        assert all(
            o["order_id"] != placed["order"]["order_id"] for d in theirs_seen for o in d["orders"]
        )
        await mine.close()
        await theirs.close()

    asyncio.run(run())


def test_pro_watch_bids_asks_and_watch_ohlcv(server: Server) -> None:
    name, maker_key, taker_key = server.option(), server.key(), server.key()

    async def run() -> None:
        pro, maker = server.pro(), server.asynchronous(maker_key)
        taker = server.asynchronous(taker_key)
        try:
            await pro.load_markets()
            await maker.load_markets()
            await taker.load_markets()
            market = symbol(pro, name)
            await maker.create_order(market, "limit", "sell", 0.5, 1300)

            async def bid_ask() -> Any:
                while True:
                    tickers = await pro.watch_bids_asks([market])
                    if market in tickers and tickers[market]["ask"] == 1300:
                        return tickers[market]

            ticker = await asyncio.wait_for(bid_ask(), WAIT_S)
            assert ticker["askVolume"] == 0.5 and ticker["symbol"] == market
            await taker.create_order(market, "limit", "buy", 0.2, 1300)

            async def candles() -> Any:
                while True:
                    ohlcv = await pro.watch_ohlcv(market, "1m")
                    if ohlcv and ohlcv[-1][5] >= 0.2:
                        return ohlcv

            ohlcv = await asyncio.wait_for(candles(), WAIT_S)
            assert ohlcv[-1][1:5] == [1300, 1300, 1300, 1300]
            await taker.create_order(market, "limit", "buy", 0.1, 1300)

            async def grown() -> Any:
                while True:
                    ohlcv = await pro.watch_ohlcv(market, "1m")
                    if ohlcv[-1][5] >= 0.3 - 1e-9:
                        return ohlcv

            assert (await asyncio.wait_for(grown(), WAIT_S))[-1][5] == 0.3
            rest = await taker.fetch_ohlcv(market, "1m", since=ohlcv[-1][0])
            assert rest[-1][0] == ohlcv[-1][0] and rest[-1][5] == pytest.approx(0.3)
        finally:
            await pro.close()
            await maker.close()
            await taker.close()

    asyncio.run(run())
