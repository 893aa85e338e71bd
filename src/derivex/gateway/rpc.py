"""JSON-RPC 2.0 dispatch: parse a frame, check method, scope and rate limit, call the
handler, and build the reply (Deribit's envelope: ``usIn``/``usOut``/``usDiff``).

Whatever a frame holds, the answer is a reply: malformed JSON is ``-32700``, a non-object or
a missing method ``-32600``, an unknown method ``-32601``, wrong parameter types, numbers
outside the grammar of ``numbers`` and parameters the method does not implement
``-32602`` (naming the parameter), an oversized frame ``11050``. ``11094`` is an unexpected
exception, a bug (logged, the connection stays up): nothing a client sends should cause one
(``tests/adversarial/test_input_fuzz.py``). The contract is written in ``docs/gateway.md``.
A public method beyond its connection's or address's budget is ``10028`` (``limits.Peer``);
a new order met with a full queue in front of the engine is shed with ``10047`` or
``10040`` (``overload``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from derivex.gateway import (  # noqa: F401  (they register methods)
    admin_api,
    cancel_on_disconnect,
    candles,
    history_api,
    label_api,
    margin_api,
    mmp_api,
    private_api,
    public_api,
    quote_api,
    self_trading_api,
    subaccount_api,
    transfer_api,
    trigger_api,
)
from derivex.gateway.auth import Authenticator, Session
from derivex.gateway.channels import Hub
from derivex.gateway.errors import (
    BAD_REQUEST,
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    RpcError,
)
from derivex.gateway.methods import ENGINE, METHODS, Context, Method
from derivex.gateway.overload import Shedder
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.telemetry import Metrics, logger
from derivex.gateway.venue import Venue

MAX_FRAME_BYTES = 64 * 1024
MAX_BATCH = 4096  # orders per engine call at most (bounds a flush's latency)
#: requests that go ahead of other connections' queued orders (``Dispatcher.offer``)
CANCELS = frozenset(
    {
        "private/cancel",
        "private/cancel_all",
        "private/cancel_all_by_instrument",
        "private/cancel_all_by_currency",
        "private/cancel_by_label",
    }
)


class Dispatcher:
    """Answers requests for one venue. Not thread-safe: the server's loop calls it.

    Order entry over WebSocket is batched: ``offer`` checks a ``private/buy``/``sell``
    request at once (parameters, scope, rate limit) and queues it; ``flush``, scheduled
    with ``call_soon`` for the end of the event-loop tick (or called before any other
    request, which must see the queued orders' effects), places every queued order in ONE
    engine call and answers each in arrival order, as if they had come one by one."""

    def __init__(
        self,
        venue: Venue,
        auth: Authenticator,
        hub: Hub | None = None,
        limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.venue = venue
        self.auth = auth
        self.hub = hub
        self.limiter = limiter
        self.metrics = metrics
        self.gas_base = venue.exchange.engine.config.gas_base
        self.log = logger()
        # (method, context, prepared order, request id, arrival in wall-clock ns)
        self._queued: list[tuple[Method, Context, Any, Any, int]] = []
        self.max_batch = MAX_BATCH
        # a new order offered when the tick already had this many goes to the shedder
        self.shedder: Shedder | None = None
        self.shed_from = 1 << 62
        self.turns: Any = None  # (``Turns``) whose ``delay_s`` also triggers the shedder
        self.shed_after_s = float("inf")
        self._sheds = 0  # queued entries that are shed orders (an ``RpcError``, not placed)
        # orders offered in this event-loop tick: the overload signal (``overload``)
        self._tick_orders = 0
        # the queued orders' contexts by connection (a connection's orders of one batch
        # share one); emptied by ``flush``
        self._contexts: dict[Any, Context] = {}
        # told the seconds of each flush run at the end of a tick (not inside a request's
        # handling): the server charges them to the next tick's budget (``turns``)
        self.on_tick_flush: Callable[[float], None] | None = None

    def _tick_flush(self) -> None:
        """The flush scheduled for the end of the tick, timed for ``on_tick_flush``."""
        if self.on_tick_flush is None:
            self.flush()
            return
        start = time.perf_counter()
        self.flush()
        self.on_tick_flush(time.perf_counter() - start)

    def _end_tick(self) -> None:
        self._tick_orders = 0

    def set_shedding(self, shedder: Shedder | None, turns: Any = None) -> None:
        """Shed new orders with ``shedder`` (None: never), judging also how long requests
        wait for their turn in ``turns`` (``Turns.delay_s``; None: by counts only)."""
        self.shedder = shedder
        self.shed_from = shedder.taking_at if shedder is not None else 1 << 62
        self.turns = turns if shedder is not None else None
        self.shed_after_s = (
            shedder.taking_after_s if shedder is not None and turns is not None else float("inf")
        )

    def _authorize(
        self, name: str, params: dict[str, Any], session: Session, peer: Any = None
    ) -> tuple[Method, Session]:
        method = METHODS.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found", {"method": name[:64]})
        return method, self._check(method, params, session, peer)

    def _check(
        self, method: Method, params: dict[str, Any], session: Session, peer: Any = None
    ) -> Session:
        """Scope, rate limit and parameter names of a call of ``method``; returns the
        session it runs as (an ``access_token`` parameter authenticates a public one). A
        public method also takes from ``peer``'s budgets (``limits.Peer``: its connection
        and address; None: unlimited). Raises ``RpcError`` (-32602 naming a parameter the
        method does not implement)."""
        if method.scope is None:
            if peer is not None:
                refused = peer.allow_public(method.cost)
                if refused is not None:
                    raise RpcError(TOO_MANY_REQUESTS, "too_many_requests", {"reason": refused})
        else:
            if session.key is None:
                token = params.get("access_token")
                if isinstance(token, str):
                    session = Session(self.auth.from_token(token))
                else:
                    raise RpcError(
                        UNAUTHORIZED, "unauthorized", {"reason": "authorization required"}
                    )
            assert session.key is not None
            if not session.key.allows(method.scope):
                raise RpcError(FORBIDDEN, "forbidden", {"reason": f"needs scope {method.scope}"})
        if session.key is not None and self.limiter is not None:
            cost = self.gas_base if method.cost == ENGINE else method.cost
            if not self.limiter.allow(session.key.client_id, cost):
                raise RpcError(TOO_MANY_REQUESTS, "too_many_requests")
        # after the rate limit: a refused request still costs its sender
        method.check_params(params)
        return session

    def call(
        self,
        name: str,
        params: dict[str, Any],
        session: Session,
        connection: Any = None,
        transport: str = "http",
        peer: Any = None,
        queued: int = 0,
    ) -> Any:
        """Run one method for ``session`` (from ``peer``, see ``_check``), met with
        ``queued`` orders in front of the engine (a new order may be shed); raises
        ``RpcError``."""
        method, session = self._authorize(name, params, session, peer)
        ctx = Context(self.venue, self.auth, session, self.hub, connection, transport)
        if method.prepare is not None and self.shedder is not None:
            # a new order (here: HTTP) counts in the tick's orders too
            if not self._tick_orders:
                asyncio.get_running_loop().call_soon(self._end_tick)
            self._tick_orders += 1
            if queued >= self.shed_from:
                assert self.shedder is not None
                shed = self.shedder.check(method.prepare(ctx, params), queued)
                if shed is not None:
                    raise shed
        return method.handler(ctx, params)

    def handle(
        self,
        name: str,
        params: dict[str, Any],
        request_id: Any,
        session: Session,
        connection: Any = None,
        transport: str = "http",
        peer: Any = None,
        flush: bool = True,
    ) -> tuple[bytes, bool]:
        """Call and build the reply; returns ``(json bytes, ok)``. Queued orders are
        placed first (unless ``flush`` is false); an order met in a tick that already had
        too many is shed, as in ``offer``."""
        if flush and self._queued:
            self.flush()
        in_ns = time.time_ns()
        try:
            result = self.call(
                name, params, session, connection, transport, peer, self._tick_orders
            )
        except Exception as error:  # every failure becomes an error reply
            return self._reply(name, request_id, None, error, in_ns, transport)
        return self._reply(name, request_id, result, None, in_ns, transport)

    def _reply(
        self,
        name: str,
        request_id: Any,
        result: Any,
        error: Exception | None,
        in_ns: int,
        transport: str,
        out_ns: int = 0,
    ) -> tuple[bytes, bool]:
        """The reply envelope; ``in_ns``/``out_ns``: wall-clock nanoseconds when the request
        came in and when it is answered (0: now), Deribit's ``usIn``/``usOut``."""
        code = 0
        if error is None:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": result}
        elif isinstance(error, RpcError):
            code = error.code
            body = {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}
        else:
            code = INTERNAL_ERROR
            self.log.error("request failed", method=name[:64], transport=transport, exc_info=error)
            body = {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": INTERNAL_ERROR, "message": "internal_server_error"},
            }
        if not out_ns:
            out_ns = time.time_ns()
        us_in, us_out = in_ns // 1000, out_ns // 1000
        body["usIn"] = us_in
        body["usOut"] = us_out
        body["usDiff"] = us_out - us_in
        body["testnet"] = False
        if self.metrics is not None:
            self.metrics.request(name, transport, code == 0, max(0, out_ns - in_ns) / 1e9, code)
        return orjson.dumps(body), code == 0

    def handle_frame(
        self, data: str | bytes, session: Session, connection: Any = None, transport: str = "ws"
    ) -> bytes:
        """One WebSocket (or POSTed) JSON-RPC frame in, one reply out."""
        return self.frame(data, session, connection, transport)[0]

    def frame(
        self,
        data: str | bytes,
        session: Session,
        connection: Any = None,
        transport: str = "ws",
        peer: Any = None,
    ) -> tuple[bytes, str, bool]:
        """Like ``handle_frame``; also returns the method name ("" if none) and whether the
        call succeeded."""
        try:
            request_id, name, params = _parse(data)
        except _BadFrame as bad:
            return self._error(bad.request_id, bad.error, transport)
        reply, ok = self.handle(name, params, request_id, session, connection, transport, peer)
        return reply, name, ok

    def offer(
        self,
        data: str | bytes,
        session: Session,
        connection: Any,
        transport: str = "ws",
        peer: Any = None,
    ) -> tuple[bytes, str, bool] | None:
        """A WebSocket frame: ``None`` if it was queued for the next ``flush`` (its reply
        goes to ``connection.reply`` then), else what ``frame`` answers. ``connection`` is
        held (``hold``) before anything of an immediate answer runs.

        Any other request runs at once, after the queued orders (it sees their effects, as
        if the frames came one by one); except that a cancel (``CANCELS``) goes ahead of
        them when its own connection has none among them: other connections' orders are
        concurrent with it and not yet acknowledged, and a cancel never waits for a tick's
        order flood to be placed (overload policy: cancels come first)."""
        try:
            request_id, name, params = _parse(data)
        except _BadFrame as bad:
            if self._queued:
                self.flush()
            return self._error(bad.request_id, bad.error, transport)
        method = METHODS.get(name)
        if method is None or method.prepare is None:
            if self._queued and (name not in CANCELS or connection in self._contexts):
                self.flush()
            connection.hold()
            reply, ok = self.handle(
                name, params, request_id, session, connection, transport, peer, flush=False
            )
            return reply, name, ok
        in_ns = time.time_ns()
        tick = self._tick_orders
        if not tick:
            asyncio.get_running_loop().call_soon(self._end_tick)
        self._tick_orders = tick + 1
        try:
            session = self._check(method, params, session)
            ctx = self._contexts.get(connection)  # type: ignore[assignment]
            if ctx is None or ctx.session is not session or ctx.transport != transport:
                ctx = Context(self.venue, self.auth, session, self.hub, connection, transport)
            order = method.prepare(ctx, params)
            delay = self.turns.delay_s if self.turns is not None else 0.0
            if tick >= self.shed_from or delay >= self.shed_after_s:
                assert self.shedder is not None
                shed = self.shedder.check(order, tick, delay)
                if shed is not None:
                    # answered in its place among the batch's replies (its connection's
                    # replies keep their order)
                    self._sheds += 1
                    order = shed
        except Exception as error:  # every failure becomes an error reply
            if self._queued:
                self.flush()
            reply, ok = self._reply(name, request_id, None, error, in_ns, transport)
            return reply, name, ok
        # (a connection is a key here while it has orders in the batch)
        self._contexts[connection] = ctx
        queued = self._queued
        if not queued:
            asyncio.get_running_loop().call_soon(self._tick_flush)
        queued.append((method, ctx, order, request_id, in_ns))
        if len(queued) >= self.max_batch:
            self.flush()
        return None

    def flush(self) -> None:
        """Place the queued orders in one engine call and answer each (``reply`` on its
        connection, held while its events are applied so its reply goes out before the
        notifications it caused; not held when the venue merges the batch's updates, as
        nothing is then notified per order). Cost: one engine call, O(orders + events); a success's
        envelope is ``_reply``'s as one dict literal, and the successes' metrics are one
        ``Metrics.answered``."""
        queued: list[tuple[Method, Context, Any, Any, int]]
        queued, self._queued = self._queued, []
        if not queued:
            return
        self._contexts.clear()
        sheds, self._sheds = self._sheds, 0
        # merged listener updates notify nobody during the batch: no reply to hold back
        hold = not self.venue.merges_batches()
        try:
            if sheds:
                results = _with_sheds(queued, self.venue.place_many)
            else:
                results = self.venue.place_many([entry[2] for entry in queued])
        except Exception as error:  # nothing was applied: all fail alike
            for method, ctx, _, request_id, in_ns in queued:
                ctx.connection.reply(
                    self._reply(method.name, request_id, None, error, in_ns, ctx.transport)[0]
                )
            return
        out_ns = time.time_ns()  # one answer time for the batch: its replies leave together
        us_out = out_ns // 1000
        dumps = orjson.dumps
        transport = queued[0][1].transport
        # the successes on ``transport``, for the metrics (one update for all at the end)
        methods: list[str] = []
        started: list[int] = []
        for method, ctx, _, request_id, in_ns in queued:
            connection = ctx.connection
            if hold:
                connection.hold()
            try:
                # inside the try: whatever one order's result raises is its own error
                # reply (``place_many`` yields every order's outcome, failures included)
                outcome = next(results)
                if isinstance(outcome, Exception):
                    raise outcome
                assert method.finish is not None
                result = method.finish(ctx, outcome)
                us_in = in_ns // 1000
                # ``_reply``'s success envelope, same keys in the same order
                data = dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": request_id,
                        "result": result,
                        "usIn": us_in,
                        "usOut": us_out,
                        "usDiff": us_out - us_in,
                        "testnet": False,
                    }
                )
                if ctx.transport == transport:
                    methods.append(method.name)
                    started.append(in_ns)
                elif self.metrics is not None:
                    self.metrics.request(
                        method.name, ctx.transport, True, max(0, out_ns - in_ns) / 1e9
                    )
            except Exception as error:  # every failure becomes an error reply
                data = self._reply(
                    method.name, request_id, None, error, in_ns, ctx.transport, out_ns
                )[0]
            connection.reply(data)
        if self.metrics is not None and methods:
            self.metrics.answered(transport, methods, started, out_ns)

    def _error(self, request_id: Any, error: RpcError, transport: str) -> tuple[bytes, str, bool]:
        us = time.time_ns() // 1000
        if self.metrics is not None:
            self.metrics.request("invalid", transport, False, 0.0, error.code)
        return (
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": error.to_json(),
                    "usIn": us,
                    "usOut": us,
                    "usDiff": 0,
                    "testnet": False,
                }
            ),
            "",
            False,
        )


