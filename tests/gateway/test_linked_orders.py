"""Linked orders over raw JSON-RPC against a real gateway (docs/conditional-orders.md,
"Linked orders over the API"): an OCO bracket around a position (the take-profit fills,
the stop is cancelled with ``oco_other_closed``), an OTOCO entry (the primary fills, the
bracket goes live, the stop fires, the take-profit is cancelled), OTO ``incremental`` (a
partial fill activates a pro-rata secondary) and ``oto_primary_closed``; order objects,
``user.orders`` notifications, ``get_open_orders*``, ``get_order_state`` and the trigger
history. Each test trades an option book of its own; last-price triggers are forced by
trading at the trigger."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.conftest import Server
from tests.gateway.rpc_client import RpcClient


async def _traders(server: Server, count: int) -> list[RpcClient]:
    clients = []
    for _ in range(count):
        key = server.key()
        client = await RpcClient.connect(server.ws_url)
        await client.auth(key.client_id, key.client_secret)
        clients.append(client)
    return clients


async def _order(client: RpcClient, side: str, name: str, **params: Any) -> dict[str, Any]:
    """The order object of a buy / sell that must succeed."""
    reply = await client.result(f"private/{side}", {"instrument_name": name, **params})
    return reply["order"]  # type: ignore[no-any-return]


async def _state(client: RpcClient, order_id: str) -> dict[str, Any]:
    return await client.result("private/get_order_state", {"order_id": order_id})  # type: ignore[no-any-return]


async def _open(client: RpcClient, name: str, **params: Any) -> dict[str, dict[str, Any]]:
    """The caller's open orders on ``name`` by label."""
    orders = await client.result(
        "private/get_open_orders_by_instrument", {"instrument_name": name, **params}
    )
    return {order["label"]: order for order in orders}


async def _size(client: RpcClient, name: str) -> float:
    position = await client.result("private/get_position", {"instrument_name": name})
    return float(position["size"])


def _notified(client: RpcClient, name: str) -> list[dict[str, Any]]:
    """Every order object ``user.orders.<name>.raw`` brought, in arrival order."""
    orders: list[dict[str, Any]] = []
    for data in client.notifications.get(f"user.orders.{name}.raw", []):
        orders.extend(data if isinstance(data, list) else [data])
    return orders


async def _until(check: Any, what: str) -> None:
    """Wait (bounded) for ``check()`` to hold: notifications arrive after the replies."""
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


STOP_950 = {
    "direction": "sell",
    "amount": 0.5,
    "type": "stop_market",
    "trigger": "last_price",
    "trigger_price": 950,
    "reduce_only": True,
    "label": "sl",
}


def test_oco_bracket_take_profit_fills_and_the_stop_is_cancelled(server: Server) -> None:
    name = server.option()

    async def run() -> None:
        a, b, c = await _traders(server, 3)
        await _order(a, "sell", name, amount=0.5, type="limit", price=1000)
        await _order(b, "buy", name, amount=0.5, type="market")  # b long 0.5 at 1000
        await b.result("private/subscribe", {"channels": [f"user.orders.{name}.raw"]})
        take = await _order(
            b, "sell", name, amount=0.5, type="take_limit", price=1050, trigger_price=1050,
            reduce_only=True, label="tp", linked_order_type="one_cancels_other",
            otoco_config=[STOP_950],
        )  # fmt: skip
        assert take["order_type"] == "take_limit" and take["order_state"] == "untriggered"
        assert take["label"] == "tp" and take["trigger_fill_condition"] == "first_hit"
        opened = await _open(b, name)
        assert set(opened) == {"tp", "sl"}
        stop = opened["sl"]
        assert stop["order_type"] == "stop_market" and stop["order_state"] == "untriggered"
        assert stop["oco_ref"] == take["oco_ref"] == opened["tp"]["oco_ref"]
        assert stop["oco_ref"] in (take["order_id"], stop["order_id"])
        for order in (take, stop):
            assert "oto_order_ids" not in order and "primary_order_id" not in order
        assert set(await _open(b, name, type="take_all")) == {"tp"}
        assert set(await _open(b, name, type="stop_all")) == {"sl"}
        # the last price reaches 1050: the take-profit fires, its limit sell rests, and the
        # stop is cancelled at once (first_hit)
        await _order(a, "sell", name, amount=0.1, type="limit", price=1050)
        await _order(c, "buy", name, amount=0.1, type="market")
        cancelled = await _state(b, stop["order_id"])
        assert cancelled["order_state"] == "cancelled", cancelled
        assert cancelled["cancel_reason"] == "oco_other_closed"
        fired = await _state(b, take["order_id"])
        assert fired["order_state"] == "triggered" and fired["oco_ref"] == take["oco_ref"]
        await _order(a, "buy", name, amount=0.5, type="limit", price=1050)  # fills it
        assert await _size(b, name) == 0
        assert await _open(b, name) == {}
        history = (await b.result("private/get_trigger_order_history", {}))["entries"]
        requests = {entry["trigger_order_id"]: entry["request"] for entry in history}
        assert requests == {take["order_id"]: "trigger:order", stop["order_id"]: "cancel"}
        spawned = next(e["order_id"] for e in history if e["request"] == "trigger:order")
        filled = await _state(b, spawned)
        assert filled["order_state"] == "filled" and filled["trigger_order_id"] == take["order_id"]

        def stop_cancel_notified() -> bool:
            return any(
                o["order_id"] == stop["order_id"] and o.get("cancel_reason") == "oco_other_closed"
                for o in _notified(b, name)
            )

        await _until(stop_cancel_notified, "no user.orders notification of the stop's cancel")
        placed = [o for o in _notified(b, name) if o["order_id"] == stop["order_id"]]
        assert placed[0]["order_state"] == "untriggered" and placed[0]["oco_ref"]
        for client in (a, b, c):
            await client.close()

    asyncio.run(run())


