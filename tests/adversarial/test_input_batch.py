"""One order's failure never affects another (finding 2): a valid buy then a buy with
amount 1e30 on one WebSocket both failed with 11094 (``struct.error`` in
``Venue.place_many``), and so did valid orders of another connection in the same
event-loop tick. Here valid and poisoned orders are interleaved on one socket and across
two connections in one tick: every valid order is placed, every bad one gets its own clean
error, and the venue's state holds exactly the valid orders."""

from __future__ import annotations

import json
from typing import Any

import orjson
from websockets.sync.client import ClientConnection, connect

from derivex.core.records import Side
from derivex.gateway.errors import RpcError
from derivex.gateway.keys import ApiKey
from derivex.gateway.venue import PlaceOrder
from tests.gateway.conftest import Server

PERP = "BTC_USDC-PERPETUAL"
VALID = {"instrument_name": PERP, "amount": "0.01", "price": "100", "type": "limit"}
# each poisons one field of a valid order (None: drop the field)
POISONS: list[dict[str, Any]] = [
    {"amount": 1e30},
    {"amount": 2**63},
    {"amount": 1e308},
    {"price": 2**63},
    {"amount": "1e999995"},
    {"amount": "1_0"},
    {"price": "\u0661\u0660\u0660"},
    {"amount": " 1 "},
    {"amount": -(2**63) - 1},
    {"price": "1e30"},
    {"amount": [1]},
    {"amount": {"a": 1}},
    {"amount": True},
    {"amount": "abc"},
    {"amount": "0.00001"},
    {"price": "100.001"},
    {"stopPrice": "90"},
    {"trigger_price": 90},
    {"type": "stop_market"},
    {"instrument_name": "NOPE"},
    {"instrument_name": ["x"]},
    {"amount": None},
    {"time_in_force": "never"},
    {"label": "x" * 65},
    {"post_only": "maybe"},
    {"amount": "1e9"},
    {"price": "1e16"},
]
CLEAN = {-32602, -32000, 10021, 10023, 10043, 10007, 10033, 10020}


def _order(poison: dict[str, Any] | None) -> dict[str, Any]:
    order = dict(VALID)
    for name, value in (poison or {}).items():
        if value is None:
            order.pop(name, None)
        else:
            order[name] = value
    return order


def _frame(request_id: int, params: dict[str, Any]) -> str:
    # stdlib json writes any int (orjson stops at 64 bits)
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "private/buy", "params": params}
    )


def _auth(ws: ClientConnection, key: ApiKey) -> None:
    ws.send(
        orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "public/auth",
                "params": {
                    "grant_type": "client_credentials",
                    "client_id": key.client_id,
                    "client_secret": key.client_secret,
                },
            }
        ).decode()
    )
    assert "access_token" in orjson.loads(ws.recv(timeout=10))["result"]


def _replies(ws: ClientConnection, ids: set[int]) -> dict[int, Any]:
    """The replies with these ids (notifications skipped)."""
    replies: dict[int, Any] = {}
    while ids - replies.keys():
        reply = orjson.loads(ws.recv(timeout=30))
        if reply.get("id") in ids:
            replies[reply["id"]] = reply
    return replies


def _open_order_ids(ws: ClientConnection) -> set[str]:
    ws.send(
        orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 10**6,
                "method": "private/get_open_orders_by_instrument",
                "params": {"instrument_name": PERP},
            }
        ).decode()
    )
    reply = _replies(ws, {10**6})[10**6]
    return {order["order_id"] for order in reply["result"]}


def _check(replies: dict[int, Any], plan: dict[int, bool]) -> set[str]:
    """Every valid order placed and open, every bad one refused with a clean code of its
    own; returns the placed order ids."""
    placed = set()
    for request_id, good in plan.items():
        reply = replies[request_id]
        if good:
            assert reply["result"]["order"]["order_state"] == "open", reply
            placed.add(reply["result"]["order"]["order_id"])
        else:
            assert reply["error"]["code"] in CLEAN, reply
    return placed


