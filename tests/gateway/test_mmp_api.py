"""Market-maker protection over raw JSON-RPC against a real gateway: the config methods and
their validation, and a real trade from another account freezing a market maker (the
``user.mmp_trigger`` notification, its quotes cancelled, new quotes and ``mmp`` orders
refused) until ``reset_mmp``. The same flow runs against ``derivex serve --workers 2`` in
``tests/adversarial/test_workers_mmp.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.gateway.conftest import Server
from tests.gateway.rpc_client import RpcClient


async def _trader(server: Server, key: Any) -> RpcClient:
    client = await RpcClient.connect(server.ws_url)
    await client.auth(key.client_id, key.client_secret)
    return client


def _index(server: Server, name: str) -> str:
    spec = server.thread.gateway.venue.catalog.by_name[name]
    return f"{spec.base.lower()}_usdc"


def test_config_round_trip_and_validation(server: Server) -> None:
    name, key = server.option(), server.key()
    index = _index(server, name)

    async def run() -> None:
        client = await _trader(server, key)
        assert await client.result("private/get_mmp_config", {}) == []
        config = {
            "index_name": index,
            "interval": 10,
            "frozen_time": 30,
            "quantity_limit": 1.5,
            "delta_limit": 0.25,
            "vega_limit": 100,
        }
        assert await client.result("private/set_mmp_config", config) == config
        named = {**config, "mmp_group": "Quoter_1", "frozen_time": 0}
        assert await client.result("private/set_mmp_config", named) == named
        listed = await client.result("private/get_mmp_config", {"index_name": index})
        assert listed == [config, named]
        only = await client.result("private/get_mmp_config", {"mmp_group": "Quoter_1"})
        assert only == [named]
        assert await client.result("private/get_mmp_status", {}) == []
        bad = {
            "index_name": ("xyz_usd", "index_name"),
            "interval": (-1, "interval"),
            "frozen_time": ("soon", "frozen_time"),
            "quantity_limit": ("0.000001", "quantity_limit"),
            "delta_limit": (-2, "delta_limit"),
            "mmp_group": ("no spaces!", "mmp_group"),
            "block_rfq": (True, "block_rfq"),
        }
        for field, (value, param) in bad.items():
            reply = await client.call("private/set_mmp_config", {**config, field: value})
            assert reply["error"]["code"] == -32602, (field, reply)
            assert reply["error"]["data"]["param"] == param
        no_limit = {"index_name": index, "interval": 5, "frozen_time": 1}
        reply = await client.call("private/set_mmp_config", no_limit)
        assert reply["error"]["code"] == -32602
        unknown = await client.call("private/reset_mmp", {"index_name": index, "mmp_group": "x"})
        assert unknown["error"]["data"]["reason"] == "mmp_group_unknown"
        removed = {**named, "interval": 0}
        assert (await client.result("private/set_mmp_config", removed))["interval"] == 0
        assert await client.result("private/get_mmp_config", {}) == [config]
        await client.close()

    asyncio.run(run())


@pytest.mark.parametrize("group", [None, "mq7"])
def test_a_trade_freezes_the_market_maker_until_reset(server: Server, group: str | None) -> None:
    name, maker_key, taker_key = server.option(), server.key(), server.key()
    index = _index(server, name)
    channel = f"user.mmp_trigger.{index}"
    extra = {"mmp_group": group} if group else {}

    async def run() -> None:
        maker, taker = await _trader(server, maker_key), await _trader(server, taker_key)
        assert await maker.result("private/subscribe", {"channels": [channel]}) == [channel]
        config = {"index_name": index, "interval": 60, "frozen_time": 0, "quantity_limit": 0.5}
        await maker.result("private/set_mmp_config", {**config, **extra})
        quote = {
            "instrument_name": name,
            "bid": {"price": 1000, "amount": 0.5},
            "ask": {"price": 1100, "amount": 0.5},
        }
        quoted = await maker.result("private/mass_quote", {"quotes": [quote], **extra})
        assert len(quoted["orders"]) == 2
        bought = await taker.result(
            "private/buy", {"instrument_name": name, "amount": 0.5, "type": "limit", "price": 1100}
        )
        assert bought["order"]["filled_amount"] == 0.5
        (note,) = await maker.wait_for(channel)
        assert note["index_name"] == index and note["frozen_until"] == 0
        assert note.get("mmp_group") == group
        # the bid is gone with the freeze: cancelled for mmp_trigger
        open_orders = await maker.result(
            "private/get_open_orders_by_instrument", {"instrument_name": name}
        )
        assert open_orders == []
        history = await maker.result(
            "private/get_order_history_by_instrument", {"instrument_name": name}
        )
        reasons = {o["direction"]: o.get("cancel_reason") for o in history}
        assert reasons.get("buy") == "mmp_trigger", history
        status = await maker.result("private/get_mmp_status", {"index_name": index})
        assert status == [{"index_name": index, "frozen_until": 0, **extra}]
        refused = await maker.call("private/mass_quote", {"quotes": [quote], **extra})
        assert refused["error"]["data"]["reason"] == "mmp_frozen"
        if group is None:
            flagged = await maker.call(
                "private/sell",
                {"instrument_name": name, "amount": 0.5, "price": 1200, "mmp": True},
            )
            assert flagged["error"]["data"]["reason"] == "mmp_frozen"
        assert await maker.result("private/reset_mmp", {"index_name": index, **extra}) == "ok"
        assert await maker.result("private/get_mmp_status", {}) == []
        again = await maker.result("private/mass_quote", {"quotes": [quote], **extra})
        assert len(again["orders"]) == 2
        await maker.result("private/cancel_quotes")
        await maker.close()
        await taker.close()

    asyncio.run(run())


def test_mmp_flag_on_a_market_order_is_refused(server: Server) -> None:
    name, key = server.option(), server.key()

    async def run() -> None:
        client = await _trader(server, key)
        reply = await client.call(
            "private/buy", {"instrument_name": name, "amount": 0.5, "type": "market", "mmp": True}
        )
        assert reply["error"]["code"] == 11047
        reply = await client.call(
            "private/buy", {"instrument_name": name, "amount": 0.5, "price": 900, "mmp": "yes"}
        )
        assert reply["error"]["code"] == -32602 and reply["error"]["data"]["param"] == "mmp"
        await client.close()

    asyncio.run(run())
