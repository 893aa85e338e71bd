"""Batched order entry: a tick's orders placed with one engine call answer exactly as the
same frames handled one by one (replies, order records, trades, engine state), in arrival
order per connection with each reply before the notifications it caused; the shortcut of
``prepare_place`` agrees with the full parameter checks, and its memoised conversions with
the checked ones; order and trade objects equal plain field-by-field builds; WebSocket
frames are encoded per RFC 6455."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import numpy as np
import orjson
import pytest

from derivex.core.config import EngineConfig
from derivex.core.records import Side
from derivex.exchange import Exchange
from derivex.gateway import KeyStore, Venue, shapes
from derivex.gateway.auth import Authenticator, Session
from derivex.gateway.channels import Hub
from derivex.gateway.connection import text_frames
from derivex.gateway.errors import RpcError
from derivex.gateway.listing import list_all, perpetual
from derivex.gateway.methods import Context
from derivex.gateway.private_api import prepare_place
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.rpc import Dispatcher

INSTRUMENT = "BTC_USDC-PERPETUAL"
NOW_NS = 1_795_000_000_000_000_000
VOLATILE = ("usIn", "usOut", "usDiff", "creation_timestamp", "last_update_timestamp", "timestamp")


class FakeConnection:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.frames: list[bytes] = []
        self.held: list[bytes] | None = None

    def hold(self) -> None:
        self.held = []

    def send(self, data: bytes) -> None:
        (self.frames if self.held is None else self.held).append(data)

    def reply(self, data: bytes) -> None:
        held, self.held = self.held or [], None
        self.frames.append(data)
        self.frames.extend(held)


def _dispatcher() -> tuple[Dispatcher, list[Session]]:
    # a fixed clock: one by one, every command would otherwise get its own time stamp
    exchange = Exchange(EngineConfig(risk_checks=False), clock=lambda: NOW_NS)
    venue = Venue(exchange, list_all(exchange, [perpetual("BTC")]))
    keys = KeyStore(None)
    sessions = []
    for _ in range(3):
        account = exchange.create_account()
        exchange.deposit(account, 10**13)
        sessions.append(Session(keys.create(account)))
    limiter = RateLimiter(capacity=1e18, refill_per_s=1e18)
    return Dispatcher(venue, Authenticator(keys), limiter=limiter), sessions


def _frames(seed: int, count: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    frames = []
    for k in range(count):
        params: dict[str, Any] = {
            "instrument_name": INSTRUMENT,
            "amount": rng.choice(["0.01", "0.02", 0.03, "0.015", "x"]),
            "type": rng.choice(["limit", "limit", "market", "stop"]),
        }
        if rng.random() < 0.9:
            params["price"] = rng.choice(["60000", "60001", 60002, "60000.5", "59999"])
        if rng.random() < 0.2:
            params["time_in_force"] = rng.choice(["immediate_or_cancel", "fill_or_kill"])
        if rng.random() < 0.1:
            params["post_only"] = True
        if rng.random() < 0.1:
            params["label"] = f"l{k}"
        method = rng.choice(
            [
                "private/buy",
                "private/sell",
                "private/buy",
                "private/sell",
                "private/get_open_orders_by_instrument",
            ]
        )
        if method == "private/get_open_orders_by_instrument":  # its own parameters only
            params = {"instrument_name": INSTRUMENT}
        frames.append(
            (
                rng.randrange(3),
                orjson.dumps({"jsonrpc": "2.0", "id": k, "method": method, "params": params}),
            )
        )
    return frames


def _clean(frame: bytes) -> Any:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(orjson.loads(frame))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_orders_answer_as_one_by_one(seed: int) -> None:
    frames = _frames(seed, 300)
    one, one_sessions = _dispatcher()
    expected: list[list[Any]] = [[], [], []]
    for who, frame in frames:
        expected[who].append(_clean(one.frame(frame, one_sessions[who], None, "ws")[0]))

    batched, sessions = _dispatcher()
    connections = [FakeConnection(session) for session in sessions]
    rng = random.Random(seed)

    async def feed() -> None:
        for who, frame in frames:
            answer = batched.offer(frame, sessions[who], connections[who], "ws")
            if answer is not None:
                connections[who].reply(answer[0])
            if rng.random() < 0.1:
                await asyncio.sleep(0)  # the end of a tick: the queued batch is placed
        await asyncio.sleep(0)

    asyncio.run(feed())
    assert not batched._queued
    for who in range(3):
        assert [_clean(f) for f in connections[who].frames] == expected[who], who
    assert batched.venue.exchange.engine.state_hash() == one.venue.exchange.engine.state_hash()
    assert {i: (r.state, r.filled_lots) for i, r in batched.venue.closed.items()} == {
        i: (r.state, r.filled_lots) for i, r in one.venue.closed.items()
    }


@pytest.mark.parametrize(
    "params",
    [
        {"instrument_name": INSTRUMENT, "amount": "0.01", "price": "60000"},
        {"instrument_name": INSTRUMENT, "amount": 0.01, "price": 60000, "type": "limit"},
        {"instrument_name": INSTRUMENT, "amount": "0.01", "type": "market"},
        {"instrument_name": INSTRUMENT, "amount": "0.01", "price": "60000.5"},
        {"instrument_name": INSTRUMENT, "amount": "0.001", "price": "60000"},
        {"instrument_name": INSTRUMENT, "amount": True, "price": "60000"},
        {"instrument_name": INSTRUMENT, "amount": "1" * 65, "price": "60000"},
        {"instrument_name": INSTRUMENT, "amount": "0.01"},
        {"instrument_name": INSTRUMENT, "amount": "0.01", "price": None},
        {"instrument_name": "NOPE", "amount": "0.01", "price": "60000"},
        {"instrument_name": 5, "amount": "0.01", "price": "60000"},
        {"instrument_name": INSTRUMENT, "amount": "0.01", "price": "6e4", "type": None},
        {"instrument_name": INSTRUMENT, "amount": "0.01", "price": "60000", "type": "stop"},
    ],
)
def test_prepare_shortcut_agrees_with_full_checks(params: dict[str, Any]) -> None:
    dispatcher, sessions = _dispatcher()
    ctx = Context(dispatcher.venue, dispatcher.auth, sessions[0])

    def outcome(values: dict[str, Any]) -> Any:
        try:
            return prepare_place(ctx, values, Side.BUY)
        except RpcError as error:
            return error.to_json()

    # an extra key no order uses sends the same request down the full path
    assert outcome(params) == outcome({**params, "reduce_only": False})


def test_text_frames() -> None:
    assert text_frames([b"a" * 125]) == b"\x81\x7d" + b"a" * 125
    assert text_frames([b"a" * 126]) == b"\x81\x7e\x00\x7e" + b"a" * 126
    assert text_frames([b"a" * 65536])[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert text_frames([]) == b""


# ---- the order path's shortcuts against plain builds ----


def _plain_order(record: Any, spec: Any) -> dict[str, Any]:
    """Deribit's order object built field by field (what ``shapes.order``'s template
    copy and inlined conversions must equal)."""
    data = {
        "order_id": str(record.order_id),
        "instrument_name": spec.name,
        "direction": "buy" if record.side == Side.BUY else "sell",
        "order_type": record.order_type,
        "order_state": record.state,
        "amount": spec.amount(record.amount_lots),
        "filled_amount": spec.amount(record.filled_lots),
        "price": (
            spec.price(record.price_ticks) if record.order_type != "market" else "market_price"
        ),
        "average_price": (
            spec.price(1) * (record.traded_value / record.filled_lots)
            if record.filled_lots
            else 0.0
        ),
        "creation_timestamp": record.created_ms,
        "last_update_timestamp": record.updated_ms,
        "time_in_force": record.time_in_force,
        "post_only": record.post_only,
        "reject_post_only": record.reject_post_only,
        "reduce_only": record.reduce_only,
        "label": record.label,
        "commission": record.fee_units / 1_000_000,
        "max_show": spec.amount(record.amount_lots),
        "api": True,
        "web": False,
        "is_liquidation": False,
        "replaced": record.replaced,
        "quote": record.quote,
        "mmp": False,
        "risk_reducing": False,
    }
    if record.cancel_reason:
        data["cancel_reason"] = record.cancel_reason
    return data


def _plain_user_trade(trade: Any, account: int, venue: Venue) -> dict[str, Any]:
    """``public_trade`` updated with the account's side of it (the one-literal
    ``shapes.user_trade`` must equal it)."""
    spec = venue.catalog.by_id[trade.instrument]
    taker = trade.taker_account == account
    order_id = trade.taker_order if taker else trade.maker_order
    record = venue.orders.get(order_id) or venue.closed.get(order_id)
    data = shapes.public_trade(trade, spec)
    data.update(
        direction="buy"
        if (trade.direction if taker else Side(1 - trade.direction)) == Side.BUY
        else "sell",
        order_id=str(order_id),
        order_type=record.order_type if record is not None else "limit",
        liquidity="T" if taker else "M",
        fee=(trade.taker_fee_units if taker else trade.maker_fee_units) / 1_000_000,
        fee_currency="USDC",
        state=record.state if record is not None else "filled",
        self_trade=False,
        reduce_only=record.reduce_only if record is not None else False,
        post_only=record.post_only if record is not None else False,
        label=record.label if record is not None else "",
        matching_id=None,
        api=True,
    )
    return data


@pytest.mark.parametrize("seed", [4, 5])
def test_order_and_trade_objects_equal_plain_builds(seed: int) -> None:
    batched, sessions = _dispatcher()
    connections = [FakeConnection(session) for session in sessions]

    async def feed() -> None:
        for k, (who, frame) in enumerate(_frames(seed, 400)):
            answer = batched.offer(frame, sessions[who], connections[who], "ws")
            if answer is not None:
                connections[who].reply(answer[0])
            if k % 7 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(feed())
    venue = batched.venue
    records = [*venue.orders.values(), *venue.closed.values()]
    assert len(records) > 100 and any(r.filled_lots for r in records)
    assert any(r.label for r in records) and any(r.cancel_reason for r in records)
    for record in records:
        spec = venue.catalog.by_id[record.instrument]
        for _ in range(2):  # the template found, then the record's own
            assert orjson.dumps(shapes.order(record, venue.catalog)) == orjson.dumps(
                _plain_order(record, spec)
            )
    trades = [t for history in venue.user_trades.values() for t in history]
    assert trades
    for trade in trades:
        for account in (trade.maker_account, trade.taker_account):
            assert orjson.dumps(shapes.user_trade(trade, account, venue)) == orjson.dumps(
                _plain_user_trade(trade, account, venue)
            )


@pytest.mark.parametrize(
    "value",
    [
        "60000",
        "60000.5",
        "60000.005",
        60000,
        60000.0,
        0.1,
        "0.01",
        "0.00005",
        1,
        "1",
        "x",
        "nan",
        "-1",
        "1e3",
        -0.0,
    ],
)
def test_plain_conversions_equal_the_checked_ones(value: Any) -> None:
    spec = list_all(Exchange(EngineConfig(risk_checks=False)), [perpetual("BTC")]).get(INSTRUMENT)

    def outcome(convert: Any) -> Any:
        try:
            return convert(value)
        except RpcError as error:
            return error.to_json()

    for _ in range(2):  # computed, then memoised
        assert outcome(spec.plain_ticks) == outcome(spec.to_ticks)
        assert outcome(spec.plain_lots) == outcome(spec.to_lots)


@pytest.mark.parametrize("seed", [6, 7])
def test_merged_batch_updates_equal_the_per_order_ones(seed: int) -> None:
    # a listener that may take merged updates sees, per batch, the union of what one that
    # may not sees order by order; change ids, hub and venue state come out the same
    seen: list[dict[str, Any]] = []
    for mergeable in (False, True):
        dispatcher, sessions = _dispatcher()
        venue = dispatcher.venue
        hub = Hub(venue)
        updates: list[Any] = []
        calls = [0]

        def record(update: Any, updates: list[Any] = updates, calls: list[int] = calls) -> None:
            calls[0] += 1
            updates.append(
                (
                    set(update.books),
                    set(update.accounts),
                    set(update.marks),
                    [t.trade_id for t in update.trades],
                    set(update.orders),
                )
            )

        venue.listeners.append(record)
        if mergeable:
            venue.mergeable[record] = lambda: True
        connections = [FakeConnection(session) for session in sessions]

        async def feed(
            connections: list[FakeConnection] = connections,
            dispatcher: Dispatcher = dispatcher,
            sessions: list[Session] = sessions,
        ) -> None:
            for k, (who, frame) in enumerate(_frames(seed, 300)):
                answer = dispatcher.offer(frame, sessions[who], connections[who], "ws")
                if answer is not None:
                    connections[who].reply(answer[0])
                if k % 9 == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(0)

        asyncio.run(feed())
        seen.append(
            {
                "books": set().union(*(u[0] for u in updates)),
                "accounts": set().union(*(u[1] for u in updates)),
                "trades": [i for u in updates for i in u[3]],
                "orders": set().union(*(u[4] for u in updates)),
                "change_ids": dict(venue.change_ids),
                "calls": calls[0],
                "dirty": (hub._dirty_books, hub._dirty_tickers, hub._dirty_accounts),
                "replies": [[_clean(f) for f in c.frames] for c in connections],
                "state": venue.exchange.engine.state_hash(),
                "closed": {i: (r.state, r.filled_lots) for i, r in venue.closed.items()},
            }
        )
    per_order, merged = seen
    assert per_order["trades"] and merged["calls"] < per_order["calls"]
    for key in (
        "books",
        "accounts",
        "trades",
        "orders",
        "change_ids",
        "dirty",
        "replies",
        "state",
        "closed",
    ):
        assert merged[key] == per_order[key], key


def test_closed_orders_keep_the_latest_in_closing_order() -> None:
    exchange = Exchange(EngineConfig(risk_checks=False), clock=lambda: NOW_NS)
    venue = Venue(exchange, list_all(exchange, [perpetual("BTC")]), closed_orders=5)
    spec = venue.catalog.get(INSTRUMENT)
    accounts = [exchange.create_account() for _ in range(2)]
    for account in accounts:
        exchange.deposit(account, 10**13)
    closing: list[int] = []
    for k in range(12):  # a resting sell, then a buy filling it: both close, maker first
        sell, _ = venue.place(accounts[0], spec, "sell", 100, 6_000_000)
        buy, _ = venue.place(accounts[1], spec, "buy", 100, 6_000_000)
        closing += [sell.order_id, buy.order_id]
        assert list(venue.closed) == closing[-5:], k
    assert all(record.state == "filled" for record in venue.closed.values())


@pytest.mark.parametrize("seed", [5, 6])
def test_frames_of_another_worker_give_the_same_records(seed: int) -> None:
    """``Venue.apply_frame`` (a gateway worker walking a batch sequenced by another one)
    builds the records the submitting venue built: type, time in force and flags come
    from the command records; only the label stays with the submitter."""
    exchange = Exchange(EngineConfig(risk_checks=False), clock=lambda: NOW_NS)
    venue = Venue(exchange, list_all(exchange, [perpetual("BTC")]))
    mirror_exchange = Exchange(EngineConfig(risk_checks=False), clock=lambda: NOW_NS)
    mirror = Venue(mirror_exchange, list_all(mirror_exchange, [perpetual("BTC")]))
    accounts = []
    for _ in range(3):
        accounts.append(exchange.create_account())
        exchange.deposit(accounts[-1], 10**13)
        mirror_exchange.create_account()
        mirror_exchange.deposit(accounts[-1], 10**13)
    frames: list[tuple[np.ndarray, np.ndarray]] = []
    submit = exchange.submit

    def recording(commands: np.ndarray) -> np.ndarray:
        events = submit(commands)
        frames.append((commands.copy(), events.copy()))
        return events

    exchange.submit = recording  # type: ignore[method-assign]
    spec = venue.catalog.get(INSTRUMENT)
    rng = random.Random(seed)
    for k in range(300):
        kind = rng.choice(["limit", "limit", "market"])
        with contextlib.suppress(RpcError):  # rejects (post-only crossing, FOK) are fine
            venue.place(
                rng.choice(accounts),
                spec,
                rng.choice(["buy", "sell"]),
                rng.randint(1, 3),
                rng.choice([6_000_000, 6_000_050, 5_999_950]),
                order_type=kind,
                time_in_force=rng.choice(["gtc", "ioc", "fok"]),
                post_only=kind == "limit" and rng.random() < 0.2,
                reduce_only=rng.random() < 0.1,
                label=f"l{k}",
            )
    for commands, events in frames:
        replayed = mirror_exchange.engine.process(commands)
        assert replayed.tobytes() == events.tobytes()
        mirror.apply_frame(commands, events)

    def records(v: Venue) -> list[tuple[Any, ...]]:
        return [
            (
                r.order_id,
                r.account,
                r.side,
                r.order_type,
                r.time_in_force,
                r.post_only,
                r.reduce_only,
                r.price_ticks,
                r.amount_lots,
                r.filled_lots,
                r.fee_units,
                r.state,
                r.cancel_reason,
            )
            for r in [*v.orders.values(), *v.closed.values()]
        ]

    assert sorted(records(mirror)) == sorted(records(venue))
    assert len(records(venue)) > 100  # the rest were rejected (never recorded)
    assert {r[4] for r in records(venue)} == {
        "good_til_cancelled",
        "immediate_or_cancel",
        "fill_or_kill",
    }
    assert [t.trade_id for t in mirror.public_trades[spec.instrument]] == [
        t.trade_id for t in venue.public_trades[spec.instrument]
    ]
