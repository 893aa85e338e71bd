"""``private/get_order_state_by_label`` over raw JSON-RPC against a real gateway: what a
client asks after a lost reply (docs/cluster.md, round 4)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.conftest import Server
from tests.gateway.rpc_client import RpcClient


async def _trader(server: Server, key: Any) -> RpcClient:
    client = await RpcClient.connect(server.ws_url)
    await client.auth(key.client_id, key.client_secret)
    return client


def test_orders_are_found_by_label_open_or_closed_and_only_the_callers(server: Server) -> None:
    name, key, other = server.option(), server.key(), server.key()

    async def run() -> None:
        trader, stranger = await _trader(server, key), await _trader(server, other)

        async def by_label(client: RpcClient, label: str, currency: str = "BTC") -> list[Any]:
            params = {"currency": currency, "label": label}
            return await client.result("private/get_order_state_by_label", params)

        assert await by_label(trader, "retry-1") == []  # never sent: send it
        order = {"instrument_name": name, "amount": 0.5, "type": "limit", "label": "retry-1"}
        placed = await trader.result("private/buy", {**order, "price": 900})
        found = await by_label(trader, "retry-1")
        assert [(o["order_id"], o["order_state"]) for o in found] == [
            (placed["order"]["order_id"], "open")
        ]
        assert await by_label(stranger, "retry-1") == []  # another account's label
        assert await by_label(trader, "retry-1", "ETH") == []  # not of that currency
        await trader.result("private/cancel", {"order_id": placed["order"]["order_id"]})
        again = await by_label(trader, "retry-1")
        assert [o["order_state"] for o in again] == ["cancelled"]  # closed orders too
        refused = await trader.call(
            "private/get_order_state_by_label", {"currency": "BTC", "label": "x", "kind": "y"}
        )
        assert refused["error"]["code"] == -32602
        missing = await trader.call("private/get_order_state_by_label", {"currency": "BTC"})
        assert missing["error"]["code"] != 11094
        await trader.close()
        await stranger.close()

    asyncio.run(run())
