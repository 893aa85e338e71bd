"""Unknown parameters are refused, never ignored (finding 3): ccxt's
``create_stop_market_order`` sends ``type=market`` with ``stopPrice``, and
``create_order(..., {'triggerPrice': x})`` sends ``triggerPrice``; both placed an order that
executed at once. Every method, public and private, over WebSocket and HTTP, refuses a
parameter it does not implement with -32602 naming it; ccxt raises ``BadRequest`` and no
order is placed or filled."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import ccxt
import orjson
import pytest
from websockets.sync.client import connect

from derivex.gateway import GatewayThread, KeyStore
from derivex.gateway.methods import ACCESS_TOKEN, METHODS
from tests.gateway.conftest import Server, build_gateway, symbol

PERP = "BTC_USDC-PERPETUAL"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    keys = KeyStore(None)
    thread = GatewayThread(lambda: build_gateway(keys))
    thread.start()
    server = Server(thread, keys, [])
    server.options = thread.call(
        lambda: [spec.name for spec in server.gateway.venue.catalog if spec.kind == "option"]
    )
    yield server
    thread.stop()


def _ws_call(ws: Any, method: str, params: dict[str, Any], request_id: int) -> Any:
    ws.send(
        orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        ).decode()
    )
    while True:
        reply = orjson.loads(ws.recv(timeout=10))
        if reply.get("id") == request_id:
            return reply


def test_every_method_declares_its_parameters() -> None:
    for name, method in METHODS.items():
        assert ACCESS_TOKEN in method.accepts, name
        assert all(isinstance(p, str) and p for p in method.accepts), name
    # what buy / sell read: Deribit's trigger parameters (issue 15), none of ccxt's
    # untranslated keys, nothing unimplemented
    assert METHODS["private/buy"].accepts == METHODS["private/sell"].accepts
    assert {"trigger_price", "trigger", "trigger_offset"} <= METHODS["private/buy"].accepts
    assert (
        not {"stopPrice", "triggerPrice", "stop_price", "max_show", "advanced"}
        & METHODS["private/buy"].accepts
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_refuses_an_unknown_parameter_over_websocket(
    server: Server, name: str
) -> None:
    key = server.key(_scopes(name))
    with connect(server.ws_url, open_timeout=10) as ws:
        auth = _ws_call(
            ws,
            "public/auth",
            {
                "grant_type": "client_credentials",
                "client_id": key.client_id,
                "client_secret": key.client_secret,
            },
            0,
        )
        assert "access_token" in auth["result"]
        for unknown in ("stopPrice", "bogus", "é" * 100):
            reply = _ws_call(ws, name, {unknown: "1"}, 1)
            assert reply["error"]["code"] == -32602, reply
            assert reply["error"]["data"]["param"] == unknown[:64]
        assert "version" in _ws_call(ws, "public/test", {}, 2)["result"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_refuses_an_unknown_parameter_over_http(server: Server, name: str) -> None:
    token = _token(server, _scopes(name))
    query = urllib.parse.urlencode({"access_token": token, "stop_price": "1"})
    try:
        with urllib.request.urlopen(f"{server.url}/api/v2/{name}?{query}", timeout=10):
            pytest.fail("accepted")
    except urllib.error.HTTPError as error:
        reply = orjson.loads(error.read())
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["param"] == "stop_price", (
        reply
    )


def _scopes(name: str) -> tuple[str, ...]:
    """A key that passes the method's scope check (the operator's methods need ``admin``,
    which a trading key lacks)."""
    return ("admin",) if METHODS[name].scope == "admin" else ("read", "trade")


def _token(server: Server, scopes: tuple[str, ...] = ("read", "trade")) -> str:
    key = server.key(scopes)
    query = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": key.client_id,
            "client_secret": key.client_secret,
        }
    )
    with urllib.request.urlopen(f"{server.url}/api/v2/public/auth?{query}", timeout=10) as response:
        return str(orjson.loads(response.read())["result"]["access_token"])


def test_unimplemented_order_types_keep_their_own_error(server: Server) -> None:
    key = server.key()
    with connect(server.ws_url, open_timeout=10) as ws:
        _ws_call(
            ws,
            "public/auth",
            {
                "grant_type": "client_credentials",
                "client_id": key.client_id,
                "client_secret": key.client_secret,
            },
            0,
        )
        reply = _ws_call(
            ws,
            "private/buy",
            {"instrument_name": PERP, "amount": "0.01", "type": "market_limit"},
            1,
        )
        assert reply["error"]["code"] == 10033, reply
        assert reply["error"]["data"]["param"] == "type"
        # the trigger types (issue 15) name what they miss
        for order_type, code, param in (
            ("stop_market", 10023, "trigger_price"),
            ("take_limit", 10023, "trigger_price"),
            ("trailing_stop", -32602, "trigger_offset"),
        ):
            reply = _ws_call(
                ws,
                "private/buy",
                {"instrument_name": PERP, "amount": "0.01", "type": order_type},
                1,
            )
            assert reply["error"]["code"] == code, reply
            assert reply["error"]["data"]["param"] == param


def test_ccxt_stop_orders_raise_and_place_nothing(server: Server) -> None:
    """ccxt's stop helpers that send untranslated ``stopPrice`` / ``triggerPrice`` are
    refused (its ``stopLossPrice`` / ``takeProfitPrice`` / ``trailingAmount`` arrive as
    Deribit's trigger types and work: tests/gateway/test_ccxt_triggers.py)."""
    name = server.option()
    maker, taker = server.sync(server.key()), server.sync(server.key())
    market = symbol(maker, name)
    resting = maker.create_order(market, "limit", "sell", 1.0, 2000)
    attempts = [
        lambda: taker.create_stop_market_order(market, "buy", 0.5, 2100),
        lambda: taker.create_order(market, "market", "buy", 0.5, None, {"triggerPrice": 2100}),
        lambda: taker.create_order(market, "limit", "buy", 0.5, 2000, {"triggerPrice": 1900}),
        lambda: taker.create_order(market, "market", "buy", 0.5, None, {"max_show": 0.1}),
    ]
    for attempt in attempts:
        with pytest.raises(ccxt.BadRequest) as error:
            attempt()
        assert "-32602" in str(error.value)
    assert taker.fetch_open_orders(market) == []
    assert taker.fetch_my_trades(market) == []
    assert maker.fetch_order(resting["id"], market)["filled"] == 0
    assert maker.fetch_order_book(market)["asks"] == [[2000.0, 1.0]]
    # the ordinary order still goes through (the refusals left nothing behind)
    assert taker.create_order(market, "market", "buy", 0.5)["filled"] == 0.5


def test_ccxt_calls_keep_working(server: Server) -> None:
    """ccxt forwards ``params={'code': ...}`` of fetch_open_orders / fetch_closed_orders /
    fetch_my_trades verbatim (it already sent the currency as ``currency``), and
    fetch_trading_fees sends ``extended``: both accepted."""
    client = server.sync(server.key())
    assert client.fetch_open_orders(params={"code": "ETH"}) == []
    assert client.fetch_my_trades(params={"code": "ETH"}) == []
    assert client.fetch_closed_orders(params={"code": "ETH"}) == []
    # fetch_trading_fees sends extended=true (implemented: the identity fields)
    fees = client.fetch_trading_fees()
    assert fees["BTC/USDC:USDC"]["taker"] == client.markets["BTC/USDC:USDC"]["taker"]


def test_post_without_params_key_takes_the_body_as_parameters(server: Server) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 7, "instrument_name": PERP})
    request = urllib.request.Request(
        f"{server.url}/api/v2/public/ticker",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert orjson.loads(response.read())["result"]["instrument_name"] == PERP
