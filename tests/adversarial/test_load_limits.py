"""Resource limits (issue 12, finding 8): a client that never reads is closed as a slow
consumer while the others keep being answered; public methods are rate-limited per
connection and per address; connections per address are capped; a connection that sends
no complete request head, or idles, is closed. No wall-clock assertions: every wait is
bounded by ``GUARD_S`` and the assertions count replies and read close reasons."""

from __future__ import annotations

import socket

import orjson
from websockets.sync.client import connect

from derivex.core.records import Side
from derivex.gateway.limits import Limits
from derivex.gateway.venue import PlaceOrder
from tests.adversarial.load_client import (
    GUARD_S,
    INSTRUMENT,
    RawWebSocket,
    Served,
    close_reason,
    request,
    serving,
    wait_for,
)

OPEN = Limits(
    max_connections_per_address=0, public_rate_per_connection=0, public_rate_per_address=0
)


def _deep_book(served: Served, levels: int = 1500) -> None:
    """``levels`` bid levels: a depth-10000 book reply is then tens of kilobytes."""
    accounts = [served.account_key().account for _ in range(3)]

    def place() -> int:
        venue = served.gateway.venue
        spec = venue.catalog.by_name[INSTRUMENT]
        tick = spec.tick_size_ticks
        orders = [
            PlaceOrder(accounts[k % 3], spec.instrument, Side.BUY, 1, tick * (100_000 - k))
            for k in range(levels)
        ]
        return sum(1 for result in venue.place_many(orders) if not isinstance(result, Exception))

    assert served.thread.call(place) == levels


def _closing(served: Served) -> bool:
    """Every connection left (the slow one alone) is closing or gone."""
    return served.thread.call(lambda: all(c.closing for c in served.gateway.connections))


def _served_book_bytes(port: int) -> int:
    with connect(f"ws://127.0.0.1:{port}/ws/api/v2", max_size=2**24) as ws:
        ws.send(
            request(1, "public/get_order_book", instrument_name=INSTRUMENT, depth=10_000).decode()
        )
        return len(ws.recv(timeout=GUARD_S))


def _others_are_answered(port: int, count: int) -> int:
    """``count`` requests one at a time on a fresh connection; how many were answered."""
    answered = 0
    with connect(f"ws://127.0.0.1:{port}/ws/api/v2", max_size=2**24) as ws:
        for k in range(count):
            ws.send(
                request(k, "public/get_order_book", instrument_name=INSTRUMENT, depth=5).decode()
            )
            reply = orjson.loads(ws.recv(timeout=GUARD_S))
            answered += reply.get("id") == k and "result" in reply
    return answered


def _reader_limits(**limits: float) -> Limits:
    """No rate limits and no connection cap (one client floods), writes paused past 64 KiB."""
    base: dict[str, float] = {
        "max_connections_per_address": 0,
        "public_rate_per_connection": 0,
        "public_rate_per_address": 0,
        "pause_reading_bytes": 64 << 10,
    }
    return Limits(**{**base, **limits})  # type: ignore[arg-type]


def _book_flood(port: int, count: int) -> RawWebSocket:
    """A client that pipelines ``count`` deep ``get_order_book`` requests and reads nothing."""
    slow = RawWebSocket(port, receive_buffer=4096)
    slow.send(
        [
            request(k, "public/get_order_book", instrument_name=INSTRUMENT, depth=10_000)
            for k in range(count)
        ]
    )
    return slow


