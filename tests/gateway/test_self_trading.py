"""Self-trade prevention across a main account's family over raw JSON-RPC on the real
server (gateway/self_trading_api.py, core/stp.py), and the ``mmp`` field of order objects.

A main account's resting order and its subaccount's crossing order: they trade while the
setting is not extended; with ``extended_to_subaccounts`` and ``cancel_maker`` the main's
order is cancelled (``cancel_reason`` ``self_trade_prevention`` in its order object) and
nothing trades; with ``reject_taker`` the crossing order is refused (10003). The same flow
through ``derivex serve --workers 2`` is ``tests/adversarial/test_workers_self_trading.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from derivex.gateway.errors import INTERNAL_ERROR
from tests.gateway.conftest import Server
from tests.gateway.rpc_client import RpcClient

ORDER_OVERLAP = 10003
AMOUNT = 0.5


async def _client(server: Server, client_id: str, secret: str) -> RpcClient:
    client = await RpcClient.connect(server.ws_url)
    await client.auth(client_id, secret)
    return client


async def family(server: Server) -> tuple[RpcClient, RpcClient, int, int]:
    """A main account's connection and one of a new subaccount (its key made by the main
    account's key), with both ids."""
    key = server.key()
    main = await _client(server, key.client_id, key.client_secret)
    sub_id = (await main.result("private/create_subaccount"))["id"]
    made = await main.result(
        "private/create_api_key", {"max_scope": "trade", "subaccount_id": sub_id}
    )
    sub = await _client(server, made["client_id"], made["client_secret"])
    return main, sub, key.account, sub_id


async def order(client: RpcClient, side: str, name: str, price: float, **extra: Any) -> Any:
    params = {"instrument_name": name, "amount": AMOUNT, "type": "limit", "price": price}
    return await client.call(f"private/{side}", {**params, **extra})


def _order(reply: dict[str, Any]) -> dict[str, Any]:
    assert "result" in reply, reply
    return reply["result"]["order"]  # type: ignore[no-any-return]


async def configure(client: RpcClient, mode: str, extended: bool) -> None:
    params = {"mode": mode, "extended_to_subaccounts": extended}
    assert await client.result("private/set_self_trading_config", params) == "ok"


async def setting(client: RpcClient, account: int) -> tuple[str, bool]:
    summary = await client.result(
        "private/get_account_summary",
        {"currency": "USDC", "extended": True, "subaccount_id": account},
    )
    return summary["self_trading_reject_mode"], summary["self_trading_extended_to_subaccounts"]


def test_family_self_trade_prevention(server: Server) -> None:
    name = server.option()

    async def run() -> None:
        main, sub, main_id, sub_id = await family(server)
        assert await setting(main, sub_id) == ("cancel_maker", False)
        # not extended: the family members trade with each other
        resting = _order(await order(main, "sell", name, 1000))
        crossing = await order(sub, "buy", name, 1000)
        assert _order(crossing)["filled_amount"] == AMOUNT
        assert len(crossing["result"]["trades"]) == 1
        state = await main.result("private/get_order_state", {"order_id": resting["order_id"]})
        assert state["order_state"] == "filled"
        # extended, cancel_maker: the main account's order is cancelled, nothing trades
        await configure(main, "cancel_maker", True)
        assert await setting(main, main_id) == ("cancel_maker", True)
        assert await setting(main, sub_id) == ("cancel_maker", True)  # the family's setting
        resting = _order(await order(main, "sell", name, 1000))
        crossing = await order(sub, "buy", name, 1000)
        assert _order(crossing)["filled_amount"] == 0 and crossing["result"]["trades"] == []
        assert _order(crossing)["order_state"] == "open"
        state = await main.result("private/get_order_state", {"order_id": resting["order_id"]})
        assert state["order_state"] == "cancelled"
        assert state["cancel_reason"] == "self_trade_prevention"
        # extended, reject_taker: the main account's crossing sell is refused, book unchanged
        await configure(main, "reject_taker", True)
        refused = await order(main, "sell", name, 1000)
        assert refused["error"]["code"] == ORDER_OVERLAP, refused
        open_orders = await sub.result(
            "private/get_open_orders_by_instrument", {"instrument_name": name}
        )
        assert [o["order_id"] for o in open_orders] == [_order(crossing)["order_id"]]
        # a subaccount's call sets itself only; the main's own setting decides its orders
        await configure(sub, "cancel_maker", False)
        assert await setting(sub, sub_id) == ("cancel_maker", False)
        assert await setting(main, main_id) == ("reject_taker", True)
        # not extended again: the sell trades against the subaccount's bid
        await configure(main, "reject_taker", False)
        traded = await order(main, "sell", name, 1000)
        assert _order(traded)["filled_amount"] == AMOUNT
        # a subaccount created now starts with the family's setting
        await configure(main, "reject_taker", True)
        later = (await main.result("private/create_subaccount"))["id"]
        assert await setting(main, later) == ("reject_taker", True)
        for client in (main, sub):
            await client.close()

    asyncio.run(run())


