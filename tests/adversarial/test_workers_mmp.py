"""Market-maker protection with ``derivex serve --workers 2`` (no agents), raw JSON-RPC on
connections whose worker is known: the config set on one worker is read on the other; a
trade placed through worker 1 by another account freezes the market maker quoting through
worker 0 (its ``user.mmp_trigger`` subscription on worker 1 is notified, its other quote
is cancelled, a new mass quote is refused on either worker), and ``reset_mmp`` on worker 1
unfreezes it for worker 0. The single-process venue runs the same flow in
``tests/gateway/test_mmp_api.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.workers_served import Account, PerpetualVenue, connect_on_worker
from tests.gateway.rpc_client import RpcClient

WORKERS = 2
PERPETUAL = "BTC_USDC-PERPETUAL"
INDEX = "btc_usdc"
CHANNEL = f"user.mmp_trigger.{INDEX}"


class Venue(PerpetualVenue):
    def __init__(self, root: Path) -> None:
        super().__init__(root, 2, WORKERS)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("workers_mmp"))
    try:
        yield made
    finally:
        made.served.stop()


async def _on(venue: Venue, worker: int, account: Account) -> RpcClient:
    return await connect_on_worker(venue.served.ws_url, worker, account.client_id, account.secret)


async def _open(client: RpcClient, count: int) -> None:
    """Wait (10 s at most) until the account has ``count`` open orders."""
    orders = []
    for _ in range(200):
        orders = await client.result(
            "private/get_open_orders_by_instrument", {"instrument_name": PERPETUAL}
        )
        if len(orders) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(orders)} open orders, not {count}")


async def _status(client: RpcClient, frozen: bool) -> None:
    """Wait (10 s at most) until the worker shows the group frozen (or not)."""
    status = []
    for _ in range(200):
        status = await client.result("private/get_mmp_status", {"index_name": INDEX})
        if bool(status) == frozen:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"status {status}, expected frozen={frozen}")


def test_a_trade_through_one_worker_freezes_quotes_of_the_other(venue: Venue) -> None:
    maker, taker = venue.accounts

    async def run() -> None:
        quoter, watcher = await _on(venue, 0, maker), await _on(venue, 1, maker)
        counterparty = await _on(venue, 1, taker)
        assert await watcher.result("private/subscribe", {"channels": [CHANNEL]}) == [CHANNEL]
        config = {
            "index_name": INDEX,
            "interval": 60,
            "frozen_time": 0,
            "quantity_limit": venue.lot * 2,
            "delta_limit": 0,
            "vega_limit": 0,
        }
        assert await quoter.result("private/set_mmp_config", config) == config
        for _ in range(200):  # worker 1 has applied worker 0's command
            if await watcher.result("private/get_mmp_config", {}) == [config]:
                break
            await asyncio.sleep(0.05)
        assert await watcher.result("private/get_mmp_config", {"index_name": INDEX}) == [config]
        ticker = await quoter.result("public/ticker", {"instrument_name": PERPETUAL})
        mid, tick = float(ticker["mark_price"]), venue.tick
        bid, ask = round(mid * 0.99 / tick) * tick, round(mid * 1.01 / tick) * tick
        quote = {
            "instrument_name": PERPETUAL,
            "bid": {"price": bid, "amount": venue.lot * 2},
            "ask": {"price": ask, "amount": venue.lot * 2},
        }
        quoted = await quoter.result("private/mass_quote", {"quotes": [quote]})
        assert len(quoted["orders"]) == 2
        await _open(watcher, 2)
        bought = await counterparty.result(
            "private/buy",
            {"instrument_name": PERPETUAL, "amount": venue.lot * 2, "type": "limit", "price": ask},
        )
        assert bought["order"]["filled_amount"] == venue.lot * 2
        (note,) = await watcher.wait_for(CHANNEL)
        assert note == {"index_name": INDEX, "frozen_until": 0}
        await _open(quoter, 0)
        await _status(quoter, True)
        for client in (quoter, watcher):
            refused = await client.call("private/mass_quote", {"quotes": [quote]})
            assert refused["error"]["data"]["reason"] == "mmp_frozen"
        assert await watcher.result("private/reset_mmp", {"index_name": INDEX}) == "ok"
        await _status(quoter, False)
        again = await quoter.result("private/mass_quote", {"quotes": [quote]})
        assert len(again["orders"]) == 2
        await quoter.result("private/cancel_quotes")
        for client in (quoter, watcher, counterparty):
            await client.close()

    asyncio.run(run())