def test_non_reading_client_is_closed_with_reason_while_others_are_answered() -> None:
    limits = _reader_limits(
        max_outbound_bytes=512 << 10,
        send_stall_s=0,
        # 256 KiB reads: one read brings ~2000 requests, whose replies overflow the outbound
        # limit (with the default 8 KiB reads the connection is paused, not read, before its
        # queue reaches the limit: see the next test for how such a reader ends)
        ws_read_bytes=0,
    )
    with serving(limits) as served:
        _deep_book(served)
        reply_bytes = _served_book_bytes(served.port)
        assert reply_bytes > 20_000
        sent = 2000  # ~80 MB of replies asked for, never read
        slow = _book_flood(served.port, sent)
        assert slow.status == 101
        # meanwhile the others are answered, every request
        assert _others_are_answered(served.port, 200) == 200
        wait_for(lambda: _closing(served), "the slow consumer is closed")
        # what the slow one reads at last: some replies, then the documented close
        frames = list(slow.frames())
        slow.close()
        wait_for(
            lambda: served.thread.call(lambda: len(served.gateway.connections)) == 0,
            "the slow consumer's connection is dropped",
        )
        replies = [f for f in frames if f[0] == 0x1]
        assert frames and frames[-1][0] == 0x8, "no close frame"
        code, reason = close_reason(frames[-1][1])
        assert code == 1008
        assert reason.startswith("slow consumer: more than 524288 bytes unread")
        assert len(replies) < sent
        # a bound on what the server held for it: the limit, the socket buffer, one write
        assert len(replies) * reply_bytes < 64 << 20


def test_non_reading_client_is_read_in_small_pieces_and_then_not_at_all() -> None:
    """With the default read size (``ws_read_bytes``, 8 KiB) a client that pipelines
    expensive requests and never reads is read a piece at a time: once its socket's write
    buffer is full it is not read any more, and what the server holds for it stays under the
    outbound limit (it ends by ``send_stall_s``: the next test)."""
    limits = _reader_limits(max_outbound_bytes=512 << 10, send_stall_s=0)
    assert limits.ws_read_bytes == 8192
    with serving(limits) as served:
        _deep_book(served)
        slow = _book_flood(served.port, 2000)
        assert _others_are_answered(served.port, 200) == 200

        def state() -> list[tuple[int, bool, bool, int, int]]:
            return [
                (
                    c.transport.max_size,
                    c.writes_paused,
                    c.transport.is_reading(),
                    c.outbox_bytes,
                    len(c.parked),
                )
                for c in served.gateway.connections
            ]

        wait_for(
            lambda: any(paused for _, paused, *_ in served.thread.call(state)),
            "the non-reading client's writes are paused",
        )
        [(read_size, paused, reading, held, parked)] = served.thread.call(state)
        assert read_size == 8192
        assert paused and not reading
        assert held <= limits.max_outbound_bytes
        assert parked <= 8192 // 50  # at most one read's frames (each ~100 bytes) wait
        slow.close()


def test_stalled_reader_is_closed_after_send_stall_and_was_not_read_meanwhile() -> None:
    limits = _reader_limits(max_outbound_bytes=1 << 30, send_stall_s=0.5)
    with serving(limits) as served:
        _deep_book(served)
        slow = _book_flood(served.port, 300)
        wait_for(
            lambda: served.thread.call(
                lambda: any(c.writes_paused for c in served.gateway.connections)
            ),
            "writes to the slow consumer pause",
        )
        assert _others_are_answered(served.port, 50) == 50
        wait_for(lambda: _closing(served), "the stalled connection is closed")
        frames = list(slow.frames())
        slow.close()
        wait_for(
            lambda: served.thread.call(lambda: len(served.gateway.connections)) == 0,
            "the stalled connection is dropped",
        )
        assert frames[-1][0] == 0x8
        assert close_reason(frames[-1][1]) == (1008, "slow consumer: replies not read for 0.5 s")


