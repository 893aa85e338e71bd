"""The history and what-if answers of issue 16 with ``derivex serve --workers 2`` (no
agents), through unmodified ccxt (sync and pro) and raw JSON-RPC:

- candles (ccxt ``fetch_ohlcv``) equal a recomputation from the public trades (ccxt
  ``fetch_trades``), and every worker answers the same;
- ccxt.pro ``watch_bids_asks`` and ``watch_ohlcv`` see orders and trades placed through
  REST, whichever worker each connection reached;
- ``private/simulate_portfolio`` of the portfolio an account holds equals its
  ``get_account_summary`` margins on each worker (read while the mark stands still: the
  venue's index feed moves it every second).

The single-process venue runs the same in ``tests/gateway/test_dashboard_api.py``,
``tests/gateway/test_channels.py`` and ``tests/gateway/test_margin_api.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import ccxt.pro
import pytest

from tests.adversarial.workers_served import Account, PerpetualVenue, ccxt_config
from tests.gateway.rpc_client import RpcClient
from tests.gateway.test_dashboard_api import _recompute

WORKERS = 2
PERPETUAL = "BTC_USDC-PERPETUAL"
# the margins only: the served venue charges fees and the trade is not at the mark, so
# equity moves by the fee and the trade's P&L (test_margin_api, with neither, compares all)
FIGURES = ("initial_margin", "maintenance_margin")
WAIT_S = 10.0


class Venue(PerpetualVenue):
    def __init__(self, root: Path) -> None:
        super().__init__(root, 2, WORKERS)

    def config(self, account: Account | None = None) -> dict[str, Any]:
        return ccxt_config(self.served, account)

    def sync(self, account: Account | None = None) -> ccxt.deribit:
        client = ccxt.deribit(self.config(account))
        client.load_markets()
        return client


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("workers_ccxt"))
    try:
        yield made
    finally:
        made.served.stop()


def _symbol(client: Any) -> str:
    return client.markets_by_id[PERPETUAL][0]["symbol"]  # type: ignore[no-any-return]


def test_candles_and_pro_streams_on_every_worker(venue: Venue) -> None:
    maker_account, taker_account = venue.accounts
    maker, taker = venue.sync(maker_account), venue.sync(taker_account)
    market = _symbol(maker)
    mark = float(maker.fetch_ticker(market)["info"]["mark_price"])
    # above the mark for the maker's sells (no agents: nothing else rests there)
    prices = [round(mark * 1.01 / venue.tick) * venue.tick + k * venue.tick for k in (0, 2, 1)]
    for price in prices:
        maker.create_order(market, "limit", "sell", venue.lot, price)
        taker.create_order(market, "limit", "buy", venue.lot, price)
    answers = []
    for _ in range(4):  # fresh clients: their connections spread over the workers
        reader = venue.sync()
        trades: list[Any] = []
        for _ in range(100):  # a worker walks the other's frames as it reads the bus
            trades = reader.fetch_trades(market, limit=100)
            if len(trades) == len(prices):
                break
        assert [t["price"] for t in trades] == prices
        since = trades[0]["timestamp"] - 60_000
        ohlcv = reader.fetch_ohlcv(market, "1m", since=since)
        assert ohlcv == _recompute(trades, 60_000)
        answers.append(repr(ohlcv))
    assert len(set(answers)) == 1

    async def streams() -> None:
        pro = ccxt.pro.deribit(venue.config())
        try:
            await pro.load_markets()
            ask = prices[1] + venue.tick
            maker.create_order(market, "limit", "sell", venue.lot * 2, ask)

            async def bid_ask() -> Any:
                while True:
                    tickers = await pro.watch_bids_asks([market])
                    if tickers.get(market, {}).get("ask") == ask:
                        return tickers[market]

            ticker = await asyncio.wait_for(bid_ask(), WAIT_S)
            assert ticker["askVolume"] == venue.lot * 2
            candles_task = asyncio.ensure_future(pro.watch_ohlcv(market, "1m"))
            await asyncio.sleep(0.3)
            taker.create_order(market, "limit", "buy", venue.lot, ask)

            async def grown() -> Any:
                candles = await candles_task
                while candles[-1][4] != ask:
                    candles = await pro.watch_ohlcv(market, "1m")
                return candles

            candles = await asyncio.wait_for(grown(), WAIT_S)
            assert candles[-1][4] == ask  # the last trade closes the current candle
        finally:
            await pro.close()

    asyncio.run(streams())
    maker.cancel_all_orders()


async def _on(venue: Venue, worker: int, account: Account) -> RpcClient:
    """An authenticated connection that the kernel gave to ``worker``."""
    for _ in range(80):
        client = await RpcClient.connect(venue.served.ws_url)
        if client.worker.split(".")[0] == str(worker):
            await client.auth(account.client_id, account.secret)
            return client
        await client.close()
    raise AssertionError(f"no connection reached worker {worker}")


def test_simulated_portfolio_equals_the_held_one_on_every_worker(venue: Venue) -> None:
    """On each worker: the taker simulates selling one more lot, sells it (the order goes
    through the other worker), and its summary once this worker has walked the trade
    equals the simulation; compared when the mark stood still from the simulation to the
    summary (else the step is repeated with one more lot)."""
    maker_account, taker_account = venue.accounts
    lot = venue.lot

    async def run() -> None:
        maker, sellers = await _on(venue, 0, maker_account), {}
        ticker = await maker.result("public/ticker", {"instrument_name": PERPETUAL})
        price = round(float(ticker["mark_price"]) * 0.99 / venue.tick) * venue.tick
        order = {"instrument_name": PERPETUAL, "amount": lot, "price": price, "type": "limit"}
        for worker in range(WORKERS):
            sellers[worker] = await _on(venue, worker, taker_account)
        for worker in range(WORKERS):
            reader, seller = sellers[worker], sellers[1 - worker]
            compared = False
            for _ in range(20):
                held = await _size(reader)
                before = await reader.result("public/ticker", {"instrument_name": PERPETUAL})
                simulated = await reader.result(
                    "private/simulate_portfolio", {"add_positions": {PERPETUAL: -lot}}
                )
                await maker.result("private/buy", order)
                sold = await seller.result("private/sell", order)
                assert sold["order"]["filled_amount"] == lot
                for _ in range(200):  # this worker walks the other's frame
                    if await _size(reader) < held:
                        break
                    await asyncio.sleep(0.05)
                summary = await reader.result("private/get_account_summary", {"currency": "USDC"})
                after = await reader.result("public/ticker", {"instrument_name": PERPETUAL})
                if before["mark_price"] != after["mark_price"]:
                    continue  # an index step in between: again, with one more lot
                assert {f: simulated[f] for f in FIGURES} == {f: summary[f] for f in FIGURES}
                assert summary["initial_margin"] > 0
                compared = True
                break
            assert compared, f"worker {worker}: the mark never stood still"
        for client in (maker, *sellers.values()):
            await client.close()

    asyncio.run(run())


async def _size(client: RpcClient) -> float:
    position = await client.result("private/get_position", {"instrument_name": PERPETUAL})
    return float(position["size"])
