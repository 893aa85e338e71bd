"""Linked-order parameters under attack and through ccxt (docs/conditional-orders.md,
"Linked orders over the API"): every malformed ``linked_order_type`` /
``trigger_fill_condition`` / ``otoco_config`` is refused naming the parameter and places
nothing; a group the core refuses fails alone inside a batch of orders (one engine call);
ccxt's sync and async clients pass the Deribit parameters through ``params`` (ccxt has no
unified call for linked orders; over REST its query string carries ``otoco_config`` as
Python's ``str`` of the list)."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.gateway import Venue
from derivex.gateway.errors import RpcError
from derivex.gateway.linked_orders import MAX_CONFIG_CHARS
from derivex.gateway.listing import list_all, perpetual
from derivex.gateway.methods import Context
from derivex.gateway.private_api import prepare_place
from tests.gateway.conftest import Server, symbol
from tests.gateway.rpc_client import RpcClient

OTO = "one_triggers_other"
STOP = {"direction": "sell", "amount": 0.5, "type": "stop_market", "trigger_price": 900}
TAKE = {"direction": "sell", "amount": 0.5, "type": "take_market", "trigger_price": 1100}
ENTRY = {"amount": 0.5, "type": "limit", "price": 990}

#: (the request's linked part, the main order's changes, error code, the named parameter)
BAD: list[tuple[dict[str, Any], dict[str, Any], int, str]] = [
    ({"linked_order_type": "one_triggers_all", "otoco_config": [STOP]}, {}, -32602,
     "linked_order_type"),
    ({"linked_order_type": 7, "otoco_config": [STOP]}, {}, -32602, "linked_order_type"),
    ({"otoco_config": [STOP]}, {}, -32602, "linked_order_type"),
    ({"trigger_fill_condition": "first_hit"}, {}, -32602, "linked_order_type"),
    ({"linked_order_type": OTO}, {}, -32602, "otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": [STOP],
      "trigger_fill_condition": "sometimes"}, {}, -32602, "trigger_fill_condition"),
    ({"linked_order_type": OTO, "otoco_config": "not a list"}, {}, -32602, "otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": {"0": STOP}}, {}, -32602, "otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": []}, {}, -32602, "otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": [STOP, TAKE, STOP]}, {}, -32602,
     "otoco_config"),
    ({"linked_order_type": "one_cancels_other", "otoco_config": [STOP, TAKE]},
     {"type": "take_market", "trigger_price": 1100}, -32602, "otoco_config"),
    ({"linked_order_type": "one_triggers_one_cancels_other", "otoco_config": [STOP]}, {},
     -32602, "otoco_config"),
    ({"linked_order_type": "one_cancels_other", "otoco_config": [STOP]}, {}, -32602, "type"),
    ({"linked_order_type": OTO, "otoco_config": [5]}, {}, -32602, "otoco_config[0]"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "instrument_name": "X"}]}, {},
     -32602, "otoco_config[0].instrument_name"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "mmp": True}]}, {}, -32602,
     "otoco_config[0].mmp"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "otoco_config": [STOP]}]}, {},
     -32602, "otoco_config[0].otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "direction": "up"}]}, {}, -32602,
     "otoco_config[0].direction"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "type": "limit", "price": 1}]}, {},
     -32602, "otoco_config[0].type"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "type": ["stop_market"]}]}, {},
     -32602, "otoco_config[0].type"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "direction": {"a": 1}}]}, {},
     -32602, "otoco_config[0].direction"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "reduce_only": "maybe"}]}, {},
     -32602, "otoco_config[0].reduce_only"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "amount": [1]}]}, {}, -32602,
     "otoco_config[0].amount"),
    ({"linked_order_type": OTO, "otoco_config": [STOP, {**TAKE, "trigger": "moon"}]}, {},
     -32602, "otoco_config[1].trigger"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "amount": "1e30"}]}, {}, -32602,
     "otoco_config[0].amount"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "amount": -1}]}, {}, 10021,
     "otoco_config[0]"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "trigger_price": 1e300}]}, {},
     -32602, "otoco_config[0].trigger_price"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "trigger_price": None}]}, {},
     10023, "otoco_config[0].trigger_price"),
    ({"linked_order_type": OTO, "otoco_config": [{**STOP, "label": "x" * 65}]}, {}, -32602,
     "otoco_config[0].label"),
    ({"linked_order_type": OTO, "otoco_config": "[" * 3000 + "]" * 1000}, {}, -32602,
     "otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": " " * (MAX_CONFIG_CHARS + 1)}, {}, -32602,
     "otoco_config"),
    ({"linked_order_type": OTO, "otoco_config": "__import__('os').system('true')"}, {},
     -32602, "otoco_config"),
]  # fmt: skip


def test_bad_linked_parameters_are_refused_naming_them(server: Server) -> None:
    name = server.option()
    key = server.key()

    async def run() -> None:
        client = await RpcClient.connect(server.ws_url)
        await client.auth(key.client_id, key.client_secret)
        wrong = []
        for linked, main, code, param in BAD:
            request = {"instrument_name": name, **ENTRY, **main, **linked}
            if "trigger_price" in main:
                request.pop("price")
            reply = await client.call("private/buy", request)
            error = reply.get("error", {})
            if (error.get("code"), error.get("data", {}).get("param")) != (code, param):
                wrong.append((linked, reply))
        assert wrong == [], "\n".join(f"{req} -> {rep.get('error')}" for req, rep in wrong)
        # a trigger the core would fire at once: its reason, naming the entry
        other = server.key()
        peer = await RpcClient.connect(server.ws_url)
        await peer.auth(other.client_id, other.client_secret)
        await peer.result(
            "private/sell", {"instrument_name": name, "amount": 0.1, "type": "limit", "price": 1000}
        )
        await client.result(
            "private/buy", {"instrument_name": name, "amount": 0.1, "type": "market"}
        )
        at_once = {**STOP, "trigger_price": 1010}  # a sell stop above the last price
        reply = await client.call(
            "private/buy",
            {"instrument_name": name, **ENTRY, "linked_order_type": OTO,
             "otoco_config": [TAKE, at_once]},
        )  # fmt: skip
        error = reply["error"]
        assert (error["code"], error["data"]["param"]) == (11036, "otoco_config[1]"), error
        # nothing of any refused group was placed; a good group still is
        assert (
            await client.result("private/get_open_orders_by_instrument", {"instrument_name": name})
            == []
        )
        good = await client.result(
            "private/buy",
            {"instrument_name": name, **ENTRY, "linked_order_type": OTO, "otoco_config": [STOP]},
        )
        assert len(good["order"]["oto_order_ids"]) == 1
        await client.close()
        await peer.close()

    asyncio.run(run())


def test_a_refused_group_fails_alone_in_a_batch() -> None:
    """One ``place_many`` (one engine call): plain orders around a group the core refuses,
    a group whose record cannot be packed, and a good group each get their own answer."""
    exchange = Exchange(EngineConfig(risk_checks=False))
    catalog = list_all(exchange, [perpetual("BTC")])
    spec = catalog.by_name["BTC_USDC-PERPETUAL"]
    a, b = exchange.create_account(), exchange.create_account()
    for account in (a, b):
        exchange.deposit(account, 10**12)
    venue = Venue(exchange, catalog)
    venue.place(a, spec, "sell", 1, spec.to_ticks(1000))
    venue.place(b, spec, "buy", 1, spec.to_ticks(1000))  # last price 1000

    class Session:
        account = b

    ctx = Context(venue, None, Session(), None, None, "http")  # type: ignore[arg-type]

    def order(**params: Any) -> Any:
        return prepare_place(ctx, {"instrument_name": spec.name, **params}, 0)

    group = {"amount": 1, "type": "limit", "price": 990, "linked_order_type": OTO}
    plain = {"amount": 1, "type": "limit", "price": 980}
    refused = order(**group, otoco_config=[{**STOP, "amount": 1, "trigger_price": 1010}])
    unpackable = order(**group, otoco_config=[{**STOP, "amount": 1}])
    unpackable.secondaries[0].qty_lots = 2**70  # past the checks: its record cannot hold it
    good = order(**group, label="good", otoco_config=[{**STOP, "amount": 1, "label": "sl"}])
    results = list(
        venue.place_many(
            [order(**plain), refused, order(**plain), unpackable, good, order(**plain)]
        )
    )
    first, bad, second, broken, placed, last = results
    assert isinstance(bad, RpcError) and bad.code == 11036
    assert bad.data is not None and bad.data["param"] == "otoco_config[0]"
    assert isinstance(broken, RpcError) and broken.code == -32602
    for result in (first, second, last):
        assert not isinstance(result, Exception), (results.index(result), result.data)
        assert result[0].state == "open" and result[0].order_type == "limit"
    assert not isinstance(placed, Exception), placed
    record = placed[0]
    assert record.label == "good" and record.link is not None
    (stop_id,) = record.link.oto_order_ids
    stop = venue.order(b, stop_id)
    assert stop.label == "sl" and stop.link.primary_order_id == record.order_id
    opened = {r.order_id for r in venue.open_orders(b)}
    assert opened == {
        first[0].order_id,
        second[0].order_id,
        last[0].order_id,
        record.order_id,
        stop_id,
    }
    assert len(exchange.trigger_orders(b)) == 1


def _bracket(market_price: float) -> dict[str, Any]:
    return {
        "linked_order_type": "one_triggers_one_cancels_other",
        "otoco_config": [
            {"direction": "sell", "amount": 0.5, "type": "take_limit", "price": 1100,
             "trigger_price": 1100, "label": "tp"},
            {"direction": "sell", "amount": 0.5, "type": "stop_market",
             "trigger_price": market_price, "reduce_only": True, "label": "sl"},
        ],
    }  # fmt: skip


def test_ccxt_passes_the_deribit_parameters_through(server: Server) -> None:
    name = server.option()
    client = server.sync(server.key())
    market = symbol(client, name)
    entry = client.create_order(market, "limit", "buy", 0.5, 1000, params=_bracket(900))
    info = entry["info"]
    assert info["is_primary_otoco"] is True and len(info["oto_order_ids"]) == 2
    opened = {o["info"]["label"]: o for o in client.fetch_open_orders(market)}
    assert set(opened) == {"", "tp", "sl"}
    assert opened["sl"]["triggerPrice"] == 900 and opened["sl"]["info"]["reduce_only"] is True
    assert opened["tp"]["info"]["primary_order_id"] == entry["id"]
    with pytest.raises(ccxt.BadRequest, match="otoco_config"):
        client.create_order(
            market, "limit", "buy", 0.5, 1000, params={**_bracket(900), "otoco_config": "[1"}
        )

    async def asynchronous() -> None:
        aclient = server.asynchronous(server.key())
        try:
            await aclient.load_markets()
            placed = await aclient.create_order(
                market, "limit", "buy", 0.5, 1000, params=_bracket(950)
            )
            assert len(placed["info"]["oto_order_ids"]) == 2
        finally:
            await aclient.close()

    asyncio.run(asynchronous())
