"""The gateway's routes (aiohttp handlers), as a base class of ``gateway.server.Gateway``:

    GET|POST /api/v2/{public|private}/{method}   REST (ccxt: GET with a query string)
    POST     /api/v2                             a JSON-RPC body
    GET      /ws/api/v2                          WebSocket JSON-RPC and subscriptions
    GET      /metrics                            Prometheus text format

A WebSocket frame takes its turn (``turns``) and is handled by ``Routes._handle``; HTTP
replies wait for the durability gate like WebSocket ones (``Routes._durable``). The state
they use (venue, dispatcher, hub, limits, gate, metrics) is set by ``Gateway.__init__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from time import perf_counter
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST

from derivex.core import query
from derivex.gateway.auth import Authenticator, Session, bearer_token
from derivex.gateway.cancel_on_disconnect import on_disconnect
from derivex.gateway.channels import Hub
from derivex.gateway.connection import HARD_FRAME_LIMIT, Connection, attach_inline, origin_of
from derivex.gateway.durability import DurabilityGate, DurabilityTimeout, outcome_unknown_frames
from derivex.gateway.errors import INVALID_REQUEST, PARSE_ERROR, RpcError
from derivex.gateway.limits import Admission, Limits
from derivex.gateway.rpc import CANCELS, Dispatcher
from derivex.gateway.telemetry import Metrics
from derivex.gateway.trace import TRACE
from derivex.gateway.turns import Turns
from derivex.gateway.venue import Venue


class Routes:
    """The handlers of ``Gateway`` (see the module docstring)."""

    # set by ``Gateway.__init__`` / ``start``
    venue: Venue
    dispatcher: Dispatcher
    hub: Hub
    limits: Limits
    admission: Admission
    auth: Authenticator
    metrics: Metrics
    turns: Turns
    gate: DurabilityGate | None
    connections: set[Connection]
    close_on_auth_failure: bool
    log: Any

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
            on_disconnect(self.venue, conn, self.dispatcher.flush)
            conn.stop()
            self.connections.discard(conn)
            self.metrics.connections.dec()
        return ws

    def _handle(self, conn: Connection, data: bytes | str) -> None:
        """One JSON-RPC frame of ``conn`` (its turn come): answered now, or queued with the
        tick's orders."""
        conn.heard = True  # any request answers a heartbeat's test_request
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
