"""ccxt's asyncio client (REST) and ccxt.pro (WebSocket) against a real gateway: order
entry, and the order book, trades, orders, ticker and balance streams."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
import pytest

from tests.gateway.conftest import Server, symbol

WAIT_S = 10.0  # bound on every wait for a stream to show something (never hit when green)


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def until(watch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    """Call ``watch`` until ``done`` holds for its result (bounded by WAIT_S)."""

    async def loop() -> Any:
        while True:
            value = await watch()
            if done(value):
                return value

    return await asyncio.wait_for(loop(), WAIT_S)


def test_async_rest_order_entry(server: Server) -> None:
    name = server.option()

    async def scenario() -> None:
        maker, taker = server.asynchronous(server.key()), server.asynchronous(server.key())
        try:
            await maker.load_markets()
            await taker.load_markets()
            market = symbol(maker, name)
            resting = await maker.create_order(market, "limit", "sell", 0.5, 700)
            results = await asyncio.gather(
                *[taker.create_order(market, "limit", "buy", 0.1, 700) for _ in range(3)]
            )
            assert [r["status"] for r in results] == ["closed"] * 3
            order = await maker.fetch_order(resting["id"], market)
            assert order["filled"] == pytest.approx(0.3)
            balances = await asyncio.gather(*[taker.fetch_balance() for _ in range(10)])
            assert len({b["USDC"]["total"] for b in balances}) == 1  # unique nonces (conftest)
            with pytest.raises(ccxt.InvalidOrder):
                await taker.create_order(
                    market, "limit", "buy", 0.1, 700, params={"postOnly": True, "label": "a b/c"}
                )
            labelled = await taker.create_order(
                market, "limit", "buy", 0.1, 500, params={"label": "a b/c,é"}
            )
            assert labelled["info"]["label"] == "a b/c,é"
            cancelled = await taker.cancel_order(labelled["id"], market)
            assert cancelled["status"] == "canceled"
        finally:
            await maker.close()
            await taker.close()

    run(scenario())


def test_pro_order_book_stays_identical_to_rest(server: Server) -> None:
    name = server.option()
    maker_key, taker_key = server.key(), server.key()

    async def scenario() -> None:
        pro = server.pro()
        maker, taker = server.asynchronous(maker_key), server.asynchronous(taker_key)
        try:
            await maker.load_markets()
            await taker.load_markets()
            market = symbol(maker, name)
            await maker.create_order(market, "limit", "buy", 0.5, 1000)
            book = await pro.watch_order_book(market)
            assert [level[:2] for level in book["bids"]] == [[1000.0, 0.5]]
            placed = []
            for price in (1005, 1010, 995):
                placed.append(await maker.create_order(market, "limit", "buy", 0.2, price))
            for price in (1200, 1300):
                await maker.create_order(market, "limit", "sell", 0.3, price)
            await taker.create_order(market, "market", "sell", 0.3)  # eats 1010, part of 1005
            await maker.cancel_order(placed[2]["id"], market)  # 995 leaves
            # the 1005 order (0.1 of 0.2 filled) grows to 0.3 in all: 0.2 remaining
            await maker.edit_order(placed[0]["id"], market, "limit", "buy", 0.3, 1005)
            rest = await taker.fetch_order_book(market)

            def same(levels: Any) -> bool:
                return [lv[:2] for lv in levels["bids"]] == rest["bids"] and [
                    lv[:2] for lv in levels["asks"]
                ] == rest["asks"]

            book = await until(lambda: pro.watch_order_book(market), same)
            assert rest["bids"] == [[1005.0, 0.2], [1000.0, 0.5]]
            assert rest["asks"] == [[1200.0, 0.3], [1300.0, 0.3]]
            assert same(book)
        finally:
            await pro.close()
            await maker.close()
            await taker.close()

    run(scenario())


def test_pro_trades_orders_ticker_and_balance(server: Server) -> None:
    name = server.option()
    maker_key, taker_key = server.key(), server.key()

    async def scenario() -> None:
        watcher = server.pro(maker_key)
        public = server.pro()
        maker, taker = server.asynchronous(maker_key), server.asynchronous(taker_key)
        try:
            for client in (maker, taker, watcher, public):
                await client.load_markets()
            market = symbol(maker, name)
            orders_task = asyncio.ensure_future(watcher.watch_orders())
            trades_task = asyncio.ensure_future(public.watch_trades(market))
            balance_task = asyncio.ensure_future(watcher.watch_balance())
            ticker = await public.watch_ticker(market)
            assert ticker["symbol"] == market
            await asyncio.sleep(0.3)  # let the subscriptions reach the server
            resting = await maker.create_order(market, "limit", "sell", 0.4, 800)
            orders = await asyncio.wait_for(orders_task, WAIT_S)
            assert any(o["id"] == resting["id"] and o["status"] == "open" for o in orders)
            # a watch resolves on the next message: start them before the trade
            fills_task = asyncio.ensure_future(watcher.watch_orders())
            ticker_task = asyncio.ensure_future(
                until(lambda: public.watch_ticker(market), lambda t: t["last"] == 800.0)
            )
            await asyncio.sleep(0.05)
            await taker.create_order(market, "limit", "buy", 0.1, 800)
            trades = await asyncio.wait_for(trades_task, WAIT_S)
            assert [(t["price"], t["amount"], t["side"]) for t in trades][-1:] == [
                (800.0, 0.1, "buy")
            ]
            orders = await asyncio.wait_for(fills_task, WAIT_S)
            (filled,) = [o for o in orders if o["id"] == resting["id"]]
            assert filled["filled"] == 0.1 and filled["status"] == "open"
            balance = await asyncio.wait_for(balance_task, WAIT_S)
            # ccxt.pro keeps the parsed structure under the currency code
            assert balance["info"]["currency"] == "USDC" and balance["info"]["equity"] > 0
            ticker = await asyncio.wait_for(ticker_task, WAIT_S)
            assert ticker["ask"] == 800.0 and ticker["askVolume"] == pytest.approx(0.3)
        finally:
            for client in (watcher, public, maker, taker):
                await client.close()

    run(scenario())


def test_pro_bad_signature_closes_fast(server: Server) -> None:
    key = server.key()

    async def scenario() -> None:
        pro = server.pro()
        pro.apiKey, pro.secret = key.client_id, "wrong"
        try:
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pro.watch_orders(), WAIT_S)
        finally:
            await pro.close()

    run(scenario())
