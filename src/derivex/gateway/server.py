"""The HTTP and WebSocket server (aiohttp, chosen by measurement: see
bench/results/gateway.json): Deribit's REST paths, JSON-RPC over WebSocket and POST, and
Prometheus metrics, on one port.

Routes::

    GET|POST /api/v2/{public|private}/{method}   REST (ccxt: GET with a query string)
    POST     /api/v2                             a JSON-RPC body
    GET      /ws/api/v2                          WebSocket JSON-RPC and subscriptions
    GET      /metrics                            Prometheus text format

Everything runs on one event loop, which is the venue's only caller. Orders arriving over
WebSockets in one loop tick, from any connection, are placed with one engine call (see
``Dispatcher.offer``); replies and notifications queued in a tick leave each socket in one
write. ``GatewayThread`` runs
a server on its own loop in a background thread (tests, embedding).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import inspect
import struct
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from time import perf_counter
from typing import Any, TypeVar

import orjson
from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from prometheus_client import CONTENT_TYPE_LATEST

from derivex.core import query
from derivex.gateway.auth import Authenticator, Session, bearer_token
from derivex.gateway.auth_limits import AuthLimits
from derivex.gateway.channels import Hub
from derivex.gateway.durability import DurabilityGate, DurabilityTimeout, outcome_unknown_frames
from derivex.gateway.errors import INVALID_REQUEST, PARSE_ERROR, RpcError
from derivex.gateway.keys import KEYS_POLL_S, KeyStore
from derivex.gateway.limits import Admission, Limits, Peer
from derivex.gateway.overload import Shedder
from derivex.gateway.oversight import watch
from derivex.gateway.pages import Pages
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.rpc import CANCELS, MAX_FRAME_BYTES, Dispatcher
from derivex.gateway.telemetry import Metrics, logger
from derivex.gateway.trace import TRACE, TracedParser
from derivex.gateway.turns import Turns
from derivex.gateway.venue import Venue

T = TypeVar("T")
HARD_FRAME_LIMIT = 4 << 20  # beyond this aiohttp closes the socket (1009)
GC_THRESHOLD = 1_000
#: how often (seconds) a thread holding the GIL is asked to hand it to one waiting for it
SWITCH_INTERVAL_S = 0.0001
REVOKED_NOTICE = orjson.dumps(
    {"jsonrpc": "2.0", "method": "session_closed", "params": {"reason": "credentials_revoked"}}
)
SLOW_CONSUMER = 1008  # WebSocket close code (policy violation) of a slow consumer


class Connection:
    """One WebSocket: its session (auth state) and the frames waiting to go out.

    Frames queued during one event-loop tick leave in ONE transport write at its end (one
    system call for a batch of replies and notifications, not one per frame). While a
    request is handled its connection is held (``hold``): the notifications it causes wait
    until its reply is queued (``reply``), so the reply goes out first.

    Slow consumers (``Limits``): once the socket's write buffer passes
    ``pause_reading_bytes`` (the transport's ``pause_writing``) nothing more is written and
    the client's requests are no longer read, until it drains the buffer; frames queued
    meanwhile wait here, and past ``max_outbound_bytes`` of them, or after
    ``send_stall_s`` paused, the connection is closed with code 1008 and the reason
    ``slow consumer: ...`` (written after what is buffered; the socket is aborted if that
    is not read within ``close_grace_s``)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        limits: Limits | None = None,
        peer: Peer | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.peer = peer
        self.session = Session(origin=origin_of(transport))
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        limits = limits or Limits()
        self.max_outbound_bytes = (
            limits.max_outbound_bytes if limits.max_outbound_bytes > 0 else 1 << 62
        )
        self.send_stall_s = limits.send_stall_s
        self.close_grace_s = limits.close_grace_s
        self.writes_paused = False
        self._stall: asyncio.TimerHandle | None = None
        # frames read beyond this tick's budgets (``turns.Turns``), and the budget
        self.parked: collections.deque[bytes] = collections.deque()
        self.tick = -1
        self.tick_frames = 0
        if peer is not None:
            peer.on_pause, peer.on_resume = self.pause, self.resume
        self._held: list[bytes] | None = None
        self._scheduled = False
        self.closing = False
        self._loop = asyncio.get_running_loop()
        self._heartbeat: asyncio.Task[None] | None = None
        self._closer: asyncio.Future[Any] | None = None
        # group commit (durability.py): frames of each tick wait, tagged with the journal's
        # last seq then, until the flush covering it returns
        self.gate: DurabilityGate | None = None
        self._held_for_disk: collections.deque[tuple[int, list[bytes]]] = collections.deque()

    def send(self, data: bytes) -> None:
        """Queue a notification (non-blocking)."""
        if self.closing:
            return
        if self._held is not None:
            self._held.append(data)
            return
        self._queue(data)

    def reply(self, data: bytes) -> None:
        """Queue a request's reply, then the notifications held while it was handled."""
        held, self._held = self._held, None
        if self.closing:
            return
        if held is None and self._scheduled:
            self.outbox.append(data)  # ``_queue``'s common case: a write is already due
            self.outbox_bytes += len(data)
            if self.outbox_bytes > self.max_outbound_bytes:
                self.slow_consumer(f"more than {self.max_outbound_bytes} bytes unread")
            return
        self._queue(data)
        for frame in held or ():
            self._queue(frame)

    def hold(self) -> None:
        self._held = []

    def _queue(self, data: bytes) -> None:
        self.outbox.append(data)
        self.outbox_bytes += len(data)
        if self.outbox_bytes > self.max_outbound_bytes:
            self.slow_consumer(f"more than {self.max_outbound_bytes} bytes unread")
        elif not self._scheduled and not self.writes_paused:
            self._scheduled = True
            self._loop.call_soon(self.write_pending)

    def write_pending(self) -> None:
        """Write the queued frames now (one system call), unless the client is behind
        (writes paused: ``resume`` writes them)."""
        self._scheduled = False
        transport = self.transport
        if self.closing or self.ws.closed or transport is None or transport.is_closing():
            self.outbox.clear()
            self.outbox_bytes = 0
            return
        if self.writes_paused or not (self.outbox or self._held_for_disk):
            return
        frames, self.outbox, self.outbox_bytes = self.outbox, [], 0
        gate = self.gate
        if gate is not None:
            journal = gate.journal
            durable, held = journal.durable_seq, self._held_for_disk
            if held or durable < journal.last_seq:
                if frames:
                    held.append((journal.last_seq, frames))
                frames = []
                while held and held[0][0] <= durable:
                    frames += held.popleft()[1]
                if held:
                    gate.waiting[self] = None
                    kick = getattr(journal, "kick", None)
                    if kick is not None:  # (a worker: the watcher thread polls the disk)
                        kick()
                if not frames:
                    return
        transport.write(text_frames(frames))  # type: ignore[attr-defined]

    def expire_held(self) -> None:
        """The journal stalled (``DurabilityGate.timeout_s``): the replies held for the disk
        are answered 13888 now, error replies sent as they are; notifications keep waiting."""
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return
        now: list[bytes] = []
        still: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        for seq, frames in self._held_for_disk:
            sent, later = outcome_unknown_frames(frames)
            now += sent
            if later:
                still.append((seq, later))
        self._held_for_disk = still
        if still and self.gate is not None:
            self.gate.waiting[self] = None
        if now:
            transport.write(text_frames(now))  # type: ignore[attr-defined]

    def pause(self) -> None:
        """The socket's write buffer is full (``pause_writing``): stop writing and stop
        reading this client's requests until it drains; a slow consumer if it stays so
        for ``send_stall_s``."""
        self.writes_paused = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()  # type: ignore[attr-defined]
        if self.send_stall_s > 0 and self._stall is None:
            self._stall = self._loop.call_later(
                self.send_stall_s,
                self.slow_consumer,
                f"replies not read for {self.send_stall_s:g} s",
            )

    def resume(self) -> None:
        """The client drained its socket: write what waits and read its requests again."""
        self.writes_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return
        if not self.parked:
            transport.resume_reading()  # type: ignore[attr-defined]
        if self.outbox and not self._scheduled:
            self.write_pending()

    def slow_consumer(self, why: str) -> None:
        """Close as a slow consumer: drop what is queued, write the close frame (1008,
        ``slow consumer: why``) after what the socket holds, close; abort after
        ``close_grace_s`` if the client does not read it."""
        if self.closing:
            return
        self.stop()
        transport = self.transport
        logger().info("websocket closed: slow consumer", reason=why)
        if transport is None or transport.is_closing():
            return
        reason = f"slow consumer: {why}".encode()[:120]
        transport.write(
            bytes((0x88, 2 + len(reason)))  # type: ignore[attr-defined]
            + SLOW_CONSUMER.to_bytes(2, "big")
            + reason
        )
        # half-close (FIN after the buffered frames), and read again, discarding: a socket
        # closed with unread input resets the connection and the client would lose the
        # frames and the reason
        transport.write_eof()  # type: ignore[attr-defined]
        self.parked.clear()
        transport.resume_reading()  # type: ignore[attr-defined]
        self._loop.call_later(self.close_grace_s, transport.abort)  # type: ignore[attr-defined]

    def set_heartbeat(self, seconds: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if seconds > 0:
            self._heartbeat = asyncio.ensure_future(self._beat(seconds))

    async def _beat(self, seconds: int) -> None:
        data = orjson.dumps(
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
        )
        while True:
            await asyncio.sleep(seconds)
            self.send(data)

    def stop(self) -> None:
        self.closing = True
        self.outbox.clear()
        self.parked.clear()
        self.outbox_bytes = 0
        self._held_for_disk.clear()
        self.set_heartbeat(0)
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self.peer is not None:
            self.peer.on_pause = self.peer.on_resume = None

    def close(self, code: int, message: bytes) -> None:
        """Write what is queued, then close with ``code`` and ``message`` (the reason the
        client sees); nothing more is read or answered."""
        self.write_pending()
        self.stop()
        self._closer = asyncio.ensure_future(self.ws.close(code=code, message=message))


def origin_of(transport: asyncio.BaseTransport | None) -> str:
    """``host:port`` of the client end of a connection ("" if unknown): the origin that
    failed authentication attempts are counted against."""
    name = transport.get_extra_info("peername") if transport is not None else None
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) and len(name) >= 2 else ""


def text_frames(payloads: list[bytes]) -> bytes:
    """Server-to-client WebSocket text frames (final, unmasked, uncompressed: RFC 6455
    section 5.2), concatenated.

    >>> text_frames([b"hi", b""])
    b'\\x81\\x02hi\\x81\\x00'
    """
    parts: list[bytes] = []
    headers = _HEADERS
    for payload in payloads:
        size = len(payload)
        header = headers.get(size)
        if header is None:
            header = (
                bytes((0x81, size))
                if size < 126
                else _MEDIUM.pack(0x81, 126, size)
                if size < 65536
                else _LONG.pack(0x81, 127, size)
            )
            if size < 65536:
                headers[size] = header
        parts.append(header)
        parts.append(payload)
    return b"".join(parts)


_HEADERS: dict[int, bytes] = {}  # frame header by payload size (below 64 KiB), as met
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


class Gateway:
    """The server around one venue and one key store, within ``limits`` (``Limits()``: a
    public venue's defaults; see docs/limits.md)."""

    def __init__(
        self,
        venue: Venue,
        keys: KeyStore,
        *,
        limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
        flush_interval_s: float = 0.1,
        close_on_auth_failure: bool = True,
        auth_limits: AuthLimits | None = None,
        keys_poll_s: float = KEYS_POLL_S,
        token_key: bytes | None = None,
        spent_tokens: Any = None,
        limits: Limits | None = None,
    ) -> None:
        self.venue = venue
        self.limits = limits = limits or Limits()
        self.admission = Admission(limits)
        self.close_on_auth_failure = close_on_auth_failure
        self.keys = keys
        self.metrics = metrics or Metrics()
        # token_key: tokens any gateway worker of the run accepts (see ``auth``)
        self.auth = Authenticator(keys, limits=auth_limits, token_key=token_key, spent=spent_tokens)
        keys.on_revoke.append(self._revoked)
        self.hub = Hub(venue, on_publish=self.metrics.notifications.inc)
        self.limiter = (
            limiter
            if limiter is not None
            else RateLimiter.from_engine(venue.exchange.engine.config)
        )
        self.dispatcher = Dispatcher(venue, self.auth, self.hub, self.limiter, self.metrics)
        if limits.shed_taking_at > 0 or limits.shed_all_at > 0:
            self.dispatcher.set_shedding(
                Shedder(venue.exchange, limits.shed_taking_at, limits.shed_all_at)
            )
        self.log = logger()
        self.connections: set[Connection] = set()
        # every WebSocket frame takes its turn (``turns``), then ``_handle``
        self.turns = Turns(self._handle, limits.max_frames_per_tick, limits.max_time_per_tick_s)
        self.dispatcher.on_tick_flush = self.turns.charge
        # the key poll: a revocation by another process (``derivex keys revoke``) reaches
        # sessions that never present a credential again within ``keys_poll_s``
        self._periodic: list[tuple[float, Callable[[], Any]]] = [
            (flush_interval_s, self.hub.flush),
            (keys_poll_s, keys.refresh),
            (10.0, self.admission.prune),
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.gate: DurabilityGate | None = None  # set by ``start`` for a group-commit journal
        self.url = ""
        venue.listeners.append(self._count_trades)
        venue.mergeable[self._count_trades] = lambda: True  # a sum: batches may merge
        self.app = web.Application(
            client_max_size=MAX_FRAME_BYTES, middlewares=[self._head_complete]
        )
        self.app.router.add_route("GET", "/ws/api/v2", self._websocket)
        self.app.router.add_route("GET", "/ws/api/v2/", self._websocket)
        self.app.router.add_route("*", "/api/v2/{scope:public|private}/{name}", self._rest)
        self.app.router.add_route("POST", "/api/v2", self._post)
        self.app.router.add_route("POST", "/api/v2/", self._post)
        self.app.router.add_route("GET", "/metrics", self._metrics)
        # the dashboard: pages at / and /operator, files under /ui/, the JSON index at
        # /index.json; its operator aggregates count from now on (docs/dashboard.md)
        Pages(self._index).install(self.app.router)
        watch(venue)

    def add_periodic(self, interval_s: float, function: Callable[[], Any]) -> None:
        """Call ``function`` (sync, or async) every ``interval_s`` on the server loop, from
        ``start`` on. Exceptions are logged and the schedule goes on."""
        self._periodic.append((interval_s, function))

    def _revoked(self, client_ids: set[str]) -> None:
        """Keys were revoked: their WebSockets lose their authentication and their
        subscriptions, get a ``session_closed`` notice and are closed (1008 "credentials
        revoked"). Orders they queued before are placed and answered first. O(connections)."""
        doomed = [
            conn
            for conn in self.connections
            if conn.session.key is not None and conn.session.key.client_id in client_ids
        ]
        if not doomed:
            return
        self.dispatcher.flush()  # (nothing when no order is queued)
        for conn in doomed:
            conn.session.key = None
            conn.session.tokens.clear()
            self.hub.drop(conn)
            self.log.info("websocket closed: credentials revoked")
            conn.send(REVOKED_NOTICE)
            conn.close(1008, b"credentials revoked")

    def _count_trades(self, update: Any) -> None:
        if update.trades:
            self.metrics.trades_matched += len(update.trades)

    # ---- lifecycle ----

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False
    ) -> str:
        """Listen on ``host:port``; ``reuse_port``: share the port with other processes
        (``SO_REUSEPORT``; the gateway workers of ``derivex serve --workers``)."""
        idle = self.limits.idle_timeout_s
        head = self.limits.header_timeout_s
        # lingering: how long an unread request body is drained after the response (a
        # stalled body would hold the connection aiohttp's default 10 s more)
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=idle if idle > 0 else 1e9,
            lingering_time=min(head, 2.0) if head > 0 else 2.0,
        )
        self.gate = DurabilityGate.install(self.venue.exchange, asyncio.get_running_loop())
        await self._runner.setup()
        # (not a ``TCPSite``: every connection goes through the admission checks first)
        loop = asyncio.get_running_loop()
        handlers = self._runner.server
        assert handlers is not None  # (set up above)
        self._server = await loop.create_server(
            self.admission.factory(handlers),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
        )
        bound = self._server.sockets[0].getsockname()[1] if self._server.sockets else port
        self.url = f"http://{host}:{bound}"
        for interval, function in self._periodic:
            self._tasks.append(asyncio.ensure_future(self._repeat(interval, function)))
        self.log.info("gateway listening", url=self.url)
        if TRACE is not None:
            TRACE.start(self, Connection)
        return self.url

    async def _repeat(self, interval: float, function: Callable[[], Any]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                result = function()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.log.exception(
                    "periodic task failed", task=getattr(function, "__name__", "task")
                )

    async def stop(self) -> None:
        if self._revoked in self.keys.on_revoke:
            self.keys.on_revoke.remove(self._revoked)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.auth.close()  # last: no request is in flight any more

    # ---- handlers ----

    @web.middleware
    async def _head_complete(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A request head arrived complete: its connection's head timeout is over."""
        peer = self.admission.peer_of(request.transport)
        if peer is not None:
            peer.started()
        return await handler(request)  # type: ignore[no-any-return]

    async def _body(self, request: web.Request) -> bytes:
        """The request's body, which must arrive within ``header_timeout_s`` (a client
        that announces a body and stalls is answered 408 and disconnected)."""
        limit = self.limits.header_timeout_s
        try:
            return await asyncio.wait_for(request.read(), limit if limit > 0 else None)
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text="request body not received in time", headers={"Connection": "close"}
            ) from None

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        beat = self.limits.ws_heartbeat_s
        ws = web.WebSocketResponse(
            autoping=True,
            compress=False,
            max_msg_size=HARD_FRAME_LIMIT,
            decode_text=False,
            heartbeat=beat if beat > 0 else None,
        )
        await ws.prepare(request)
        if self.limits.ws_read_bytes > 0 and request.transport is not None:
            # asyncio's selector transport reads ``max_size`` bytes per ready socket (other
            # loops' transports may not have it: their reads stay as they are)
            with contextlib.suppress(AttributeError):
                request.transport.max_size = self.limits.ws_read_bytes  # type: ignore[attr-defined]
        conn = Connection(
            ws, request.transport, self.limits, self.admission.peer_of(request.transport)
        )
        conn.gate = self.gate
        self.connections.add(conn)
        self.metrics.connections.inc()
        # (a partial, not a lambda: no Python frame per message)
        inline = attach_inline(ws, request, functools.partial(self.turns.offer, conn))
        try:
            # with ``inline`` the loop only sees control frames (close, errors); data frames
            # were handled as they were parsed
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.turns.offer(conn, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
                if conn.closing:
                    break
        finally:
            if inline:
                conn.closing = True  # frames still in flight are not answered
            self.hub.drop(conn)
            conn.stop()
            self.connections.discard(conn)
            self.metrics.connections.dec()
        return ws

    def _handle(self, conn: Connection, data: bytes | str) -> None:
        """One JSON-RPC frame of ``conn`` (its turn come): answered now, or queued with the
        tick's orders."""
        answer = self.dispatcher.offer(data, conn.session, conn, "ws", conn.peer)
        if answer is None:
            return  # an order: answered when the tick's batch is placed
        reply, method, ok = answer
        if (
            not ok
            and method == "public/auth"
            and self.close_on_auth_failure
            and _grant(data) == "client_signature"
        ):
            # ccxt.pro raises inside its receive loop on an error frame and then hangs
            # until its ping timeout; a bare close fails it at once
            self.log.info("websocket auth failed: closing")
            conn.close(1008, b"authentication failed")
            return
        conn.reply(reply)
        if ok and method == "private/logout":
            conn.close(1000, b"logged out")  # as Deribit: logout ends the connection
        elif method in CANCELS:
            # out now, not at the end of the tick: it would wait for the tick's flush
            conn.write_pending()
            if TRACE is not None and method == "private/cancel":
                TRACE.cancel_ms.append((perf_counter() - TRACE.read_at) * 1000)

    async def _rest(self, request: web.Request) -> web.Response:
        name = f"{request.match_info['scope']}/{request.match_info['name']}"
        body = ""
        request_id: Any = None
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query)
        elif request.method == "POST":
            body = (await self._body(request)).decode("utf-8", "replace")
            params, request_id, error = _post_params(body)
            if error is not None:
                return _json(error, 400)
        else:
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        session = Session(origin=origin_of(request.transport))
        header = request.headers.get("Authorization")
        if header:
            try:
                session.key = self.auth.from_header(
                    header, request.method, request.raw_path, body, session.origin
                )
                session.tokens.extend(bearer_token(header))
            except RpcError as err:
                self.metrics.request(name, "http", False, 0.0, err.code)
                self.log.info(
                    "authentication failed",
                    method=name[:64],
                    reason=(err.data or {}).get("reason", ""),
                )
                return _json({"jsonrpc": "2.0", "id": request_id, "error": err.to_json()}, 400)
        reply, ok = self.dispatcher.handle(
            name,
            params,
            request_id,
            session,
            None,
            "http",
            self.admission.peer_of(request.transport),
        )
        reply, ok = await self._durable(reply, ok)
        return web.Response(body=reply, status=200 if ok else 400, content_type="application/json")

    async def _durable(self, reply: bytes, ok: bool) -> tuple[bytes, bool]:
        """An HTTP reply once what it reports is durable (group commit), or 13888 if the
        journal stalls for the gate's ``timeout_s`` (worker mode)."""
        if self.gate is None:
            return reply, ok
        try:
            await self.gate.wait()
        except DurabilityTimeout:
            now, _ = outcome_unknown_frames([reply])
            return (now[0], False) if now and now[0] != reply else (reply, ok)
        return reply, ok

    async def _post(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        session = Session(origin=origin_of(request.transport))
        header = request.headers.get("Authorization")
        if header:
            try:
                session.key = self.auth.from_header(
                    header,
                    "POST",
                    request.raw_path,
                    body.decode("utf-8", "replace"),
                    session.origin,
                )
                session.tokens.extend(bearer_token(header))
            except RpcError as err:
                return _json({"jsonrpc": "2.0", "id": None, "error": err.to_json()}, 400)
        reply, _, ok = self.dispatcher.frame(
            body, session, None, "http", self.admission.peer_of(request.transport)
        )
        reply, ok = await self._durable(reply, ok)
        return web.Response(body=reply, status=200 if ok else 400, content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.orders_open.set(len(self.venue.orders))
        self.metrics.engine_seq.set(query.commands_processed(self.venue.exchange.engine.state))
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _index(self, request: web.Request) -> web.Response:
        state = self.venue.exchange.engine.state
        return _json(
            {
                "name": "derivex",
                "api": "/api/v2",
                "websocket": "/ws/api/v2",
                "metrics": "/metrics",
                "trader": "/",
                "operator": "/operator",
                "instruments": len(self.venue.catalog),
                "accounts": query.account_count(state),
            },
            200,
        )


class _InlineQueue(WebSocketDataQueue):  # type: ignore[misc, valid-type]
    """aiohttp's per-connection message queue, except that data frames are handed to
    ``on_message`` as the parser produces them (inside the protocol's ``data_received``)
    instead of being queued for ``receive()``. Control frames (close, ping, pong, errors)
    still go through the queue to the connection's receive loop."""

    def __init__(
        self,
        protocol: Any,
        limit: int,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[bytes], None],
    ) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.on_message = on_message

    def feed_data(self, data: Any, size: int) -> None:
        if data[0] in _DATA_TYPES:
            self.on_message(data[1])
        else:
            WebSocketDataQueue.feed_data(self, data, size)


_DATA_TYPES = (WSMsgType.TEXT, WSMsgType.BINARY)


def attach_inline(
    ws: web.WebSocketResponse, request: web.Request, on_message: Callable[[bytes], None]
) -> bool:
    """Have ``ws``'s data frames delivered to ``on_message`` synchronously, as they are
    parsed, instead of through ``async for message in ws``: no future, task switch and
    ``receive()`` per message (measured: bench/gateway_bench.py). This replaces aiohttp's
    frame queue and parser of a prepared response (private attributes, present in aiohttp
    3.10 to 3.14); returns False and changes nothing when they are not as expected, and the
    receive loop then gets data frames as usual. Frames parsed before the swap (sent with
    the upgrade request) are handed over in order."""
    old = getattr(ws, "_reader", None)
    protocol = getattr(request, "_protocol", None)
    if (
        not isinstance(old, WebSocketDataQueue)
        or type(old) is not WebSocketDataQueue
        or protocol is None
        or getattr(protocol, "_payload_parser", None) is None
        or getattr(ws, "_parser", None) is not protocol._payload_parser
    ):
        return False
    traced: TracedParser | None = None
    if TRACE is not None:
        deliver = on_message

        def on_message(data: bytes) -> None:
            assert traced is not None
            traced.frames += 1
            deliver(data)

    queue = _InlineQueue(protocol, old._limit // 2, asyncio.get_running_loop(), on_message)
    parser: Any = WebSocketReader(queue, HARD_FRAME_LIMIT, compress=False, decode_text=False)
    if TRACE is not None:
        parser = traced = TracedParser(parser, queue)
    pending = list(old._buffer)
    old._buffer.clear()
    ws._reader = queue  # type: ignore[assignment]
    ws._parser = parser  # type: ignore[attr-defined]
    protocol._payload_parser = parser
    for message, size in pending:
        queue.feed_data(message, size)
    return True


def tune_interpreter(
    threshold: int = GC_THRESHOLD, switch_interval_s: float = SWITCH_INTERVAL_S
) -> None:
    """Process-wide interpreter settings for a serving process.

    The collector: what exists now (code, the venue after recovery) is frozen out of future
    collections, and the youngest generation is collected every ``threshold`` allocations.
    Order entry allocates a few objects per request and keeps some (order records, trades);
    each collection's pause is added to an event-loop iteration, which is what a cancel on
    another socket waits for. Measured under a 10x order flood (bench/overload_bench.py,
    DERIVEX_TRACE): young collections took 4-7 ms p99 at 10,000, 0.3 ms at 1,000; the
    middle generation's threshold scales so that it is collected every 500,000 allocations,
    as before.

    The GIL hand-off: the journal's flusher thread needs the GIL after each ``fdatasync``
    before the replies it makes durable can leave, and while the loop thread is busy it
    waits up to the switch interval for it, several times per flush (Python's default is
    5 ms). At 0.1 ms a cancel's round trip under that flood went from 6.1 / 16.9 ms
    (p50 / p99) to 3.4 / 7.2 ms; the loop thread is interrupted that often only while
    another thread waits."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, max(1, 500_000 // threshold), 100)
    sys.setswitchinterval(switch_interval_s)


def _grant(data: bytes | str) -> Any:
    try:
        params = orjson.loads(data).get("params")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return params.get("grant_type") if isinstance(params, dict) else None


def _post_params(body: str) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    if not body.strip():
        return {}, None, None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return (
            {},
            None,
            {"jsonrpc": "2.0", "id": None, "error": RpcError(PARSE_ERROR, "Parse error").to_json()},
        )
    if not isinstance(message, dict):
        return (
            {},
            None,
            {
                "jsonrpc": "2.0",
                "id": None,
                "error": RpcError(INVALID_REQUEST, "Invalid Request").to_json(),
            },
        )
    # a JSON-RPC body carries "params"; a plain object is the parameters themselves
    # (less any envelope keys, which are no method's parameters)
    params = (
        message["params"]
        if "params" in message
        else {key: value for key, value in message.items() if key not in _ENVELOPE}
    )
    request_id = message.get("id")
    if not isinstance(params, dict):
        return (
            {},
            request_id,
            {"jsonrpc": "2.0", "id": None, "error": RpcError(-32602, "Invalid params").to_json()},
        )
    return params, request_id if isinstance(request_id, int | str) else None, None


_ENVELOPE = frozenset({"jsonrpc", "id", "method"})


def _json(data: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class GatewayThread:
    """A gateway on its own event loop in a daemon thread. ``call(fn)`` runs ``fn`` on that
    loop (the venue's only thread) and returns its result."""

    def __init__(
        self, build: Callable[[], Gateway], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._build = build
        self._host, self._port = host, port
        self.loop = asyncio.new_event_loop()
        self.gateway: Gateway | None = None
        self.url = ""
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="derivex-gateway", daemon=True
        )

    def start(self) -> str:
        self._thread.start()

        async def boot() -> str:
            self.gateway = self._build()
            return await self.gateway.start(self._host, self._port)

        self.url = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(timeout=600)
        return self.url

    def call(self, function: Callable[[], T], timeout: float = 30) -> T:
        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=timeout)

    def run(self, coroutine: Awaitable[T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=timeout)

    def stop(self) -> None:
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()