def test_public_rate_limits_per_connection_then_per_address() -> None:
    limits = Limits(
        public_rate_per_connection=1e-6,
        public_burst_per_connection=5,
        public_rate_per_address=1e-6,
        public_burst_per_address=8,
    )
    with serving(limits) as served:
        key = served.account_key()
        with connect(f"ws://127.0.0.1:{served.port}/ws/api/v2") as first:
            first.send(
                request(
                    0,
                    "public/auth",
                    grant_type="client_credentials",
                    client_id=key.client_id,
                    client_secret=key.client_secret,
                ).decode()
            )
            assert "result" in orjson.loads(first.recv(timeout=GUARD_S))
            codes = []
            for k in range(1, 8):
                first.send(request(k, "public/get_time").decode())
                reply = orjson.loads(first.recv(timeout=GUARD_S))
                codes.append(reply["error"]["code"] if "error" in reply else 0)
            assert codes == [0, 0, 0, 0, 10028, 10028, 10028]  # auth + 4: the burst of 5
            first.send(request(9, "public/get_time").decode())
            refused = orjson.loads(first.recv(timeout=GUARD_S))["error"]
            assert refused["data"]["reason"] == "public rate limit per connection"
            # private methods are not charged to the public budget
            first.send(request(10, "private/get_open_orders_by_currency", currency="USDC").decode())
            assert "result" in orjson.loads(first.recv(timeout=GUARD_S))
        # the address had 8: 5 spent above, 3 left for a second connection
        with connect(f"ws://127.0.0.1:{served.port}/ws/api/v2") as second:
            replies = []
            for k in range(5):
                second.send(request(k, "public/get_time").decode())
                replies.append(orjson.loads(second.recv(timeout=GUARD_S)))
        assert ["result" in r for r in replies] == [True, True, True, False, False]
        assert replies[3]["error"]["code"] == 10028
        assert replies[3]["error"]["data"]["reason"] == "public rate limit per address"
        # and over HTTP, from the same address
        with socket.create_connection(("127.0.0.1", served.port), timeout=GUARD_S) as sock:
            sock.sendall(
                b"GET /api/v2/public/get_time HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            response = _read_all(sock)
        assert b"10028" in response and b"per address" in response


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def test_connections_per_address_are_capped() -> None:
    with serving(Limits(max_connections_per_address=3)) as served:
        held = [RawWebSocket(served.port) for _ in range(3)]
        assert [ws.status for ws in held] == [101, 101, 101]
        with socket.create_connection(("127.0.0.1", served.port), timeout=GUARD_S) as sock:
            sock.sendall(b"GET /api/v2/public/get_time HTTP/1.1\r\nHost: a\r\n\r\n")
            refused = _read_all(sock)
        assert refused.startswith(b"HTTP/1.1 429")
        assert b"too many connections from this address (limit 3)" in refused
        assert served.thread.call(lambda: served.gateway.admission.refused) == 1
        held.pop().close()
        wait_for(
            lambda: (
                served.thread.call(lambda: served.gateway.admission.open.get("127.0.0.1", 0)) == 2
            ),
            "a closed connection frees its place",
        )
        again = RawWebSocket(served.port)
        assert again.status == 101
        for ws in [*held, again]:
            ws.close()


def test_head_and_idle_timeouts_close_connections() -> None:
    limits = Limits(header_timeout_s=0.3, idle_timeout_s=0.5)
    with serving(limits) as served:
        silent = socket.create_connection(("127.0.0.1", served.port), timeout=GUARD_S)
        partial = socket.create_connection(("127.0.0.1", served.port), timeout=GUARD_S)
        partial.sendall(b"GET /api/v2/public/get_time HTTP/1.1\r\nHost: a\r\n")
        idle = socket.create_connection(("127.0.0.1", served.port), timeout=GUARD_S)
        idle.sendall(b"GET /api/v2/public/get_time HTTP/1.1\r\nHost: a\r\n\r\n")
        # each is closed by the server: the reads end (a bound, not a timing)
        assert _read_all(silent) == b""
        assert _read_all(partial) == b""
        answered = _read_all(idle)  # the answer, then the keep-alive connection is closed
        assert answered.startswith(b"HTTP/1.1 200") and b'"result"' in answered
        for sock in (silent, partial, idle):
            sock.close()
        assert served.thread.call(lambda: served.gateway.admission.timed_out) == 2
        wait_for(
            lambda: served.thread.call(lambda: served.gateway.admission.open) == {},
            "every connection released",
        )
        # a WebSocket past its upgrade is not subject to the head timeout
        with connect(f"ws://127.0.0.1:{served.port}/ws/api/v2") as ws:
            for k in range(3):
                ws.send(request(k, "public/get_time").decode())
                assert "result" in orjson.loads(ws.recv(timeout=GUARD_S))


def test_depth_is_read_from_the_levels_and_equals_the_orders_walk() -> None:
    """A book request costs O(levels returned), not O(orders in the book) (a depth-10000
    request walked every order), with the same answer as walking the orders."""
    import random

    from derivex.core.config import EngineConfig
    from derivex.core.state import book_side
    from derivex.exchange import Exchange
    from derivex.gateway.listing import list_all, perpetual
    from derivex.gateway.venue import Venue

    exchange = Exchange(EngineConfig(risk_checks=False))
    venue = Venue(exchange, list_all(exchange, [perpetual("BTC")]))
    instrument = venue.catalog.by_name[INSTRUMENT].instrument
    accounts = [exchange.create_account() for _ in range(3)]
    for account in accounts:
        assert exchange.deposit(account, 10**13).accepted
    rng = random.Random(12)
    orders = [
        PlaceOrder(
            rng.choice(accounts),
            instrument,
            side,
            rng.randrange(1, 50),
            50 * (100_000 + (-1 if side == Side.BUY else 1) * rng.randrange(1, 300)),
        )
        for side in (Side.BUY, Side.SELL)
        for _ in range(1500)
    ]
    list(venue.place_many(orders))
    for levels in (0, 1, 7, 10_000):
        depth = exchange.depth(instrument, levels)
        for side, got in ((Side.BUY, depth.bids), (Side.SELL, depth.asks)):
            walked = [
                (price, sum(o[2] for o in resting), len(resting))
                for price, resting in book_side(exchange.engine.state, instrument, side)[:levels]
            ]
            assert got == walked and (levels == 0 or got)


def test_limits_are_set_from_the_command_line_and_refuse_unknown_names() -> None:
    from typer.testing import CliRunner

    from derivex.cli import app

    result = CliRunner().invoke(app, ["serve", "--limit", "max_conections_per_address=3"])
    assert result.exit_code == 2
    assert "unknown limit 'max_conections_per_address'" in result.output
    result = CliRunner().invoke(app, ["serve", "--limit", "header_timeout_s=soon"])
    assert result.exit_code == 2 and "'soon' is not a number" in result.output
    limits = Limits.from_options(
        ["max_connections_per_address=3", "shed_all_at=50", "send_stall_s=2.5"]
    )
    assert (limits.max_connections_per_address, limits.shed_all_at, limits.send_stall_s) == (
        3,
        50,
        2.5,
    )


def test_docstring_examples_of_the_limits_modules() -> None:
    import doctest

    from derivex.gateway import limits, ratelimit, turns

    for module in (limits, ratelimit, turns):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_a_stalled_request_body_is_answered_408_and_disconnected() -> None:
    with serving(Limits(header_timeout_s=0.3)) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=GUARD_S) as sock:
            sock.sendall(
                b"POST /api/v2 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json"
                b'\r\nContent-Length: 100\r\n\r\n{"method":'
            )
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"request body not received" in answer
        # the next client is served as usual
        with connect(f"ws://127.0.0.1:{served.port}/ws/api/v2") as ws:
            ws.send(request(1, "public/get_time").decode())
            assert "result" in orjson.loads(ws.recv(timeout=GUARD_S))


def test_heartbeat_closes_a_websocket_that_does_not_answer_pings_only() -> None:
    with serving(Limits(ws_heartbeat_s=0.3)) as served:
        silent = RawWebSocket(served.port)  # never reads, so never answers a ping
        assert silent.status == 101
        with connect(f"ws://127.0.0.1:{served.port}/ws/api/v2") as live:  # answers pings
            wait_for(
                lambda: served.thread.call(lambda: len(served.gateway.connections)) == 1,
                "the silent WebSocket is closed",
            )
            for k in range(3):  # the live one, pinged all along, still works
                live.send(request(k, "public/get_time").decode())
                assert "result" in orjson.loads(live.recv(timeout=GUARD_S))
        silent.close()
