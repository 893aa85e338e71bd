"""JSON-RPC 2.0 dispatch: parse a frame, check method, scope and rate limit, call the
handler, and build the reply (Deribit's envelope: ``usIn``/``usOut``/``usDiff``).

Whatever a frame holds, the answer is a reply: malformed JSON is ``-32700``, a non-object or
a missing method ``-32600``, an unknown method ``-32601``, wrong parameter types ``-32602``,
an oversized frame ``11050``, and an unexpected exception ``11094`` (logged, the connection
stays up).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

from derivex.gateway import private_api, public_api  # noqa: F401  (they register methods)
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
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.telemetry import Metrics, logger
from derivex.gateway.venue import Venue

MAX_FRAME_BYTES = 64 * 1024
MAX_BATCH = 4096  # orders per engine call at most (bounds a flush's latency)


def _us() -> int:
    return time.time_ns() // 1000


class Dispatcher:
    """Answers requests for one venue. Not thread-safe: the server's loop calls it.

    Order entry over WebSocket is batched: ``offer`` checks a ``private/buy``/``sell``
    request at once (parameters, scope, rate limit) and queues it; ``flush``, scheduled
    with ``call_soon`` for the end of the event-loop tick (or called before any other
    request, which must see the queued orders' effects), places every queued order in ONE
    engine call and answers each in arrival order, as if they had come one by one."""

    def __init__(self, venue: Venue, auth: Authenticator, hub: Hub | None = None,
                 limiter: RateLimiter | None = None, metrics: Metrics | None = None) -> None:
        self.venue = venue
        self.auth = auth
        self.hub = hub
        self.limiter = limiter
        self.metrics = metrics
        self.gas_base = venue.exchange.engine.config.gas_base
        self.log = logger()
        self._queued: list[_Queued] = []
        self.max_batch = MAX_BATCH

    def _authorize(self, name: str, params: dict[str, Any],
                   session: Session) -> tuple[Method, Session]:
        method = METHODS.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found", {"method": name[:64]})
        if method.scope is not None:
            if session.key is None:
                token = params.get("access_token")
                if isinstance(token, str):
                    session = Session(self.auth.from_token(token))
                else:
                    raise RpcError(UNAUTHORIZED, "unauthorized",
                                   {"reason": "authorization required"})
            assert session.key is not None
            if not session.key.allows(method.scope):
                raise RpcError(FORBIDDEN, "forbidden", {"reason": f"needs scope {method.scope}"})
        if session.key is not None and self.limiter is not None:
            cost = self.gas_base if method.cost == ENGINE else method.cost
            if not self.limiter.allow(session.key.client_id, cost):
                raise RpcError(TOO_MANY_REQUESTS, "too_many_requests")
        return method, session

    def call(self, name: str, params: dict[str, Any], session: Session, connection: Any = None,
             transport: str = "http") -> Any:
        """Run one method for ``session``; raises ``RpcError``."""
        method, session = self._authorize(name, params, session)
        return method.handler(Context(self.venue, self.auth, session, self.hub, connection,
                                      transport), params)

    def handle(self, name: str, params: dict[str, Any], request_id: Any, session: Session,
               connection: Any = None, transport: str = "http") -> tuple[bytes, bool]:
        """Call and build the reply; returns ``(json bytes, ok)``. Queued orders are
        placed first."""
        if self._queued:
            self.flush()
        us_in = _us()
        started = time.perf_counter()
        try:
            result = self.call(name, params, session, connection, transport)
        except Exception as error:  # every failure becomes an error reply
            return self._reply(name, request_id, None, error, us_in, started, transport)
        return self._reply(name, request_id, result, None, us_in, started, transport)

    def _reply(self, name: str, request_id: Any, result: Any, error: Exception | None,
               us_in: int, started: float, transport: str) -> tuple[bytes, bool]:
        code = 0
        if error is None:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": result}
        elif isinstance(error, RpcError):
            code = error.code
            body = {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}
        else:
            code = INTERNAL_ERROR
            self.log.error("request failed", method=name[:64], transport=transport,
                           exc_info=error)
            body = {"jsonrpc": "2.0", "id": request_id,
                    "error": {"code": INTERNAL_ERROR, "message": "internal_server_error"}}
        us_out = _us()
        body["usIn"] = us_in
        body["usOut"] = us_out
        body["usDiff"] = us_out - us_in
        body["testnet"] = False
        if self.metrics is not None:
            self.metrics.request(name, transport, code == 0, time.perf_counter() - started,
                                 code)
        return orjson.dumps(body), code == 0

    def handle_frame(self, data: str | bytes, session: Session, connection: Any = None,
                     transport: str = "ws") -> bytes:
        """One WebSocket (or POSTed) JSON-RPC frame in, one reply out."""
        return self.frame(data, session, connection, transport)[0]

    def frame(self, data: str | bytes, session: Session, connection: Any = None,
              transport: str = "ws") -> tuple[bytes, str, bool]:
        """Like ``handle_frame``; also returns the method name ("" if none) and whether the
        call succeeded."""
        try:
            request_id, name, params = _parse(data)
        except _BadFrame as bad:
            return self._error(bad.request_id, bad.error, transport)
        reply, ok = self.handle(name, params, request_id, session, connection, transport)
        return reply, name, ok

    def offer(self, data: str | bytes, session: Session, connection: Any,
              transport: str = "ws") -> tuple[bytes, str, bool] | None:
        """A WebSocket frame: ``None`` if it was queued for the next ``flush`` (its reply
        goes to ``connection.reply`` then), else what ``frame`` answers. ``connection`` is
        held (``hold``) before anything of an immediate answer runs."""
        try:
            request_id, name, params = _parse(data)
        except _BadFrame as bad:
            if self._queued:
                self.flush()
            return self._error(bad.request_id, bad.error, transport)
        method = METHODS.get(name)
        if method is None or method.prepare is None:
            if self._queued:
                self.flush()
            connection.hold()
            reply, ok = self.handle(name, params, request_id, session, connection, transport)
            return reply, name, ok
        us_in = _us()
        started = time.perf_counter()
        try:
            method, session = self._authorize(name, params, session)
            ctx = Context(self.venue, self.auth, session, self.hub, connection, transport)
            order = method.prepare(ctx, params)
        except Exception as error:  # every failure becomes an error reply
            if self._queued:
                self.flush()
            reply, ok = self._reply(name, request_id, None, error, us_in, started, transport)
            return reply, name, ok
        if not self._queued:
            asyncio.get_running_loop().call_soon(self.flush)
        self._queued.append(_Queued(method, ctx, order, request_id, us_in, started))
        if len(self._queued) >= self.max_batch:
            self.flush()
        return None

    def flush(self) -> None:
        """Place the queued orders in one engine call and answer each (``reply`` on its
        connection, held while its events are applied so its reply goes out before the
        notifications it caused). Cost: one engine call, O(orders + events)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        try:
            results = self.venue.place_many([entry.order for entry in queued])
        except Exception as error:  # nothing was applied: all fail alike
            for entry in queued:
                entry.ctx.connection.reply(self._reply(
                    entry.method.name, entry.request_id, None, error, entry.us_in,
                    entry.started, entry.ctx.transport)[0])
            return
        for entry in queued:
            ctx = entry.ctx
            ctx.connection.hold()
            outcome = next(results)
            try:
                if isinstance(outcome, RpcError):
                    raise outcome
                assert entry.method.finish is not None
                reply = self._reply(entry.method.name, entry.request_id,
                                    entry.method.finish(ctx, outcome), None, entry.us_in,
                                    entry.started, ctx.transport)[0]
            except Exception as error:  # every failure becomes an error reply
                reply = self._reply(entry.method.name, entry.request_id, None, error,
                                    entry.us_in, entry.started, ctx.transport)[0]
            ctx.connection.reply(reply)

    def _error(self, request_id: Any, error: RpcError,
               transport: str) -> tuple[bytes, str, bool]:
        us = _us()
        if self.metrics is not None:
            self.metrics.request("invalid", transport, False, 0.0, error.code)
        return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_json(),
                             "usIn": us, "usOut": us, "usDiff": 0, "testnet": False}), "", False


