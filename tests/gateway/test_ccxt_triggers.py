"""Trigger orders over the API (docs/conditional-orders.md): the unmodified ccxt ``deribit``
client's unified stop-loss, take-profit and trailing parameters against a real gateway,
forcing last-price triggers by trading at the trigger, and raw JSON-RPC for the
Deribit-only parameters and methods. Each test trades an option book of its own."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from tests.gateway.conftest import Server, symbol

WAIT_S = 10.0  # bound on every wait for a stream (never hit when green)


def rpc(client: Any, method: str, **params: Any) -> Any:
    """A raw private call through ccxt's signed transport (``private/<method>``), also for
    methods ccxt does not list."""
    return client.request(method, ["private"], "GET", params)["result"]


def setup_long(server: Server) -> tuple[Any, Any, Any, str, str]:
    """Maker ``a`` sold 0.5 at 1000 to ``b`` (b long 0.5, last price 1000); ``c`` is a
    third account. Returns (a, b, c, ccxt symbol, instrument name)."""
    name = server.option()
    a, b, c = (server.sync(server.key()) for _ in range(3))
    market = symbol(a, name)
    a.create_order(market, "limit", "sell", 0.5, 1000)
    b.create_order(market, "market", "buy", 0.5)
    return a, b, c, market, name


def position_size(client: Any, name: str) -> float:
    position = client.private_get_get_position({"instrument_name": name})["result"]
    return float(position["size"])


def test_stop_loss_market_fires_on_last_price_and_closes_the_position(server: Server) -> None:
    a, b, c, market, name = setup_long(server)
    stop = b.create_order(
        market, "market", "sell", 0.5, params={"stopLossPrice": 990, "reduceOnly": True}
    )
    raw = stop["info"]
    assert raw["order_type"] == "stop_market" and raw["order_state"] == "untriggered"
    assert raw["trigger"] == "last_price" and raw["trigger_price"] == 990
    assert stop["triggerPrice"] == 990 and stop["status"] == "open"
    opened = b.fetch_open_orders(market)
    assert [o["id"] for o in opened] == [stop["id"]]
    assert rpc(b, "get_open_orders_by_instrument", instrument_name=name, type="limit") == []
    stops = rpc(b, "get_open_orders_by_instrument", instrument_name=name, type="stop_all")
    assert [o["order_id"] for o in stops] == [stop["id"]]
    a.create_order(market, "limit", "buy", 1.0, 985)  # liquidity for the stop's market sell
    a.create_order(market, "limit", "buy", 0.1, 990)
    c.create_order(market, "market", "sell", 0.1)  # trades at 990: last price reaches 990
    state = rpc(b, "get_order_state", order_id=stop["id"])
    assert state["order_state"] == "triggered" and state["triggered"] is True
    history = rpc(b, "get_trigger_order_history", instrument_name=name)["entries"]
    assert history[0]["trigger_order_id"] == stop["id"] and history[0]["request"] == "trigger:order"
    spawned_id = history[0]["order_id"]
    assert spawned_id != stop["id"]
    spawned = rpc(b, "get_order_state", order_id=spawned_id)
    assert spawned["trigger_order_id"] == stop["id"] and spawned["order_state"] == "filled"
    assert spawned["average_price"] == 985 and spawned["filled_amount"] == 0.5
    assert position_size(b, name) == 0
    assert b.fetch_open_orders(market) == []


def test_take_profit_limit_rests_its_order_when_triggered(server: Server) -> None:
    a, b, c, market, _name = setup_long(server)
    take = b.create_order(market, "limit", "sell", 0.5, 1045, params={"takeProfitPrice": 1050})
    assert take["info"]["order_type"] == "take_limit" and take["info"]["price"] == 1045
    a.create_order(market, "limit", "sell", 0.1, 1050)
    c.create_order(market, "market", "buy", 0.1)  # last 1050: fires
    history = rpc(b, "get_trigger_order_history")["entries"]
    spawned = rpc(b, "get_order_state", order_id=history[0]["order_id"])
    assert spawned["order_state"] == "open" and spawned["price"] == 1045
    assert spawned["order_type"] == "limit" and spawned["amount"] == 0.5


def test_trailing_stop_follows_the_rally_then_fires(server: Server) -> None:
    a, b, c, market, name = setup_long(server)
    trail = b.create_order(market, "market", "sell", 0.5, params={"trailingAmount": 20})
    info = trail["info"]
    assert info["order_type"] == "trailing_stop" and info["trigger_offset"] == 20
    assert info["trigger_price"] == 980  # 1000 - 20
    for price in (1010, 1030):  # the rally: reference 1030, trigger 1010
        a.create_order(market, "limit", "sell", 0.1, price)
        c.create_order(market, "market", "buy", 0.1)
    (listed,) = b.fetch_open_orders(market)  # the trigger followed the rally
    assert listed["info"]["trigger_price"] == 1010
    assert listed["info"]["trigger_reference_price"] == 1030
    a.create_order(market, "limit", "buy", 1.0, 1000)
    a.create_order(market, "limit", "buy", 0.1, 1010)
    c.create_order(market, "market", "sell", 0.1)  # trades at 1010 <= 1010: fires
    state = rpc(b, "get_order_state", order_id=trail["id"])
    assert state["order_state"] == "triggered"
    assert position_size(b, name) == 0


def test_deribit_only_parameters_and_errors(server: Server) -> None:
    _a, b, _c, market, name = setup_long(server)
    # a stop that would fire at once (last 1000, sell stop at 1000): refused, not filled
    with pytest.raises(ccxt.BaseError) as refused:
        rpc(b, "sell", instrument_name=name, amount=0.5, type="stop_market", trigger_price=1000)
    assert "invalid_trigger_price" in str(refused.value)
    # trigger parameters on a plain order, and ccxt's untranslated keys, are refused
    for params in (
        {"type": "limit", "price": 900, "trigger_price": 950},
        {"type": "market", "stopPrice": 950},
        {"type": "market", "triggerPrice": 950},
        {"type": "trailing_stop", "trigger_price": 950},
    ):
        with pytest.raises(ccxt.BaseError) as bad:
            rpc(b, "sell", instrument_name=name, amount=0.1, **params)
        assert "-32602" in str(bad.value) or "invalid_params" in str(bad.value), params
    # index and mark sources; cancel_all_by_kind_or_type picks by type
    on_mark = rpc(
        b, "sell", instrument_name=name, amount=0.1, type="stop_market", trigger_price=100,
        trigger="mark_price",
    )["order"]  # fmt: skip
    assert on_mark["trigger"] == "mark_price" and on_mark["stop_price"] == 100
    rpc(b, "sell", instrument_name=name, amount=0.1, type="take_limit", price=2000,
        trigger_price=1990)  # fmt: skip
    b.create_order(market, "limit", "buy", 0.1, 500)
    assert rpc(b, "cancel_all_by_kind_or_type", kind="option", type="stop") == 1
    left = rpc(b, "get_open_orders_by_instrument", instrument_name=name)
    assert sorted(o["order_type"] for o in left) == ["limit", "take_limit"]
    assert rpc(b, "cancel_all_by_kind_or_type", kind="any", type="all") == 2
    # a cancelled trigger order answers as such
    stop = b.create_order(market, "market", "sell", 0.1, params={"stopLossPrice": 900})
    cancelled = b.cancel_order(stop["id"], market)
    assert cancelled["info"]["order_state"] == "cancelled"


def test_async_stop_and_watch_orders_shows_untriggered_triggered_and_the_fill(
    server: Server,
) -> None:
    """ccxt's async client places a stop-loss; ccxt.pro's ``watch_orders`` shows it
    untriggered, then triggered, then the order it placed filling."""
    name = server.option()
    long_key, other_key, third_key = server.key(), server.key(), server.key()

    async def scenario() -> None:
        watcher = server.pro(long_key)
        trader, other = server.asynchronous(long_key), server.asynchronous(other_key)
        third = server.asynchronous(third_key)
        try:
            for client in (watcher, trader, other, third):
                await client.load_markets()
            market = symbol(trader, name)
            await other.create_order(market, "limit", "sell", 0.5, 1000)
            await trader.create_order(market, "market", "buy", 0.5)
            seen: dict[str, list[str]] = {}

            async def collect(until_state: str) -> None:
                while True:
                    for order in await watcher.watch_orders():
                        states = seen.setdefault(order["id"], [])
                        states.append(order["info"]["order_state"])
                        if order["info"]["order_state"] == until_state:
                            return

            watching = asyncio.ensure_future(collect("untriggered"))
            await asyncio.sleep(0.3)  # let the subscription reach the server
            stop = await trader.create_order(
                market, "market", "sell", 0.5, params={"stopLossPrice": 990}
            )
            await asyncio.wait_for(watching, WAIT_S)
            assert seen[stop["id"]][-1] == "untriggered"
            watching = asyncio.ensure_future(collect("filled"))
            await asyncio.sleep(0.05)
            await other.create_order(market, "limit", "buy", 1.0, 990)
            await third.create_order(market, "market", "sell", 0.1)  # last 990: fires
            await asyncio.wait_for(watching, WAIT_S)
            assert "triggered" in seen[stop["id"]]
            spawned = [i for i, states in seen.items() if i != stop["id"] and "filled" in states]
            assert len(spawned) == 1
        finally:
            for client in (watcher, trader, other, third):
                await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
