"""Self-trade prevention across a family and the ``mmp`` order field with ``derivex serve
--workers 2`` (no agents), raw JSON-RPC on connections whose worker is known: the main
account on worker 0, its subaccount on worker 1. Not extended they trade; extended with
``cancel_maker`` the main's resting order is cancelled (its order object, read on worker 0,
says ``self_trade_prevention``) and nothing trades; with ``reject_taker`` the crossing
order is refused; an ``mmp`` order placed on worker 0 reads ``mmp: true`` on worker 1.
Also: no trading key reaches the operator's kill switch on either worker.
The single-process venue runs the same flow in ``tests/gateway/test_self_trading.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from derivex.gateway.errors import FORBIDDEN
from tests.adversarial.workers_served import PerpetualVenue, connect_on_worker
from tests.gateway.rpc_client import RpcClient
from tests.gateway.test_admin_control import CONTROLS

WORKERS = 2
PERPETUAL = "BTC_USDC-PERPETUAL"
ORDER_OVERLAP = 10003


class Venue(PerpetualVenue):
    def __init__(self, root: Path) -> None:
        super().__init__(root, 1, WORKERS)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("workers_stp"))
    try:
        yield made
    finally:
        made.served.stop()


async def _on(venue: Venue, worker: int, client_id: str, secret: str) -> RpcClient:
    return await connect_on_worker(venue.served.ws_url, worker, client_id, secret)


async def _eventually(call: Any, done: Any) -> Any:
    """Poll ``call`` (10 s at most) until ``done`` holds: the other worker has walked the
    frame."""
    value = None
    for _ in range(200):
        value = await call()
        if done(value):
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {value}")


def test_family_self_trade_prevention_across_workers(venue: Venue) -> None:
    (main_account,) = venue.accounts

    async def run() -> None:
        main = await _on(venue, 0, main_account.client_id, main_account.secret)
        sub_id = (await main.result("private/create_subaccount"))["id"]
        made = await main.result(
            "private/create_api_key", {"max_scope": "trade", "subaccount_id": sub_id}
        )
        transfer = {"currency": "USDC", "amount": 1_000_000, "destination": sub_id}
        await main.result("private/submit_transfer_to_subaccount", transfer)
        await asyncio.sleep(1.5)  # the other worker reloads the key file
        sub = await _on(venue, 1, made["client_id"], made["client_secret"])
        ticker = await main.result("public/ticker", {"instrument_name": PERPETUAL})
        price = round(float(ticker["mark_price"]) / venue.tick) * venue.tick
        amount = venue.lot

        async def place(client: RpcClient, side: str, **extra: Any) -> dict[str, Any]:
            params = {"instrument_name": PERPETUAL, "amount": amount, "type": "limit"}
            return await client.call(f"private/{side}", {**params, "price": price, **extra})

        async def state(order_id: str) -> dict[str, Any]:
            reply = await main.result("private/get_order_state", {"order_id": order_id})
            return reply  # type: ignore[no-any-return]

        # not extended: a trade between the two workers' accounts
        resting = (await place(main, "sell"))["result"]["order"]
        crossing = await place(sub, "buy")
        assert crossing["result"]["order"]["filled_amount"] == amount, crossing
        # extended, cancel_maker, set on worker 0 and seen by worker 1
        config = {"mode": "cancel_maker", "extended_to_subaccounts": True}
        assert await main.result("private/set_self_trading_config", config) == "ok"
        summary = {"currency": "USDC", "extended": True}
        await _eventually(
            lambda: sub.result("private/get_account_summary", summary),
            lambda s: s["self_trading_extended_to_subaccounts"] is True,
        )
        resting = (await place(main, "sell"))["result"]["order"]
        crossing = await place(sub, "buy")
        assert crossing["result"]["order"]["filled_amount"] == 0, crossing
        assert crossing["result"]["trades"] == []
        cancelled = await _eventually(
            lambda: state(resting["order_id"]), lambda o: o["order_state"] == "cancelled"
        )
        assert cancelled["cancel_reason"] == "self_trade_prevention"
        # extended, reject_taker: the main's crossing sell is refused
        config = {"mode": "reject_taker", "extended_to_subaccounts": True}
        assert await main.result("private/set_self_trading_config", config) == "ok"
        refused = await place(main, "sell")
        assert refused["error"]["code"] == ORDER_OVERLAP, refused
        # the mmp field of an order placed on worker 0, read on worker 1
        flagged = await place(main, "buy", mmp=True, price=price - 10 * venue.tick)
        flagged_id = flagged["result"]["order"]["order_id"]
        assert flagged["result"]["order"]["mmp"] is True
        reader = await _on(venue, 1, main_account.client_id, main_account.secret)
        seen = await _eventually(
            lambda: reader.call("private/get_order_state", {"order_id": flagged_id}),
            lambda r: "result" in r,
        )
        assert seen["result"]["mmp"] is True
        for client in (main, sub):
            await client.result("private/cancel_all")
        for client in (main, sub, reader):
            await client.close()

    asyncio.run(run())


def test_trading_keys_cannot_reach_the_kill_switch_on_any_worker(venue: Venue) -> None:
    """Every operator control answers 13021 to a trading key on both workers, and nothing
    was sequenced: the account still trades."""
    (account,) = venue.accounts

    async def run() -> None:
        for worker in range(WORKERS):
            client = await _on(venue, worker, account.client_id, account.secret)
            for name, params in CONTROLS:
                reply = await client.call(name, {**params, "account": account.account})
                assert reply["error"]["code"] == FORBIDDEN, (worker, name, reply)
            ticker = await client.result("public/ticker", {"instrument_name": PERPETUAL})
            price = round(float(ticker["mark_price"]) * 0.99 / venue.tick) * venue.tick
            order = {"instrument_name": PERPETUAL, "amount": venue.lot, "price": price}
            placed = await client.result("private/buy", {**order, "type": "limit"})
            assert placed["order"]["order_state"] == "open"
            await client.result("private/cancel_all")
            await client.close()

    asyncio.run(run())
