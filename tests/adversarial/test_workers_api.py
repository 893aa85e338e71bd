"""The trading API of issue 16 with ``derivex serve --workers 2`` (no agents), raw JSON-RPC
on connections whose worker is known (the ``X-Derivex-Worker`` upgrade header):

- cancel on disconnect, whichever worker the dropped connection lived on: its account's
  orders placed through either worker are cancelled; the account scope set on one worker
  holds on the other; a missed heartbeat closes the connection and cancels;
- mass quote on one worker, cancel_quotes on the other; cancel_by_label of orders labelled
  through the other worker; close_position;
- the ``quote`` and ``user.changes`` channels on one worker see what the other placed;
- the history answers the same on both workers, and again after the venue restarts (each
  worker walks the journal: ``history_replay``).

The single-process venue runs the same flows in ``tests/gateway/test_order_safety.py``
and ``tests/gateway/test_channels.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.workers_served import Account, Served, perpetual_spec, prepare
from tests.gateway.rpc_client import RpcClient

WORKERS = 2
PERPETUAL = "BTC_USDC-PERPETUAL"


class Venue:
    def __init__(self, root: Path) -> None:
        self.data, self.log = root / "venue", root / "serve.log"
        self.accounts, _ = prepare(self.data, 6)
        self.served = Served(self.data, self.log, WORKERS, extra=("--limit", "heartbeat_min_s=1"))
        self.spec = perpetual_spec(self.data)
        self.tick = float(self.spec.tick_size_ticks * self.spec.price_unit)
        self.lot = self.spec.amount(self.spec.min_trade_lots)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("workers_api"))
    try:
        yield made
    finally:
        made.served.stop()


async def _on(venue: Venue, worker: int, account: Account) -> RpcClient:
    """An authenticated connection that the kernel gave to ``worker``."""
    for _ in range(80):
        client = await RpcClient.connect(venue.served.ws_url)
        if client.worker.split(".")[0] == str(worker):
            await client.auth(account.client_id, account.secret)
            return client
        await client.close()
    raise AssertionError(f"no connection reached worker {worker}")


async def _mid(client: RpcClient) -> float:
    ticker = await client.result("public/ticker", {"instrument_name": PERPETUAL})
    return float(ticker["mark_price"])


async def _order(
    venue: Venue, client: RpcClient, side: str, price: float, lots: int = 1, **extra: Any
) -> dict[str, Any]:
    params = {
        "instrument_name": PERPETUAL,
        "amount": venue.spec.amount(venue.spec.min_trade_lots * lots),
        "type": "limit",
        "price": round(price / venue.tick) * venue.tick,
        **extra,
    }
    return await client.result(f"private/{side}", params)


async def _open_count(client: RpcClient, count: int) -> None:
    """Wait (10 s at most) until the account has ``count`` open orders."""
    orders: list[Any] = []
    for _ in range(200):
        orders = await client.result(
            "private/get_open_orders_by_instrument", {"instrument_name": PERPETUAL}
        )
        if len(orders) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(orders)} open orders, not {count}")


def test_cancel_on_disconnect_on_either_worker(venue: Venue) -> None:
    account = venue.accounts[0]

    async def run() -> None:
        watchers = [await _on(venue, w, account) for w in range(WORKERS)]
        mid = await _mid(watchers[0])
        for worker in range(WORKERS):
            other = watchers[1 - worker]
            dropped = await _on(venue, worker, account)
            await dropped.result("private/enable_cancel_on_disconnect")
            await _order(venue, dropped, "buy", mid * 0.995)
            await _order(venue, other, "buy", mid * 0.994)  # through the other worker
            await _open_count(other, 2)
            await dropped.drop()
            await _open_count(other, 0)
        # account scope set on worker 0 holds for a connection on worker 1
        await watchers[0].result("private/enable_cancel_on_disconnect", {"scope": "account"})
        placer = await _on(venue, 1, account)
        reply = await placer.result("private/get_cancel_on_disconnect", {"scope": "account"})
        assert reply == {"scope": "account", "enabled": True}
        await _order(venue, placer, "buy", mid * 0.995)
        await placer.drop()
        await _open_count(watchers[0], 0)
        await watchers[0].result("private/disable_cancel_on_disconnect", {"scope": "account"})
        # a missed heartbeat on worker 1 closes the connection and cancels
        silent = await _on(venue, 1, account)
        await silent.result("public/set_heartbeat", {"interval": 1})
        silent.answer_heartbeats = False
        await silent.result("private/enable_cancel_on_disconnect")
        await _order(venue, silent, "buy", mid * 0.995)
        await asyncio.wait_for(silent.closed, 15)
        await _open_count(watchers[0], 0)
        # a logout on worker 0 does not cancel
        leaving = await _on(venue, 0, account)
        await leaving.result("private/enable_cancel_on_disconnect")
        await _order(venue, leaving, "buy", mid * 0.995)
        await leaving.result("private/logout", {"invalidate_token": False})
        await asyncio.wait_for(leaving.closed, 10)
        await asyncio.sleep(0.5)
        await _open_count(watchers[1], 1)
        for watcher in watchers:
            await watcher.close()

    asyncio.run(run())


def test_quotes_labels_and_close_position_across_workers(venue: Venue) -> None:
    maker, taker = venue.accounts[1], venue.accounts[2]

    async def run() -> None:
        on0, on1 = await _on(venue, 0, maker), await _on(venue, 1, maker)
        counterparty = await _on(venue, 1, taker)
        mid = await _mid(on0)
        tick = venue.tick
        bid, ask = round(mid * 0.99 / tick) * tick, round(mid * 1.01 / tick) * tick
        quoted = await on0.result(
            "private/mass_quote",
            {
                "quotes": [
                    {
                        "instrument_name": PERPETUAL,
                        "bid": {"price": bid, "amount": venue.lot},
                        "ask": {"price": ask, "amount": venue.lot},
                    }
                ]
            },
        )
        assert len(quoted["orders"]) == 2 and quoted["errors"] == []
        await _open_count(on1, 2)
        assert await on1.result("private/cancel_quotes", {"cancel_type": "all"}) == 2
        await _open_count(on0, 0)
        for price in (0.995, 0.996):
            await _order(venue, on0, "buy", mid * price, label="ladder")
        await _order(venue, on0, "buy", mid * 0.997, label="keep")
        await _open_count(on1, 3)
        assert await on1.result("private/cancel_by_label", {"label": "ladder"}) == 2
        await _open_count(on0, 1)
        await on0.result("private/cancel_all")
        # a position, then close it through the other worker
        await _order(venue, counterparty, "sell", mid, lots=3)
        await _order(venue, on0, "buy", mid, lots=3)
        await _order(venue, counterparty, "buy", mid * 0.998, lots=5)
        closed = await on1.result(
            "private/close_position", {"instrument_name": PERPETUAL, "type": "market"}
        )
        assert closed["order"]["filled_amount"] == venue.spec.amount(venue.spec.min_trade_lots * 3)
        assert closed["order"]["direction"] == "sell"
        position = await on0.result("private/get_position", {"instrument_name": PERPETUAL})
        assert position["size"] == 0
        await counterparty.result("private/cancel_all")
        for client in (on0, on1, counterparty):
            await client.close()

    asyncio.run(run())


def test_channels_on_one_worker_see_the_other(venue: Venue) -> None:
    account = venue.accounts[3]

    async def run() -> None:
        placer, watcher = await _on(venue, 0, account), await _on(venue, 1, account)
        mid = await _mid(placer)
        channels = [f"quote.{PERPETUAL}", f"user.changes.{PERPETUAL}.raw"]
        assert await watcher.result("private/subscribe", {"channels": channels}) == channels
        await watcher.wait_for(f"quote.{PERPETUAL}")
        price = round(mid * 1.01 / venue.tick) * venue.tick
        placed = await _order(venue, placer, "sell", price)
        change = (await watcher.wait_for(f"user.changes.{PERPETUAL}.raw"))[0]
        assert [o["order_id"] for o in change["orders"]] == [placed["order"]["order_id"]]
        for _ in range(100):
            quotes = watcher.notifications[f"quote.{PERPETUAL}"]
            if any(q["best_ask_price"] == price for q in quotes):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no quote at {price}: {quotes}")
        await placer.result("private/cancel_all")
        await placer.close()
        await watcher.close()

    asyncio.run(run())


def test_history_answers_on_every_worker(venue: Venue) -> None:
    account, other = venue.accounts[4], venue.accounts[5]

    async def run() -> None:
        clients = [await _on(venue, w, account) for w in range(WORKERS)]
        counterparty = await _on(venue, 1, other)
        mid = await _mid(clients[0])
        await _order(venue, counterparty, "sell", mid, lots=2)
        await _order(venue, clients[0], "buy", mid, lots=2)  # a trade made on worker 0
        window = {"start_timestamp": 0, "end_timestamp": 2**50}
        logs: list[Any] = []
        for _ in range(100):  # worker 1 walks worker 0's frame as it reads the bus
            logs = [
                await c.result("private/get_transaction_log", {"currency": "USDC", **window})
                for c in clients
            ]
            if all(log["logs"] for log in logs):
                break
            await asyncio.sleep(0.05)
        assert logs[0] == logs[1]
        # newest first: the trade, after the account's funding deposit (in the log since
        # a worker's venue is rebuilt from the journal, the venue's setup included)
        assert [e["type"] for e in logs[0]["logs"]] == ["trade", "deposit"]
        assert logs[0]["logs"][0]["side"] == "buy"
        for client in clients:
            funding = await client.result(
                "public/get_funding_rate_history", {"instrument_name": PERPETUAL, **window}
            )
            assert isinstance(funding, list)
            assert isinstance(
                await client.result("public/get_historical_volatility", {"currency": "BTC"}), list
            )
            await client.close()
        await counterparty.close()

    asyncio.run(run())


def test_a_restarted_run_rebuilds_the_history_on_every_worker(tmp_path: Path) -> None:
    data, log = tmp_path / "venue", tmp_path / "serve.log"
    (buyer, seller), _ = prepare(data, 2)
    window = {"start_timestamp": 0, "end_timestamp": 2**50}

    async def trade(served: Served) -> list[Any]:
        spec = perpetual_spec(data)
        one, other = await _connect(served, 0, buyer), await _connect(served, 1, seller)
        mid = float(
            (await one.result("public/ticker", {"instrument_name": PERPETUAL}))["mark_price"]
        )
        price = round(mid / float(spec.tick_size_ticks * spec.price_unit)) * float(
            spec.tick_size_ticks * spec.price_unit
        )
        for lots in (3, 1):
            base: dict[str, Any] = {"instrument_name": PERPETUAL, "type": "limit", "price": price}
            base["amount"] = spec.amount(spec.min_trade_lots * lots)
            await other.result("private/sell", base)
            await one.result("private/buy", base)
        await one.close()
        await other.close()
        return await logs(served)

    async def logs(served: Served) -> list[Any]:
        answers = []
        for worker in range(WORKERS):
            client = await _connect(served, worker, buyer)
            for _ in range(100):
                answer = await client.result(
                    "private/get_transaction_log", {"currency": "USDC", **window}
                )
                if len(answer["logs"]) == 3:  # two trades and the deposit
                    break
                await asyncio.sleep(0.05)
            answers.append(answer)
            await client.close()
        return answers

    served = Served(data, log, WORKERS)
    try:
        before = asyncio.run(trade(served))
    finally:
        assert served.stop()[0] == 0
    assert before[0] == before[1]
    assert [e["type"] for e in before[0]["logs"]] == ["trade", "trade", "deposit"]
    served = Served(data, log, WORKERS)
    try:
        after = asyncio.run(logs(served))
    finally:
        served.stop()
    assert after == before


async def _connect(served: Served, worker: int, account: Account) -> RpcClient:
    for _ in range(80):
        client = await RpcClient.connect(served.ws_url)
        if client.worker.split(".")[0] == str(worker):
            await client.auth(account.client_id, account.secret)
            return client
        await client.close()
    raise AssertionError(f"no connection reached worker {worker}")
