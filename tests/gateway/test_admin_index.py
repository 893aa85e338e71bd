"""``private/admin_set_index`` (the operator's index override) on a real in-process gateway
around a venue with the risk engine: only the ``admin`` scope reaches it; it sets the index
through a sequenced INDEX command with the operator's source (and a TIME command), the
simulated feed walking it goes on from that price; bad requests get clear errors, never
11094. The crash it sets off is in ``tests/ui/test_crash.py`` (a real ``derivex serve``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect

from derivex.core.records import CommandKind
from derivex.exchange import Exchange
from derivex.gateway import Gateway, GatewayThread, KeyStore, Venue
from derivex.gateway.errors import FORBIDDEN, INVALID_PARAMS
from derivex.gateway.listing import default_specs, list_all
from derivex.market import Market
from derivex.oracle import OPERATOR_SOURCE_ID
from tests.gateway.test_dashboard_api import _Socket

INTERNAL_ERROR = 11094
MISSING_PARAMS = -32000


@pytest.fixture(scope="module")
def driven() -> Iterator[tuple[GatewayThread, KeyStore]]:
    keys = KeyStore(None)

    def build() -> Gateway:
        exchange = Exchange()
        venue = Venue(exchange, list_all(exchange, default_specs(time.time_ns() // 1_000_000)))
        gateway = Gateway(venue, keys)
        gateway.market = Market.simulated(venue, seed=3)  # type: ignore[attr-defined]
        gateway.market.index_step()  # type: ignore[attr-defined]
        return gateway

    thread = GatewayThread(build)
    thread.start()
    try:
        yield thread, keys
    finally:
        thread.stop()


def _index(thread: GatewayThread) -> int:
    assert thread.gateway is not None
    venue = thread.gateway.venue
    return int(thread.call(lambda: venue.exchange.index("BTC").price_ticks))


def _socket(driven: Any, stack: contextlib.ExitStack, scopes: Any) -> _Socket:
    thread, keys = driven
    socket = _Socket(stack.enter_context(connect(thread.url.replace("http", "ws") + "/ws/api/v2")))
    socket.login(keys.create(3, scopes))
    return socket


def test_only_the_admin_scope_sets_the_index(driven: Any) -> None:
    thread, _ = driven
    before = _index(thread)
    with contextlib.ExitStack() as stack:
        trader = _socket(driven, stack, ("read", "trade"))
        reply = trader.call("private/admin_set_index", index_name="btc_usdc", price=1000)
        assert reply["error"]["code"] == FORBIDDEN, reply
    assert _index(thread) == before  # nothing was sequenced


def test_the_override_is_sequenced_and_the_feed_goes_on_from_it(driven: Any) -> None:
    thread, _ = driven
    assert thread.gateway is not None
    venue, market = thread.gateway.venue, thread.gateway.market  # type: ignore[attr-defined]
    seen: list[Any] = []
    thread.call(lambda: venue.input_watchers.append(seen.append))
    target = round(_index(thread) * 0.8 / 100) * 100  # price units of 0.01: whole ticks
    with contextlib.ExitStack() as stack:
        admin = _socket(driven, stack, ("admin",))
        reply = admin.call("private/admin_set_index", index_name="btc_usdc", price=target / 100)
    result = reply["result"]
    assert result["index_name"] == "btc_usdc" and result["status"] == "valid", result
    assert result["price"] == target / 100 and result["liquidations"] == []
    assert _index(thread) == target
    # one INDEX command with the operator's source, then a TIME command
    commands = seen[0]
    assert [int(k) for k in commands["kind"]] == [
        CommandKind.SET_INDEX,
        CommandKind.INDEX_SOURCE,
        CommandKind.TIME,
    ]
    assert int(commands["source_id"][1]) == OPERATOR_SOURCE_ID
    # the simulated feed's next report is about the new price, not the old one
    thread.call(market.index_step)
    assert abs(_index(thread) / target - 1) < 0.01, (_index(thread), target)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"index_name": "btc_usdc"},
        {"price": 100},
        {"index_name": "xyz_usdc", "price": 100},
        {"index_name": "btc_eur", "price": 100},
        {"index_name": "usdc_usdc", "price": 100},
        {"index_name": 7, "price": 100},
        {"index_name": "btc_usdc", "price": "abc"},
        {"index_name": "btc_usdc", "price": 0},
        {"index_name": "btc_usdc", "price": -5},
        {"index_name": "btc_usdc", "price": 1e30},
        {"index_name": "btc_usdc", "price": 100.001},
        {"index_name": "btc_usdc", "price": 100, "source": 1},
    ],
)
def test_bad_requests_get_clear_errors(driven: Any, params: dict[str, Any]) -> None:
    thread, _ = driven
    before = _index(thread)
    with contextlib.ExitStack() as stack:
        admin = _socket(driven, stack, ("admin",))
        reply = admin.call("private/admin_set_index", **params)
    assert "error" in reply, reply
    assert reply["error"]["code"] != INTERNAL_ERROR, reply
    assert reply["error"]["code"] in (MISSING_PARAMS, INVALID_PARAMS, 10043), reply
    assert _index(thread) == before
