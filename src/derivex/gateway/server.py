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
import contextlib
import gc
import inspect
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import orjson
from aiohttp import web

from derivex.gateway.auth import Authenticator
from derivex.gateway.auth_limits import AuthLimits
from derivex.gateway.channels import Hub
from derivex.gateway.connection import (  # noqa: F401  (names importers use from here)
    HARD_FRAME_LIMIT,
    SLOW_CONSUMER,
    Connection,
    attach_inline,
    origin_of,
    text_frames,
)
from derivex.gateway.durability import DurabilityGate
from derivex.gateway.errors import RpcError
from derivex.gateway.keys import KEYS_POLL_S, KeyStore
from derivex.gateway.limits import Admission, Limits
from derivex.gateway.overload import Shedder
from derivex.gateway.oversight import watch
from derivex.gateway.pages import Pages
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.routes import Routes
from derivex.gateway.rpc import MAX_FRAME_BYTES, Dispatcher
from derivex.gateway.telemetry import Metrics, logger
from derivex.gateway.trace import TRACE
from derivex.gateway.turns import Turns
from derivex.gateway.venue import Venue

T = TypeVar("T")
GC_THRESHOLD = 1_000
#: how often (seconds) a thread holding the GIL is asked to hand it to one waiting for it
SWITCH_INTERVAL_S = 0.0001
REVOKED_NOTICE = orjson.dumps(
    {"jsonrpc": "2.0", "method": "session_closed", "params": {"reason": "credentials_revoked"}}
)


class Gateway(Routes):
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
        self.log = logger()
        self.connections: set[Connection] = set()
        # every WebSocket frame takes its turn (``turns``), then ``_handle``
        self.turns = Turns(
            self._handle,
            limits.max_frames_per_tick,
            limits.max_time_per_tick_s,
            limits.busy_share,
            limits.busy_window_s,
        )
        self.dispatcher.on_tick_flush = self._flushed
        if any(
            (
                limits.shed_taking_at > 0,
                limits.shed_all_at > 0,
                limits.shed_taking_after_s > 0,
                limits.shed_all_after_s > 0,
            )
        ):
            shedder = Shedder(
                venue.exchange,
                limits.shed_taking_at,
                limits.shed_all_at,
                limits.shed_taking_after_s,
                limits.shed_all_after_s,
            )
            self.dispatcher.set_shedding(shedder, self.turns)
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

    def _flushed(self, seconds: float) -> None:
        """After a tick's order flush: charge its time to the tick (``turns``), and send what
        became durable meanwhile (a cancel's reply, held for the disk while the flush's
        engine round trip blocked the loop) before the loop's next reads."""
        self.turns.charge(seconds)
        if self.gate is not None:
            self.gate.release_due()

    async def _repeat(self, interval: float, function: Callable[[], Any]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                started = time.perf_counter()
                result = function()
                if TRACE is not None:  # (diagnostics: which periodic work holds the loop)
                    name = "periodic." + getattr(function, "__qualname__", "task")
                    TRACE.calls.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                if inspect.isawaitable(result):
                    await result
            except RpcError as refused:  # the venue said no (e.g. a cluster write outage)
                self.log.warning(
                    "periodic task refused",
                    task=getattr(function, "__name__", "task"),
                    code=refused.code,
                    reason=refused.message,
                )
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