def test_poisoned_orders_pipelined_on_one_websocket(server: Server) -> None:
    with connect(server.ws_url, max_size=2**22, open_timeout=10) as ws:
        _auth(ws, server.key())
        plan: dict[int, bool] = {}
        frames = []
        for i, poison in enumerate(POISONS):  # valid, bad, valid, bad, ...
            plan[2 * i + 1], plan[2 * i + 2] = True, False
            frames += [_frame(2 * i + 1, _order(None)), _frame(2 * i + 2, _order(poison))]
        for frame in frames:  # back to back, before reading anything
            ws.send(frame)
        placed = _check(_replies(ws, set(plan)), plan)
        assert len(placed) == len(POISONS)
        assert _open_order_ids(ws) == placed


def test_poisoned_orders_of_two_connections_in_one_tick(server: Server) -> None:
    """Frames of two connections handed to the gateway in ONE event-loop callback (as its
    WebSocket parser does when both sockets' data arrive together): one tick, one batch
    per run of valid orders; the other connection's orders are unaffected."""
    keys = [server.key(), server.key()]
    with connect(server.ws_url, open_timeout=10) as a, connect(server.ws_url, open_timeout=10) as b:
        _auth(a, keys[0])
        _auth(b, keys[1])
        gateway = server.gateway

        def connections() -> list[Any]:
            by_client = {
                c.session.key.client_id: c for c in gateway.connections if c.session.key is not None
            }
            return [by_client[key.client_id] for key in keys]

        conns = server.thread.call(connections)
        plans: list[dict[int, bool]] = [{}, {}]
        steps: list[tuple[int, str]] = []
        for i, poison in enumerate(POISONS):
            # a: valid, bad; b: valid, valid: the bad order sits between b's orders
            for side, request_id, good in (
                (0, 3 * i + 1, True),
                (0, 3 * i + 2, False),
                (1, 3 * i + 1, True),
                (1, 3 * i + 2, True),
            ):
                plans[side][request_id] = good
                steps.append((side, _frame(request_id, _order(None if good else poison))))
            plans[1][3 * i + 3] = False  # and b sends one bad order too
            steps.append((1, _frame(3 * i + 3, _order(poison))))

        def inject() -> None:  # one loop callback: one tick
            for side, frame in steps:
                gateway._handle(conns[side], frame.encode())  # past the fair turns: one tick

        server.thread.call(inject)
        for ws, plan in zip((a, b), plans, strict=True):
            placed = _check(_replies(ws, set(plan)), plan)
            assert len(placed) == sum(plan.values())
            assert _open_order_ids(ws) == placed


def test_place_many_fails_only_the_order_that_does_not_fit(server: Server) -> None:
    """The venue's own line of defence: orders that reach ``place_many`` with fields
    outside their record (the gateway refuses them first) fail alone; the batch's other
    orders are sequenced and placed as usual."""
    account = server.account()
    venue = server.gateway.venue
    spec = venue.catalog.get(PERP)
    buy = int(Side.BUY)
    orders = [
        PlaceOrder(account, spec.instrument, buy, 100, 10_000),
        PlaceOrder(account, spec.instrument, buy, 2**63, 10_000),
        PlaceOrder(account, spec.instrument, buy, 100, -(2**64)),
        PlaceOrder(account, spec.instrument, buy, 100, 10_000, "stop_market"),
        PlaceOrder(account, spec.instrument, buy, 200, 10_000),
        PlaceOrder(account, spec.instrument, buy, 1e3, 10_000),
    ]  # type: ignore[arg-type]

    def place() -> list[Any]:
        return list(venue.place_many(orders))

    results = server.thread.call(place)
    assert [type(r) is tuple for r in results] == [True, False, False, False, True, False]
    for bad in (results[1], results[2], results[3], results[5]):
        assert isinstance(bad, RpcError) and bad.code == -32602
    assert results[0][0].amount_lots == 100 and results[4][0].amount_lots == 200
    assert results[4][0].order_id > results[0][0].order_id
    placed = {results[0][0].order_id, results[4][0].order_id}
    assert {r.order_id for r in server.thread.call(lambda: venue.open_orders(account))} == placed

    def only_bad() -> list[Any]:
        return list(venue.place_many(orders[1:4]))

    assert all(isinstance(r, RpcError) for r in server.thread.call(only_bad))
