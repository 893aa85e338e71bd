"""Overload policy (issue 12, finding 9): when the queue in front of the engine passes its
watermarks, new orders that can take liquidity are shed first (10047), then the other new
orders (10040); reduce-only orders, cancels and cancel-all never are. The flood is one
connection's pipelined frames written at once (they arrive in one or a few loop ticks, the
queue the count watermarks measure; or, with a tiny tick budget, they wait parked for their
turns, the wait the time watermarks measure); the watermarks are set low so that it
overflows them."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from derivex.core.config import EngineConfig
from derivex.core.records import OrderFlag, Side
from derivex.exchange import Exchange
from derivex.gateway.limits import Limits
from derivex.gateway.listing import list_all, perpetual
from derivex.gateway.overload import Shedder, can_take
from derivex.gateway.venue import PlaceOrder, Venue
from tests.adversarial.load_client import INSTRUMENT, RawWebSocket, Served, request, serving

ASK_TICKS = 6_000_000  # 60,000 USDC
BID_TICKS = 5_900_000
TAKING_KINDS = ("market", "ioc", "crossing")
PASSIVE_KINDS = ("resting", "post_only_crossing")


def _order(kind: str, request_id: int) -> bytes:
    params: dict[str, Any] = {"instrument_name": INSTRUMENT, "amount": 0.001}
    method = "private/buy"
    if kind == "market":
        params["type"] = "market"
    elif kind == "ioc":
        params.update(type="limit", price=58_000, time_in_force="immediate_or_cancel")
    elif kind == "crossing":
        params.update(type="limit", price=60_500)
    elif kind == "resting":
        params.update(type="limit", price=58_000)
    elif kind == "post_only_crossing":
        params.update(type="limit", price=60_500, post_only=True)
    elif kind == "reduce_only":
        method = "private/sell"
        params.update(type="limit", price=61_500, reduce_only=True)
    return request(request_id, method, **params)


def _maker_book(served: Served) -> None:
    maker = served.account_key().account

    def place() -> None:
        venue = served.gateway.venue
        instrument = venue.catalog.by_name[INSTRUMENT].instrument
        results = list(
            venue.place_many(
                [
                    PlaceOrder(maker, instrument, Side.SELL, 10**7, ASK_TICKS),
                    PlaceOrder(maker, instrument, Side.BUY, 10**7, BID_TICKS),
                ]
            )
        )
        assert not any(isinstance(r, Exception) for r in results)

    served.thread.call(place)


def _resting_ids(served: Served, account: int, count: int) -> list[str]:
    def place() -> list[str]:
        venue = served.gateway.venue
        instrument = venue.catalog.by_name[INSTRUMENT].instrument
        results = list(
            venue.place_many(
                [
                    PlaceOrder(account, instrument, Side.BUY, 10, 5_000_000 - 50 * k)
                    for k in range(count)
                ]
            )
        )
        return [str(record.order_id) for record, _ in results]  # type: ignore[misc]

    return served.thread.call(place)


def _auth(key: Any) -> bytes:
    return request(
        0,
        "public/auth",
        grant_type="client_credentials",
        client_id=key.client_id,
        client_secret=key.client_secret,
    )


def _flood(limits: Limits) -> tuple[dict[str, int], float]:
    """One connection's 600 pipelined new orders of every kind, then cancels of 60 resting
    orders and a cancel-all, against a server with ``limits``. Checks what holds under any
    watermark (every request answered, shed orders with their class's code, reduce-only
    orders, cancels and cancel-all never shed, the shedder's counts equal the replies');
    returns the shed counts by class and ``Turns.delay_s`` once all was answered."""
    with serving(limits) as served:
        _maker_book(served)
        key = served.account_key()
        resting = _resting_ids(served, key.account, 60)
        ws = RawWebSocket(served.port)
        ws.send([_auth(key)])
        assert "result" in orjson.loads(list(ws.frames(until_id=0))[-1][1])
        kinds = [*TAKING_KINDS, *PASSIVE_KINDS, "reduce_only"]
        flood = list(itertools.islice(itertools.cycle(kinds), 600))
        frames = [_order(kind, 1 + k) for k, kind in enumerate(flood)]
        cancel_ids = {}
        for k, order_id in enumerate(resting):
            cancel_ids[10_000 + k] = order_id
            frames.append(request(10_000 + k, "private/cancel", order_id=order_id))
        frames.append(request(20_000, "private/cancel_all"))
        ws.send(frames)
        replies = {}
        for opcode, payload in ws.frames(until_id=20_000):
            if opcode == 0x1:
                reply = orjson.loads(payload)
                if "id" in reply:
                    replies[reply["id"]] = reply
        ws.close()
        counted = served.thread.call(lambda: dict(served.gateway.dispatcher.shedder.shed))
        delay_after = served.thread.call(lambda: served.gateway.turns.delay_s)
        # a quiet client afterwards: its taking orders, one at a time, are not shed
        quiet = RawWebSocket(served.port)
        quiet.send([_auth(key)])
        list(quiet.frames(until_id=0))
        for k in range(3):
            quiet.send([_order("market", 30_000 + k)])
            last = orjson.loads(list(quiet.frames(until_id=30_000 + k))[-1][1])
            assert "result" in last, last
        quiet.close()
    assert len(replies) == len(frames)  # every request answered
    shed = {"taking": 0, "passive": 0}
    for k, kind in enumerate(flood):
        error = replies[1 + k].get("error")
        assert error is None or error["code"] != 11094, error
        if error is not None and error.get("data", {}).get("reason") == "overload":
            klass = error["data"]["class"]
            shed[klass] += 1
            if klass == "taking":
                assert (kind, error["code"], error["message"]) == (
                    kind,
                    10047,
                    "matching_engine_queue_full",
                )
                assert kind in TAKING_KINDS
            else:
                assert (error["code"], error["message"]) == (10040, "retry")
                assert kind in PASSIVE_KINDS, kind  # reduce-only orders are never shed
    # zero cancels shed: each resting order is cancelled, cancel-all answers
    for request_id, order_id in cancel_ids.items():
        result = replies[request_id]["result"]
        assert result["order_id"] == order_id and result["order_state"] == "cancelled"
    assert "result" in replies[20_000]
    assert counted == shed
    return shed, delay_after


def test_flood_sheds_taking_then_passive_orders_and_never_cancels() -> None:
    shed, _ = _flood(
        Limits(
            max_connections_per_address=0,
            public_rate_per_connection=0,
            public_rate_per_address=0,
            shed_taking_at=8,
            shed_all_at=24,
            shed_taking_after_s=0,  # the tick's order count alone
            shed_all_after_s=0,
        )
    )
    assert shed["taking"] > 0 and shed["passive"] > 0
    # every taking order beyond the first watermark of its tick is shed before any passive
    # one is: at least as many taking orders were shed as passive ones
    assert shed["taking"] >= shed["passive"]


def _waiting_limits(all_after_s: float) -> Limits:
    """Requests wait for their turn: one frame per tick is handled and the rest parked
    (a 1 ns tick budget), and any wait passes the first watermark; the counts are off."""
    return Limits(
        max_connections_per_address=0,
        public_rate_per_connection=0,
        public_rate_per_address=0,
        max_time_per_tick_s=1e-9,
        shed_taking_at=0,
        shed_all_at=0,
        shed_taking_after_s=1e-9,
        shed_all_after_s=all_after_s,
    )


def test_requests_waiting_for_their_turn_shed_taking_orders_first() -> None:
    """The second signal: the tick budgets hold the queue back in the socket, where the
    tick's order count never sees it; how long the parked frames waited does."""
    shed, delay_after = _flood(_waiting_limits(all_after_s=3600.0))
    assert shed["taking"] > 0 and shed["passive"] == 0
    assert delay_after == 0.0  # nothing parked any more: no wait, no shedding
    shed, _ = _flood(_waiting_limits(all_after_s=1e-9))
    assert shed["taking"] > 0 and shed["passive"] > 0


