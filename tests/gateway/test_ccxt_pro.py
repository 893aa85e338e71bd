"""ccxt.pro's deribit watch methods that no other test calls, unmodified, against the real
server: ``watch_tickers``, ``watch_order_book_for_symbols``, ``watch_trades_for_symbols``,
``watch_ohlcv_for_symbols`` (two option books at once) and ``watch_my_trades``. The table
of every ccxt.pro method is ``test_ccxt_coverage.PRO_COVERED``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.gateway.conftest import Server, symbol

WAIT_S = 10.0  # bound on every wait for a stream to show something (never hit when green)


async def until(watch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    """Call ``watch`` until ``done`` holds for its result (bounded by WAIT_S)."""

    async def loop() -> Any:
        while True:
            value = await watch()
            if done(value):
                return value

    return await asyncio.wait_for(loop(), WAIT_S)


def test_pro_streams_for_several_symbols_and_my_trades(server: Server) -> None:
    names = [server.option(), server.option()]
    maker_key, taker_key = server.key(), server.key()

    async def scenario() -> None:
        public, watcher = server.pro(), server.pro(taker_key)
        maker, taker = server.asynchronous(maker_key), server.asynchronous(taker_key)
        try:
            for client in (public, watcher, maker, taker):
                await client.load_markets()
            first, second = [symbol(maker, name) for name in names]
            for market, price in ((first, 700), (second, 900)):
                await maker.create_order(market, "limit", "sell", 0.5, price)
            tickers: dict[str, Any] = {}

            def both_tickers(update: dict[str, Any]) -> bool:
                tickers.update(update)  # each answer holds the tickers that changed
                return {m: tickers.get(m, {}).get("ask") for m in (first, second)} == {
                    first: 700,
                    second: 900,
                }

            await until(lambda: public.watch_tickers([first, second]), both_tickers)
            assert tickers[second]["askVolume"] == 0.5
            books: dict[str, float] = {}

            def both_books(book: Any) -> bool:
                if book["asks"]:
                    books[book["symbol"]] = book["asks"][0][0]
                return books == {first: 700, second: 900}

            await until(lambda: public.watch_order_book_for_symbols([first, second]), both_books)
            # a watch resolves on the next message: each is started before the trade it
            # waits for, one trade at a time (a message between two calls of a watch for
            # several symbols is not handed to the second call)
            trades_task = asyncio.ensure_future(public.watch_trades_for_symbols([first, second]))
            mine_task = asyncio.ensure_future(watcher.watch_my_trades(first))
            await asyncio.sleep(0.3)  # let the subscriptions reach the server
            await taker.create_order(first, "limit", "buy", 0.1, 700)
            trades = await asyncio.wait_for(trades_task, WAIT_S)
            assert [(t["symbol"], t["price"], t["amount"]) for t in trades] == [(first, 700, 0.1)]
            mine = await asyncio.wait_for(mine_task, WAIT_S)
            assert [(t["symbol"], t["price"], t["amount"], t["side"]) for t in mine] == [
                (first, 700, 0.1, "buy")
            ]
            trades_task = asyncio.ensure_future(public.watch_trades_for_symbols([first, second]))
            candles_task = asyncio.ensure_future(
                until(
                    lambda: public.watch_ohlcv_for_symbols([[first, "1m"], [second, "1m"]]),
                    lambda c: second in c and c[second]["1m"][-1][5] >= 0.2,
                )
            )
            await asyncio.sleep(0.3)
            await taker.create_order(second, "limit", "buy", 0.2, 900)
            trades = await asyncio.wait_for(trades_task, WAIT_S)
            assert [(t["symbol"], t["price"], t["amount"]) for t in trades] == [(second, 900, 0.2)]
            candles = await candles_task
            assert candles[second]["1m"][-1][1:6] == [900, 900, 900, 900, 0.2]
        finally:
            for client in (maker, taker, public, watcher):
                await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