def _parse(data: str | bytes) -> tuple[Any, str, dict[str, Any]]:
    """``(id, method, params)`` of a well-formed request; raises ``_BadFrame``."""
    if len(data) > MAX_FRAME_BYTES:
        raise _BadFrame(None, RpcError(BAD_REQUEST, "bad_request", {"reason": "frame too large"}))
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _BadFrame(None, RpcError(PARSE_ERROR, "Parse error")) from None
    if not isinstance(message, dict):
        raise _BadFrame(None, RpcError(INVALID_REQUEST, "Invalid Request",
                                       {"reason": "not an object"}))
    request_id = message.get("id")
    if not isinstance(request_id, int | str | type(None)) or isinstance(request_id, bool):
        raise _BadFrame(None, RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "bad id"}))
    name = message.get("method")
    if not isinstance(name, str):
        raise _BadFrame(request_id, RpcError(INVALID_REQUEST, "Invalid Request",
                                             {"reason": "method missing"}))
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _BadFrame(request_id, RpcError(-32602, "Invalid params",
                                             {"reason": "params must be an object"}))
    return request_id, name, params


class _BadFrame(Exception):
    def __init__(self, request_id: Any, error: RpcError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


@dataclass(slots=True)
class _Queued:
    method: Method
    ctx: Context
    order: Any
    request_id: Any
    us_in: int
    started: float
