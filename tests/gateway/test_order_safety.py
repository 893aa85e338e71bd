"""Order-management safety over raw JSON-RPC against a real gateway: cancel on disconnect
(connection and account scope; a dropped socket and a missed heartbeat cancel, a logout
does not), mass quotes and cancel_quotes, close_position and cancel_by_label. The same
flows run against ``derivex serve --workers 2`` in ``tests/adversarial/test_workers_api.py``."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.conftest import Server
from tests.gateway.rpc_client import RpcClient


async def _trader(server: Server, key: Any) -> RpcClient:
    client = await RpcClient.connect(server.ws_url)
    await client.auth(key.client_id, key.client_secret)
    return client


async def _open(client: RpcClient, name: str) -> list[dict[str, Any]]:
    return await client.result("private/get_open_orders_by_instrument", {"instrument_name": name})


async def _until_open(client: RpcClient, name: str, count: int) -> list[dict[str, Any]]:
    """The open orders once there are ``count`` (10 s at most: a cancel after a disconnect
    runs when the server notices it)."""
    for _ in range(200):
        orders = await _open(client, name)
        if len(orders) == count:
            return orders
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(orders)} open orders on {name}, not {count}: {orders}")


async def _buy(client: RpcClient, name: str, price: float, amount: float = 0.5, **extra: Any):
    params = {"instrument_name": name, "amount": amount, "type": "limit", "price": price}
    return await client.result("private/buy", {**params, **extra})


def test_connection_scope_cancels_when_the_socket_drops(server: Server) -> None:
    name, key, other = server.option(), server.key(), server.key()

    async def run() -> None:
        dropped, watcher = await _trader(server, key), await _trader(server, key)
        bystander = await _trader(server, other)
        assert await dropped.result("private/get_cancel_on_disconnect") == {
            "scope": "connection",
            "enabled": False,
        }
        assert await dropped.result("private/enable_cancel_on_disconnect") == "ok"
        assert (await dropped.result("private/get_cancel_on_disconnect"))["enabled"] is True
        # the setting is the connection's: another connection of the account is not marked
        assert (await watcher.result("private/get_cancel_on_disconnect"))["enabled"] is False
        await _buy(dropped, name, 1000)
        await _buy(watcher, name, 990)  # the account's order from another connection
        await _buy(bystander, name, 980)
        assert len(await _open(watcher, name)) == 2
        await dropped.drop()
        assert await _until_open(watcher, name, 0) == []  # every order of the account
        assert len(await _open(bystander, name)) == 1  # nobody else's
        await watcher.close()
        await bystander.close()

    asyncio.run(run())


def test_logout_and_disabled_do_not_cancel(server: Server) -> None:
    name, key = server.option(), server.key()

    async def run() -> None:
        watcher = await _trader(server, key)
        leaving = await _trader(server, key)
        await leaving.result("private/enable_cancel_on_disconnect", {"scope": "connection"})
        await _buy(leaving, name, 1000)
        assert await leaving.result("private/logout", {"invalidate_token": False}) == "ok"
        await asyncio.wait_for(leaving.closed, 10)
        disabled = await _trader(server, key)
        await disabled.result("private/enable_cancel_on_disconnect")
        await disabled.result("private/disable_cancel_on_disconnect")
        await _buy(disabled, name, 990)
        await disabled.drop()
        await asyncio.sleep(0.5)  # the server has seen the drop (a cancel would be done)
        assert len(await _open(watcher, name)) == 2
        await watcher.close()

    asyncio.run(run())


def test_account_scope_holds_for_every_connection(server: Server) -> None:
    name, key = server.option(), server.key()

    async def run() -> None:
        setter, watcher = await _trader(server, key), await _trader(server, key)
        assert await setter.result("private/enable_cancel_on_disconnect", {"scope": "account"})
        assert await watcher.result("private/get_cancel_on_disconnect", {"scope": "account"}) == {
            "scope": "account",
            "enabled": True,
        }
        # the connection scope of the other connection stays off; the account's applies
        assert (await watcher.result("private/get_cancel_on_disconnect"))["enabled"] is False
        placer = await _trader(server, key)
        await _buy(placer, name, 1000)
        await placer.drop()
        await _until_open(watcher, name, 0)
        await watcher.result("private/disable_cancel_on_disconnect", {"scope": "account"})
        placer = await _trader(server, key)
        await _buy(placer, name, 1000)
        await placer.drop()
        await asyncio.sleep(0.5)
        assert len(await _open(watcher, name)) == 1
        await setter.close()
        await watcher.close()

    asyncio.run(run())


def test_missed_heartbeats_close_the_connection_and_cancel(server: Server) -> None:
    name, key = server.option(), server.key()

    async def run() -> None:
        watcher = await _trader(server, key)
        answering = await _trader(server, key)
        silent = await _trader(server, key)
        for client in (answering, silent):
            assert await client.result("public/set_heartbeat", {"interval": 1}) == "ok"
        too_short = await silent.call("public/set_heartbeat", {"interval": 0})
        assert too_short["error"]["code"] == -32602
        silent.answer_heartbeats = False
        await silent.result("private/enable_cancel_on_disconnect")
        await _buy(silent, name, 1000)
        code = await asyncio.wait_for(silent.closed, 15)
        assert code is not None and silent.heartbeats >= 1
        await _until_open(watcher, name, 0)
        # a client that answers its test_requests stays connected
        assert answering.heartbeats >= 2 and not answering.closed.done()
        assert await answering.result("public/test") == {"version": "2.1.1"}
        await answering.result("public/disable_heartbeat")
        await answering.close()
        await watcher.close()

    asyncio.run(run())


def test_connection_scope_needs_a_websocket(server: Server) -> None:
    client = server.sync(server.key())
    try:
        client.private_get_get_cancel_on_disconnect()
    except Exception as error:  # ccxt raises ExchangeError for 10030
        assert "must_be_websocket_request" in str(error)
    else:
        raise AssertionError("connection scope over HTTP answered")
    assert client.private_get_enable_cancel_on_disconnect({"scope": "account"})["result"] == "ok"
    reply = client.private_get_get_cancel_on_disconnect({"scope": "account"})
    assert reply["result"] == {"scope": "account", "enabled": True}


def test_mass_quote_and_cancel_quotes(server: Server) -> None:
    first, second, key, other = server.option(), server.option(), server.key(), server.key()

    async def run() -> None:
        maker, taker = await _trader(server, key), await _trader(server, other)
        await taker.result(
            "private/sell", {"instrument_name": second, "amount": 1, "type": "limit", "price": 1200}
        )
        quotes = [
            {
                "instrument_name": first,
                "bid": {"price": 1000, "amount": 0.5},
                "ask": {"price": 1100, "amount": 0.5},
            },
            # this bid would take the resting ask at 1200: refused alone (post-only)
            {
                "instrument_name": second,
                "bid": {"price": 1200, "amount": 0.5},
                "ask": {"price": 1300, "amount": 0.5},
            },
        ]
        quoted = await maker.result("private/mass_quote", {"quotes": quotes, "quote_id": "q1"})
        assert quoted["quote_id"] == "q1" and quoted["trades"] == []
        sides = sorted((o["instrument_name"], o["direction"], o["price"]) for o in quoted["orders"])
        assert sides == [(first, "buy", 1000), (first, "sell", 1100), (second, "sell", 1300)]
        assert [(e["instrument_name"], e["side"]) for e in quoted["errors"]] == [(second, "buy")]
        assert quoted["errors"][0]["error"]["code"] == 11054  # post_only_reject
        # a new quote replaces the old one on its instrument
        again = await maker.result(
            "private/mass_quote",
            {"quotes": [{"instrument_name": first, "bid": {"price": 1010, "amount": 0.25}}]},
        )
        assert [(o["direction"], o["price"], o["amount"]) for o in again["orders"]] == [
            ("buy", 1010, 0.25)
        ]
        plain = await _buy(maker, second, 900)  # not a quote: cancel_quotes leaves it
        assert (
            await maker.result(
                "private/cancel_quotes", {"cancel_type": "instrument", "instrument_name": first}
            )
            == 1
        )
        assert await _open(maker, first) == []
        assert await maker.result("private/cancel_quotes") == 1  # the ask on ``second``
        left = await _open(maker, second)
        assert [o["order_id"] for o in left] == [plain["order"]["order_id"]]
        bad = await maker.call("private/mass_quote", {"quotes": [{"instrument_name": "NOPE"}]})
        assert bad["error"]["code"] == 10020
        crossed = await maker.call(
            "private/mass_quote",
            {
                "quotes": [
                    {
                        "instrument_name": first,
                        "bid": {"price": 1100, "amount": 0.5},
                        "ask": {"price": 1000, "amount": 0.5},
                    }
                ]
            },
        )
        assert "error" in crossed and await _open(maker, first) == []
        await maker.close()
        await taker.close()

    asyncio.run(run())


def test_close_position_and_cancel_by_label(server: Server) -> None:
    name, key, other = server.option(), server.key(), server.key()

    async def run() -> None:
        trader, counterparty = await _trader(server, key), await _trader(server, other)
        none = await trader.call(
            "private/close_position", {"instrument_name": name, "type": "market"}
        )
        assert none["error"]["code"] == 11029
        await counterparty.result(
            "private/sell",
            {"instrument_name": name, "amount": 0.75, "type": "limit", "price": 1000},
        )
        bought = await _buy(trader, name, 1000, 0.75)
        assert bought["order"]["order_state"] == "filled"
        await counterparty.result(
            "private/buy", {"instrument_name": name, "amount": 2, "type": "limit", "price": 950}
        )
        closed = await trader.result(
            "private/close_position", {"instrument_name": name, "type": "market"}
        )
        order = closed["order"]
        assert order["direction"] == "sell" and order["reduce_only"] is True
        assert order["filled_amount"] == 0.75 and [t["price"] for t in closed["trades"]] == [950]
        position = await trader.result("private/get_position", {"instrument_name": name})
        assert position["size"] == 0
        for price, label in ((800, "grid"), (810, "grid"), (820, "other")):
            await _buy(trader, name, price, label=label)
        assert await trader.result("private/cancel_by_label", {"label": "grid"}) == 2
        assert [o["label"] for o in await _open(trader, name)] == ["other"]
        assert await trader.result("private/cancel_by_label", {"label": "grid"}) == 0
        await trader.close()
        await counterparty.close()

    asyncio.run(run())
