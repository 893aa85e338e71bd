"""JSON-RPC 2.0 dispatch: parse a frame, check method, scope and rate limit, call the
handler, and build the reply (Deribit's envelope: ``usIn``/``usOut``/``usDiff``).

Whatever a frame holds, the answer is a reply: malformed JSON is ``-32700``, a non-object or
a missing method ``-32600``, an unknown method ``-32601``, wrong parameter types ``-32602``,
an oversized frame ``11050``, and an unexpected exception ``11094`` (logged, the connection
stays up).
"""

from __future__ import annotations

import time
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
from derivex.gateway.methods import ENGINE, METHODS, Context
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.telemetry import Metrics, logger
from derivex.gateway.venue import Venue

MAX_FRAME_BYTES = 64 * 1024


def _us() -> int:
    return time.time_ns() // 1000


class Dispatcher:
    """Answers requests for one venue. Not thread-safe: the server's loop calls it."""

    def __init__(self, venue: Venue, auth: Authenticator, hub: Hub | None = None,
                 limiter: RateLimiter | None = None, metrics: Metrics | None = None) -> None:
        self.venue = venue
        self.auth = auth
        self.hub = hub
        self.limiter = limiter
        self.metrics = metrics
        self.gas_base = venue.exchange.engine.config.gas_base
        self.log = logger()

    def call(self, name: str, params: dict[str, Any], session: Session, connection: Any = None,
             transport: str = "http") -> Any:
        """Run one method for ``session``; raises ``RpcError``."""
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
        return method.handler(Context(self.venue, self.auth, session, self.hub, connection,
                                      transport), params)

    def handle(self, name: str, params: dict[str, Any], request_id: Any, session: Session,
               connection: Any = None, transport: str = "http") -> tuple[bytes, bool]:
        """Call and build the reply; returns ``(json bytes, ok)``."""
        us_in = _us()
        started = time.perf_counter()
        code = 0
        try:
            result = self.call(name, params, session, connection, transport)
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": result}
        except RpcError as error:
            code = error.code
            body = {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}
            self.log.debug("request rejected", method=name[:64], code=code,
                           transport=transport)
        except Exception:
            code = INTERNAL_ERROR
            self.log.exception("request failed", method=name[:64], transport=transport)
            body = {"jsonrpc": "2.0", "id": request_id,
                    "error": {"code": INTERNAL_ERROR, "message": "internal_server_error"}}
        us_out = _us()
        body.update(usIn=us_in, usOut=us_out, usDiff=us_out - us_in, testnet=False)
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
        if len(data) > MAX_FRAME_BYTES:
            return self._error(None, RpcError(BAD_REQUEST, "bad_request",
                                              {"reason": "frame too large"}), transport)
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._error(None, RpcError(PARSE_ERROR, "Parse error"), transport)
        if not isinstance(message, dict):
            return self._error(None, RpcError(INVALID_REQUEST, "Invalid Request",
                                              {"reason": "not an object"}), transport)
        request_id = message.get("id")
        if not isinstance(request_id, int | str | type(None)) or isinstance(request_id, bool):
            return self._error(None, RpcError(INVALID_REQUEST, "Invalid Request",
                                              {"reason": "bad id"}), transport)
        name = message.get("method")
        if not isinstance(name, str):
            return self._error(request_id, RpcError(INVALID_REQUEST, "Invalid Request",
                                                    {"reason": "method missing"}), transport)
        params = message.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return self._error(request_id, RpcError(-32602, "Invalid params",
                                                    {"reason": "params must be an object"}),
                               transport)
        reply, ok = self.handle(name, params, request_id, session, connection, transport)
        return reply, name, ok

    def _error(self, request_id: Any, error: RpcError,
               transport: str) -> tuple[bytes, str, bool]:
        us = _us()
        if self.metrics is not None:
            self.metrics.request("invalid", transport, False, 0.0, error.code)
        return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_json(),
                             "usIn": us, "usOut": us, "usDiff": 0, "testnet": False}), "", False
