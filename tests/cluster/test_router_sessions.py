"""Credentials and sessions across domains, through the router of ``derivex cluster up
--domain btc_usdc --domain eth_usdc`` (real 3-node NATS, real leaders, real router):

- a key created through the router trades on both domains at once; revoked through the
  router, it is refused at once by the router and by both leaders, and its live sessions
  end: a router WebSocket and a WebSocket straight to a leader are closed;
- a client with connection-scoped cancel-on-disconnect drops its router socket: its
  orders on both domains are cancelled; the same after a leader takeover in between.
"""

from __future__ import annotations

import json
import time
import urllib.request
from functools import partial
from typing import Any

import pytest

from tests.cluster.test_router import (
    BTC,
    ETH,
    LOST,
    SocketClient,
    Venue,
    low_price,
    place,
    post,
    signed,
    trader,
    until_accepted,
    venue,
)

pytestmark = pytest.mark.integration

__all__ = ["venue"]  # the module's own venue (module scope), from test_router


def leaders(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/router", timeout=30) as reply:
        known: dict[str, str] = json.loads(reply.read())["leaders"]
    return known


def closed(socket: SocketClient, timeout_s: float = 30.0) -> bool:
    """Whether the server closed ``socket`` (waited for at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not socket._socket.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(socket._socket.closed)


def test_a_key_made_and_revoked_through_the_router_holds_everywhere_at_once(
    venue: Venue,
) -> None:
    key, secret = venue.credentials()
    url = venue.router
    wanted = {"max_scope": "trade", "name": "bot"}
    made = until_accepted(lambda: signed(url, key, secret, "private/create_api_key", wanted))[
        "result"
    ]
    bot_id, bot_secret = made["client_id"], made["client_secret"]
    grant = {"grant_type": "client_credentials", "client_id": bot_id, "client_secret": bot_secret}
    # at once on both domains: through the router (re-signed with it) and at each leader
    bot = trader(url, bot_id, bot_secret)
    for symbol in (BTC, ETH):
        assert place(bot, symbol, "limit", "buy", 0.01, low_price(bot, symbol))["status"] == "open"
    domains = leaders(url)
    assert len(domains) == 2
    for leader in domains.values():
        assert "access_token" in post(leader, "public/auth", grant)["result"]
    # live sessions of the key: one on the router's WebSocket, one straight on a leader
    at_router, at_leader = SocketClient(url), SocketClient(domains["eth_usdc"])
    try:
        for socket in (at_router, at_leader):
            assert "access_token" in socket.call("public/auth", grant)["result"]
        orders = at_router.call("private/get_open_orders_by_currency", {"currency": "USDC"})
        assert len(orders["result"]) >= 2
        removed = signed(url, key, secret, "private/remove_api_key", {"id": bot_id})
        assert removed.get("result") == "ok", removed
        # refused at once: the router, both leaders, signed or by secret
        assert post(url, "public/auth", grant)["error"]["code"] == 13004
        for leader in domains.values():
            assert post(leader, "public/auth", grant)["error"]["code"] == 13004
        refused = signed(url, bot_id, bot_secret, "private/get_positions", {"currency": "USDC"})
        assert refused["error"]["code"] in (13004, 13009)
        assert closed(at_router) and closed(at_leader)
        # the caller's own key is untouched; a key of another account cannot be removed
        assert "result" in signed(url, key, secret, "private/get_positions", {"currency": "USDC"})
        again = signed(url, key, secret, "private/remove_api_key", {"id": bot_id})
        assert again["error"]["code"] == -32602
    finally:
        at_router.close()
        at_leader.close()


def _cancel_on_disconnect_drop(venue: Venue, label: str, takeover: bool) -> None:
    key, secret = venue.credentials()
    url = venue.router
    client = trader(url, key, secret)
    prices = {symbol: low_price(client, symbol) for symbol in (BTC, ETH)}
    socket = SocketClient(url)
    grant = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
    socket.call("public/auth", grant)
    enabled = socket.call("private/enable_cancel_on_disconnect", {"scope": "connection"})
    assert enabled["result"] == "ok", enabled
    placed: list[str] = []

    def buy(symbol: str, order_label: str) -> Any:
        order = {"instrument_name": client.market(symbol)["id"], "amount": 0.01,
                 "price": prices[symbol], "label": order_label}  # fmt: skip
        return until_accepted(partial(socket.call, "private/buy", order))

    for symbol in (BTC, ETH):
        placed.append(buy(symbol, label)["result"]["order"]["order_id"])
    if takeover:  # the BTC leader dies (fault injection on this label), a standby leads
        lost = {"instrument_name": client.market(BTC)["id"], "amount": 0.01,
                "price": prices[BTC], "label": LOST}  # fmt: skip
        socket.call("private/buy", lost)
        deadline = time.monotonic() + 120
        while True:  # the new leader answers through the same router socket
            reply = socket.call("private/get_open_orders_by_currency", {"currency": "USDC"})
            if "result" in reply and {o["label"] for o in reply["result"]} >= {label}:
                break
            assert time.monotonic() < deadline, reply
            time.sleep(0.5)
        placed.append(buy(BTC, label)["result"]["order"]["order_id"])
        assert "exited with code 137" in venue.text()
    open_before = {o["id"] for s in (BTC, ETH) for o in client.fetch_open_orders(s)}
    assert set(placed) <= open_before
    socket.close()  # the client goes: every domain cancels its orders
    deadline = time.monotonic() + 60
    while set(placed) & {o["id"] for s in (BTC, ETH) for o in client.fetch_open_orders(s)}:
        assert time.monotonic() < deadline, "orders of the dropped client still open"
        time.sleep(0.3)


def test_cancel_on_disconnect_through_the_router_on_both_domains(venue: Venue) -> None:
    _cancel_on_disconnect_drop(venue, "cod-1", takeover=False)


def test_cancel_on_disconnect_survives_a_leader_takeover(venue: Venue) -> None:
    _cancel_on_disconnect_drop(venue, "cod-2", takeover=True)


def test_a_client_that_misses_router_heartbeats_is_closed_and_cancelled(venue: Venue) -> None:
    key, secret = venue.credentials()
    client = trader(venue.router, key, secret)
    prices = {symbol: low_price(client, symbol) for symbol in (BTC, ETH)}
    socket = SocketClient(venue.router)
    grant = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
    socket.call("public/auth", grant)
    assert socket.call("public/set_heartbeat", {"interval": 2})["error"]["code"] == -32602
    socket.call("private/enable_cancel_on_disconnect", {"scope": "connection"})
    placed = []
    for symbol in (BTC, ETH):
        order = {"instrument_name": client.market(symbol)["id"], "amount": 0.01,
                 "price": prices[symbol], "label": "beat"}  # fmt: skip
        placed.append(until_accepted(partial(socket.call, "private/buy", order)))
    placed_ids = {reply["result"]["order"]["order_id"] for reply in placed}
    assert socket.call("public/set_heartbeat", {"interval": 10})["result"] == "ok"
    # the client now sends nothing: after one unanswered test_request the router closes it
    assert closed(socket, timeout_s=60.0)
    deadline = time.monotonic() + 60
    while placed_ids & {o["id"] for s in (BTC, ETH) for o in client.fetch_open_orders(s)}:
        assert time.monotonic() < deadline, "orders of the silent client still open"
        time.sleep(0.3)
    socket.close()