def test_can_take_judges_type_time_in_force_and_the_opposite_best_price() -> None:
    exchange = Exchange(EngineConfig(risk_checks=False))
    venue = Venue(exchange, list_all(exchange, [perpetual("BTC")]))
    maker = exchange.create_account()
    assert exchange.deposit(maker, 10**13).accepted
    instrument = venue.catalog.by_name[INSTRUMENT].instrument

    def order(
        side: int, price: int, order_type: str = "limit", tif: str = "gtc", flags: int = 0
    ) -> PlaceOrder:
        return PlaceOrder(maker, instrument, side, 10, price, order_type, tif, flags)

    state = lambda: exchange.engine.state  # noqa: E731  (read after each change)
    # an empty book: only market / IOC / FOK can take
    assert not can_take(order(Side.BUY, 10**9), state())
    assert can_take(order(Side.BUY, 0, "market"), state())
    assert can_take(order(Side.SELL, 100, tif="ioc"), state())
    assert can_take(order(Side.SELL, 100, tif="fok"), state())
    list(venue.place_many([order(Side.SELL, ASK_TICKS), order(Side.BUY, BID_TICKS)]))
    assert can_take(order(Side.BUY, ASK_TICKS), state())
    assert not can_take(order(Side.BUY, ASK_TICKS - 50), state())
    assert can_take(order(Side.SELL, BID_TICKS), state())
    assert not can_take(order(Side.SELL, BID_TICKS + 50), state())
    assert not can_take(order(Side.BUY, ASK_TICKS, flags=OrderFlag.POST_ONLY), state())
    shedder = Shedder(exchange, taking_at=4, all_at=8, taking_after_s=0.02, all_after_s=0.05)
    assert shedder.check(order(Side.BUY, ASK_TICKS), 4).code == 10047  # type: ignore[union-attr]
    assert shedder.check(order(Side.BUY, BID_TICKS), 4) is None
    assert shedder.check(order(Side.BUY, BID_TICKS), 0, 0.049) is None
    assert shedder.check(order(Side.BUY, BID_TICKS), 8).code == 10040  # type: ignore[union-attr]
    assert shedder.check(order(Side.BUY, BID_TICKS), 0, 0.05).code == 10040  # type: ignore[union-attr]
    closing = order(Side.SELL, BID_TICKS, flags=OrderFlag.REDUCE_ONLY)
    assert shedder.check(closing, 10**6) is None  # reduce-only: never shed
    assert shedder.shed == {"taking": 1, "passive": 2}


def test_shed_codes_map_to_retryable_ccxt_exceptions() -> None:
    """ccxt maps by the exact code: shed orders raise retryable network errors, not
    InvalidOrder (the client should back off and retry, not give up)."""
    import ccxt

    exact = ccxt.deribit().exceptions  # (deribit: one flat table of exact codes)
    assert exact["10047"] is ccxt.DDoSProtection
    assert exact["10040"] is ccxt.ExchangeNotAvailable
    assert issubclass(ccxt.DDoSProtection, ccxt.NetworkError)
    assert issubclass(ccxt.ExchangeNotAvailable, ccxt.NetworkError)
