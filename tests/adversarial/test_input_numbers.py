"""Numbers a hostile client sends: the slow-number family (``"1e999995"`` stalled every
client for 48 s through a ``Decimal`` path), look-alikes that were accepted (``"1_0"``,
Arabic-Indic digits, ``" 1 "``), and values beyond int64 or the engine's caps. Each gets a
clean error naming the parameter, from the grammar, before any arithmetic; valid numbers
convert exactly as the decimal arithmetic says."""

from __future__ import annotations

import doctest
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import connect

from derivex.gateway import numbers as n
from derivex.gateway import params as p
from derivex.gateway.auth import sign
from derivex.gateway.errors import RpcError
from tests.gateway.conftest import Server

PERP = "BTC_USDC-PERPETUAL"
# the family of finding 1: the cost of a Decimal grew with the square of the exponent
SLOW = [
    "1e999995",
    "1e100000",
    "1E200000",
    "-1e999995",
    "1e-999995",
    "0.1e999999",
    "1" * 64 + "e99",
    "1e" + "9" * 62,
]
# not numbers here, though Python's int() / Decimal() take them
LOOKALIKES = [
    "1_0",
    "1_000.5",
    "\u0661\u0660",
    "\u0663",
    "\uff11",
    "\u06f1\u06f2",
    " 1 ",
    "1 ",
    " 1",
    "\t1",
    "1\n",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "sNaN",
    "0x10",
    "1e",
    ".",
    "+",
    "-",
    "",
    "--1",
    "1.2.3",
    "1e+",
    "e5",
    "1e5.5",
    "²",
    "1" * 65,
    "0" * 65,
]
BEYOND_INT64 = [2**63, -(2**63) - 1, 1e30, 1e308, -1e308, "9223372036854775808", "1e30", "-1e40"]


def _ws_call(ws: Any, method: str, params: dict[str, Any], request_id: int = 1) -> Any:
    # stdlib json: it writes any int (orjson stops at 64 bits)
    ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    while True:
        reply = orjson.loads(ws.recv(timeout=30))
        if reply.get("id") == request_id:
            return reply


@contextmanager
def _authenticated(server: Server) -> Iterator[Any]:
    key = server.key()
    with connect(server.ws_url, open_timeout=10) as ws:
        reply = _ws_call(
            ws,
            "public/auth",
            {
                "grant_type": "client_credentials",
                "client_id": key.client_id,
                "client_secret": key.client_secret,
            },
            0,
        )
        assert "access_token" in reply["result"]
        yield ws


@pytest.mark.parametrize("text", SLOW)
def test_slow_numbers_are_refused_by_the_grammar_before_any_arithmetic(text: str) -> None:
    # the refusal names the exponent or the length: decided on the text, no big number
    # is ever built (a value of 10**999995 has 999996 digits)
    with pytest.raises(RpcError) as error:
        n.units(text, 1, 10_000, "amount")
    assert error.value.code == -32602
    assert error.value.data is not None and error.value.data["param"] == "amount"
    assert error.value.data["reason"] in (
        f"exponent beyond +-{n.MAX_EXPONENT}",
        f"longer than {n.MAX_NUMBER_CHARS} characters",
    )


@pytest.mark.parametrize("text", SLOW)
def test_slow_numbers_get_a_clean_invalid_params_over_websocket(server: Server, text: str) -> None:
    with _authenticated(server) as ws:
        for field in ("amount", "price"):
            order = {
                "instrument_name": PERP,
                "amount": "0.01",
                "price": "60000",
                "type": "limit",
                field: text,
            }
            reply = _ws_call(ws, "private/buy", order)
            assert reply["error"]["code"] == -32602, reply
            assert reply["error"]["data"]["param"] == field
        # the connection (and the venue) still answer
        assert "version" in _ws_call(ws, "public/test", {}, 2)["result"]


@pytest.mark.parametrize("text", SLOW[:3])
def test_slow_numbers_get_a_clean_invalid_params_over_http(server: Server, text: str) -> None:
    key = server.key()
    token = _http_get(
        server,
        "public/auth",
        {
            "grant_type": "client_credentials",
            "client_id": key.client_id,
            "client_secret": key.client_secret,
        },
    )
    reply = _http_get(
        server,
        "private/sell",
        {
            "instrument_name": PERP,
            "amount": text,
            "type": "market",
            "access_token": token["result"]["access_token"],
        },
    )
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["param"] == "amount"


def _http_get(server: Server, method: str, query: dict[str, str]) -> Any:
    url = f"{server.url}/api/v2/{method}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return orjson.loads(error.read())


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalike_numbers_are_refused(text: str) -> None:
    for convert in (
        lambda v: n.units(v, 1, 100, "price"),
        lambda v: n.whole_integer(v, "x"),
        lambda v: p.integer({"count": v}, "count"),
    ):
        with pytest.raises(RpcError) as error:
            convert(text)
        assert error.value.code == -32602, text