def test_otoco_entry_fills_the_bracket_goes_live_one_side_fires(server: Server) -> None:
    name = server.option()

    async def run() -> None:
        a, b, c = await _traders(server, 3)
        await b.result("private/subscribe", {"channels": [f"user.orders.{name}.raw"]})
        entry = await _order(
            b, "buy", name, amount=0.5, type="limit", price=1000, label="entry",
            linked_order_type="one_triggers_one_cancels_other",
            otoco_config=[
                {"direction": "sell", "amount": 0.5, "type": "take_limit", "price": 1100,
                 "trigger_price": 1100, "label": "tp"},
                {**STOP_950, "trigger_price": 900, "reduce_only": False},
            ],
        )  # fmt: skip
        assert entry["order_state"] == "open" and entry["is_primary_otoco"] is True
        opened = await _open(b, name)
        take, stop = opened["tp"], opened["sl"]
        assert entry["oto_order_ids"] == [take["order_id"], stop["order_id"]]
        assert opened["entry"]["oto_order_ids"] == entry["oto_order_ids"]
        for leg in (take, stop):
            assert leg["order_state"] == "untriggered" and leg["is_secondary_oto"] is True
            assert leg["primary_order_id"] == entry["order_id"]
        assert take["oco_ref"] == stop["oco_ref"]
        assert set(await _open(b, name, type="limit")) == {"entry"}
        await _order(a, "sell", name, amount=0.5, type="limit", price=1000)  # entry fills
        filled = await _state(b, entry["order_id"])
        assert filled["order_state"] == "filled" and len(filled["oto_order_ids"]) == 2
        assert await _size(b, name) == 0.5
        live = await _open(b, name)
        assert set(live) == {"tp", "sl"} and live["sl"]["amount"] == 0.5
        # the stop's side: a trade at 900 fires it; its market sell fills at 890
        await _order(a, "buy", name, amount=1.0, type="limit", price=890)
        await _order(a, "buy", name, amount=0.1, type="limit", price=900)
        await _order(c, "sell", name, amount=0.1, type="market")
        assert (await _state(b, stop["order_id"]))["order_state"] == "triggered"
        other = await _state(b, take["order_id"])
        assert other["order_state"] == "cancelled" and other["cancel_reason"] == "oco_other_closed"
        assert await _size(b, name) == 0
        assert await _open(b, name) == {}

        def bracket_notified() -> bool:
            states = [(o["label"], o["order_state"]) for o in _notified(b, name)]
            return ("tp", "cancelled") in states and ("entry", "filled") in states

        await _until(bracket_notified, "no user.orders notifications of the bracket")
        seen = _notified(b, name)
        labels = [o["label"] for o in seen]
        assert labels.index("entry") < labels.index("tp")  # placement, then the rest
        assert any(o["label"] == "sl" and o.get("primary_order_id") for o in seen)
        for client in (a, b, c):
            await client.close()

    asyncio.run(run())


def test_oto_incremental_activates_a_pro_rata_secondary(server: Server) -> None:
    name = server.option()

    async def run() -> None:
        a, b = await _traders(server, 2)
        entry = await _order(
            b, "buy", name, amount=1.0, type="limit", price=1000, label="entry",
            linked_order_type="one_triggers_other", trigger_fill_condition="incremental",
            otoco_config=[{**STOP_950, "amount": 1.0}],
        )  # fmt: skip
        assert entry["trigger_fill_condition"] == "incremental"
        stop = (await _open(b, name))["sl"]
        assert stop["amount"] == 1.0 and stop["trigger_fill_condition"] == "incremental"
        await _order(a, "sell", name, amount=0.4, type="limit", price=1000)
        assert (await _state(b, stop["order_id"]))["amount"] == 0.4
        assert (await _state(b, entry["order_id"]))["filled_amount"] == 0.4
        await _order(a, "sell", name, amount=0.6, type="limit", price=1000)
        whole = await _state(b, stop["order_id"])
        assert whole["amount"] == 1.0 and whole["order_state"] == "untriggered"
        for client in (a, b):
            await client.close()

    asyncio.run(run())


def test_a_cancelled_primary_cancels_its_secondary_oto_primary_closed(server: Server) -> None:
    name = server.option()

    async def run() -> None:
        (b,) = await _traders(server, 1)
        entry = await _order(
            b, "buy", name, amount=0.5, type="limit", price=1000, label="entry",
            linked_order_type="one_triggers_other", trigger_fill_condition="complete_fill",
            otoco_config=[STOP_950],
        )  # fmt: skip
        (stop_id,) = entry["oto_order_ids"]
        await b.result("private/cancel", {"order_id": entry["order_id"]})
        stop = await _state(b, stop_id)
        assert stop["order_state"] == "cancelled", stop
        assert stop["cancel_reason"] == "oto_primary_closed"
        assert stop["primary_order_id"] == entry["order_id"]
        history = (await b.result("private/get_trigger_order_history", {}))["entries"]
        assert [(e["trigger_order_id"], e["request"]) for e in history] == [(stop_id, "cancel")]
        await b.close()

    asyncio.run(run())