def _with_sheds(queued: list[Any], place_many: Any) -> Any:
    """The outcomes of a batch holding shed orders: the shed ones' errors in their places,
    the others' from one ``place_many`` of the rest (none if every order was shed)."""
    orders = [entry[2] for entry in queued if type(entry[2]) is not RpcError]
    placed = place_many(orders) if orders else iter(())
    return (entry[2] if type(entry[2]) is RpcError else next(placed) for entry in queued)


def _parse(data: str | bytes) -> tuple[Any, str, dict[str, Any]]:
    """``(id, method, params)`` of a well-formed request; raises ``_BadFrame``."""
    if len(data) > MAX_FRAME_BYTES:
        raise _BadFrame(None, RpcError(BAD_REQUEST, "bad_request", {"reason": "frame too large"}))
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _BadFrame(None, RpcError(PARSE_ERROR, "Parse error")) from None
    # orjson builds exact types (no subclasses): ``type(...) is`` checks suffice, and a
    # bool id is refused because ``bool`` is not ``int`` here
    if type(message) is not dict:
        raise _BadFrame(
            None, RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "not an object"})
        )
    request_id = message.get("id")
    if type(request_id) not in _ID_TYPES:
        raise _BadFrame(None, RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "bad id"}))
    name = message.get("method")
    if type(name) is not str:
        raise _BadFrame(
            request_id, RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "method missing"})
        )
    params = message.get("params")
    if params is None:  # missing or null
        params = {}
    elif type(params) is not dict:
        raise _BadFrame(
            request_id, RpcError(-32602, "Invalid params", {"reason": "params must be an object"})
        )
    return request_id, name, params


_ID_TYPES = frozenset({int, str, type(None)})


class _BadFrame(Exception):
    def __init__(self, request_id: Any, error: RpcError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error