@pytest.mark.parametrize(
    "value", [True, False, None, [], {}, [1], {"a": 1}, float("nan"), float("inf"), -float("inf")]
)
def test_non_numbers_are_refused(value: Any) -> None:
    with pytest.raises(RpcError) as error:
        n.units(value, 1, 1, "amount")
    assert error.value.code == -32602


def test_order_ids_take_ascii_digits_only() -> None:
    for text in ("\u0661\u0662", "\uff11\uff12", "1_2", " 12"):
        with pytest.raises(RpcError) as error:
            p.order_id({"order_id": text})
        assert error.value.code == 10004
    assert p.order_id({"order_id": "12"}) == 12


@pytest.mark.parametrize("value", BEYOND_INT64)
def test_values_beyond_int64_are_refused_before_packing(server: Server, value: Any) -> None:
    # finding 2: these reached struct.error in Venue.place_many (11094 for the batch)
    with _authenticated(server) as ws:
        for field in ("amount", "price"):
            order = {
                "instrument_name": PERP,
                "amount": "0.01",
                "price": "60000",
                "type": "limit",
                field: value,
            }
            reply = _ws_call(ws, "private/buy", order)
            assert reply["error"]["code"] in (-32602, 10021, 10007), reply
            assert reply["error"]["data"]["param"] == field


def test_engine_caps_are_refused_by_the_gateway(server: Server) -> None:
    """Within int64 but above the engine's order size or the instrument's price cap: the
    engine's own codes (10021, 10007), from the gateway."""
    with _authenticated(server) as ws:
        big = {"instrument_name": PERP, "amount": "1e9", "type": "market"}
        reply = _ws_call(ws, "private/buy", big)
        assert reply["error"]["code"] == 10021, reply
        assert reply["error"]["data"]["reason"] == "above the maximum order size"
        high = {"instrument_name": PERP, "amount": "0.01", "price": "1e16", "type": "limit"}
        reply = _ws_call(ws, "private/buy", high)
        assert reply["error"]["code"] == 10007, reply


@given(
    st.decimals(
        allow_nan=False,
        allow_infinity=False,
        places=6,
        min_value=Decimal("-1e12"),
        max_value=Decimal("1e12"),
    ),
    st.sampled_from([(1, 100), (1, 10_000), (1, 2), (5, 1), (1, 1), (25, 100_000)]),
    st.sampled_from(["f", "e", "E", "float", "int"]),
)
def test_valid_numbers_convert_exactly_as_decimal_arithmetic(
    value: Decimal, unit: tuple[int, int], form: str
) -> None:
    if form == "float":
        sent: Any = float(value)
        exact = Decimal(repr(sent))
    elif form == "int":
        sent = int(value)
        exact = Decimal(sent)
    else:
        sent = f"{value:f}" if form == "f" else f"{value:{form}}"
        exact = value
    count = exact / (Decimal(unit[0]) / Decimal(unit[1]))
    if count != count.to_integral_value():
        with pytest.raises(RpcError) as error:
            n.units(sent, *unit, "price", 10043, "price_wrong_tick")
        assert error.value.code == 10043
    else:
        assert n.units(sent, *unit, "price", 10043, "price_wrong_tick") == int(count)


@given(st.text(max_size=80))
def test_any_text_is_a_number_or_a_clean_refusal(text: str) -> None:
    try:
        count = n.units(text, 1, 100, "price", 10043, "price_wrong_tick")
    except RpcError as error:
        assert error.code in (-32602, 10043)
    else:
        assert text.isascii() and text == text.strip() and "_" not in text
        assert count == Decimal(text) * 100


def test_docstring_examples_of_the_input_modules() -> None:
    for module in (n, p):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_signature_timestamps_take_the_integer_grammar(server: Server) -> None:
    """A ``client_signature`` grant correctly signed over a look-alike timestamp is refused
    (``int()`` read ``"1_7..."`` and ``" 17... "`` as the same number); the plain one
    authenticates."""
    key = server.key()
    now = str(int(time.time() * 1000))
    for nonce, stamp in enumerate(
        [f"{now[:1]}_{now[1:]}", f" {now} ", "".join(chr(0x660 + int(d)) for d in now), now]
    ):
        params = {
            "grant_type": "client_signature",
            "client_id": key.client_id,
            "timestamp": stamp,
            "nonce": f"n{nonce}",
            "data": "",
            "signature": sign(key.client_secret, f"{stamp}\nn{nonce}\n"),
        }
        reply = _http_get(server, "public/auth", params)
        if stamp == now:
            assert "access_token" in reply["result"], reply
        else:
            assert reply["error"]["code"] == 13009, reply