def test_set_self_trading_config_validation(server: Server) -> None:
    key = server.key()

    async def run() -> None:
        client = await _client(server, key.client_id, key.client_secret)
        good = {"mode": "reject_taker", "extended_to_subaccounts": False}
        bad = [
            ({"mode": "cancel_taker", "extended_to_subaccounts": True}, "mode"),
            ({"mode": 1, "extended_to_subaccounts": True}, "mode"),
            ({"extended_to_subaccounts": True}, "mode"),
            ({"mode": "reject_taker"}, "extended_to_subaccounts"),
            ({**good, "extended_to_subaccounts": "yes"}, "extended_to_subaccounts"),
            ({**good, "block_rfq_self_match_prevention": True}, "block_rfq_self_match_prevention"),
            ({**good, "block_rfq_self_match_prevention": 3}, "block_rfq_self_match_prevention"),
        ]
        for params, param in bad:
            reply = await client.call("private/set_self_trading_config", params)
            assert "error" in reply, (params, reply)
            assert reply["error"]["code"] != INTERNAL_ERROR, reply
            assert reply["error"]["data"]["param"] == param, (params, reply)
        # nothing was changed by the refusals
        summary = await client.result(
            "private/get_account_summary", {"currency": "USDC", "extended": True}
        )
        assert summary["self_trading_reject_mode"] == "cancel_maker"
        allowed = {**good, "block_rfq_self_match_prevention": False}
        assert await client.result("private/set_self_trading_config", allowed) == "ok"
        summaries = await client.result("private/get_account_summaries")
        assert summaries["self_trading_reject_mode"] == "reject_taker"
        assert summaries["self_trading_extended_to_subaccounts"] is False
        assert summaries["block_rfq_self_match_prevention"] is False
        read_only = server.key(scopes=("read",), account=key.account)
        reader = await _client(server, read_only.client_id, read_only.client_secret)
        reply = await reader.call("private/set_self_trading_config", good)
        assert "error" in reply and reply["error"]["code"] != INTERNAL_ERROR, reply
        await reader.close()
        await client.close()

    asyncio.run(run())


def test_mmp_field_of_order_objects(server: Server) -> None:
    """``mmp`` is true for an order placed with the mmp flag and for mass-quote legs (the
    engine counts every quote toward MMP), false otherwise: in the reply, in
    ``get_order_state`` and in the open orders."""
    name, key = server.option(), server.key()

    async def run() -> None:
        client = await _client(server, key.client_id, key.client_secret)
        plain = _order(await order(client, "buy", name, 100))
        flagged = _order(await order(client, "buy", name, 110, mmp=True))
        assert (plain["mmp"], flagged["mmp"]) == (False, True)
        for placed, expected in ((plain, False), (flagged, True)):
            state = await client.result("private/get_order_state", {"order_id": placed["order_id"]})
            assert state["mmp"] is expected
        quote = {"instrument_name": name, "ask": {"price": 5000, "amount": AMOUNT}}
        spec = server.thread.gateway.venue.catalog.by_name[name]
        group = {"index_name": f"{spec.base.lower()}_usdc", "interval": 60, "frozen_time": 0}
        await client.result(
            "private/set_mmp_config", {**group, "quantity_limit": 100, "mmp_group": "stp_q1"}
        )
        for extra in ({}, {"mmp_group": "stp_q1"}):
            quoted = await client.result("private/mass_quote", {"quotes": [quote], **extra})
            assert [o["mmp"] for o in quoted["orders"]] == [True]
        listed = await client.result(
            "private/get_open_orders_by_instrument", {"instrument_name": name}
        )
        by_price = {o["price"]: o["mmp"] for o in listed}
        assert by_price == {100: False, 110: True, 5000: True}
        await client.result("private/cancel_all")
        await client.close()

    asyncio.run(run())
