"""Commands sent to a read replica reach the leader: the replica's HTTP API forwards
every command request, byte for byte, to the domain's leader (found in ``dx_endpoints``,
``cluster.endpoints``) and returns the leader's answer.

A signed request is passed on unchanged: the same path and query, body and
``Authorization`` header. The replica does not check the signature (it would spend the
request's nonce); the leader does, against the same ``keys.json`` (a replica serves a
copy of the leader's data directory), so a signed request stays single-use and a key acts
on the same account. A request authenticated by a token the replica issued (``Bearer``,
or ``access_token``; the leader does not know the replica's tokens) is checked here and
sent on as a POST signed afresh with the token's key. The answer is the leader's, sent
after its frame's PubAck.

A command is a method that reaches the engine with the ``trade`` scope
(``methods.ENGINE``); queries are answered by the replica itself. Over the WebSocket a
replica still answers commands with 10040 ``not_leader``.

Errors: no leader known, or its connection refused: 10040 ``not_leader`` (nothing was
delivered; retry); sent but no answer (the leader died): 13888 ``outcome_unknown`` (look
the order up by label, ``private/get_order_state_by_label``, before sending it again).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from derivex.cluster.endpoints import Endpoints
from derivex.gateway.auth import sign
from derivex.gateway.errors import OUTCOME_UNKNOWN, RETRY, RpcError
from derivex.gateway.keys import ApiKey
from derivex.gateway.methods import ENGINE, METHODS

__all__ = ["CommandForwarder", "is_command", "no_resend", "signature"]

_log = logging.getLogger("derivex.cluster.forward")


def is_command(name: str) -> bool:
    """Whether method ``name`` changes state in the engine (a leader's work)."""
    method = METHODS.get(name)
    return method is not None and method.cost == ENGINE and method.scope == "trade"


def signature(key: ApiKey, http_method: str, target: str, body: str) -> str:
    """A fresh ``deri-hmac-sha256`` header for a request as ``key``."""
    ts = str(time.time_ns() // 1_000_000)
    nonce = secrets.token_hex(8)
    digest = sign(key.client_secret, f"{ts}\n{nonce}\n{http_method}\n{target}\n{body}\n")
    return f"deri-hmac-sha256 id={key.client_id},ts={ts},sig={digest},nonce={nonce}"


def no_resend(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """``session`` made never to resend a request by itself. aiohttp (3.9 on) sends an
    idempotent request (GET) a second time when the connection drops before the reply:
    for a command that reached a leader which then died, the second try meets a refused
    connection and the command would read as never delivered (and be sent again by its
    client): the router's test caught exactly that. aiohttp's own test client turns the
    resend off the same way (``aiohttp.test_utils``)."""
    session._retry_connection = False  # no public switch (see above)
    return session


class CommandForwarder:
    """An aiohttp middleware (``middleware``) forwarding command requests to the leader
    of ``log``'s domain. Runs on the gateway's loop; reads the endpoints over ``log``'s
    connection on its loop thread. Cost per command: one HTTP round trip to the leader."""

    def __init__(self, log: Any, auth: Any = None, timeout_s: float = 20.0) -> None:
        self.log = log
        self.auth = auth  # the replica gateway's ``Authenticator`` (its own tokens)
        self.endpoints = Endpoints(log.js, [log.domain])
        self.timeout_s = timeout_s
        self.forwarded = 0
        self._session: aiohttp.ClientSession | None = None
        self._polling: Any = None

    def poll(self) -> None:
        """Read the leader's endpoint in the background (the replica calls this every
        second), so a command finds it known without waiting on NATS."""
        if self._polling is None or self._polling.done():
            self._polling = asyncio.run_coroutine_threadsafe(
                self.endpoints.refresh(), self.log.loop.loop
            )

    async def _leader(self, fresh: bool) -> str | None:
        if fresh or self.log.domain not in self.endpoints.known:
            future = asyncio.run_coroutine_threadsafe(self.endpoints.refresh(), self.log.loop.loop)
            try:  # briefly: with NATS unreachable, answer 10040 at once rather than late
                await asyncio.wait_for(asyncio.wrap_future(future), 1.0)
            except Exception as error:  # NATS unreachable: answer with what we know
                _log.warning("endpoints not read: %r", error)
        endpoint = self.endpoints.known.get(self.log.domain)
        return endpoint.url if endpoint is not None else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        name = _method_of(request)
        if name is None or not is_command(name):
            return await handler(request)
        return await self.forward(request)

    async def forward(self, request: web.Request) -> web.Response:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=2.0)
            self._session = no_resend(aiohttp.ClientSession(timeout=timeout))
        body = await request.read()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        http_method, target = request.method, request.raw_path
        try:
            resigned = self._resign(request, body)
        except RpcError as error:
            return _error(error.code, error.message)
        if resigned is not None:
            http_method, target, body, headers = resigned
        for attempt in (False, True):  # a second time with the endpoint read afresh
            url = await self._leader(fresh=attempt)
            if url is None:
                break
            try:
                async with self._session.request(
                    http_method, URL(url + target, encoded=True), headers=headers,
                    data=body or None,
                ) as reply:  # fmt: skip
                    payload = await reply.read()
                    self.forwarded += 1
                    return web.Response(
                        body=payload, status=reply.status, content_type="application/json"
                    )
            except aiohttp.ClientConnectorError:
                continue  # nothing delivered: the endpoint may have moved
            except (TimeoutError, aiohttp.ClientError):
                return _error(OUTCOME_UNKNOWN, "outcome_unknown")
        return _error(RETRY, "not_leader")

    def _resign(
        self, request: web.Request, body: bytes
    ) -> tuple[str, str, bytes, dict[str, str]] | None:
        """A request authenticated by one of this replica's tokens (a ``Bearer`` header or
        an ``access_token`` parameter: the leader does not know them) as a POST signed
        with the token's key; None for any other request (passed on as it is). Raises
        ``RpcError`` 13009 for a token this replica did not issue."""
        header = request.headers.get("Authorization", "")
        params: Any = dict(request.query)
        if request.method == "POST" and body.strip():
            try:
                message = orjson.loads(body)
            except orjson.JSONDecodeError:
                return None  # the leader answers the parse error
            params = message.get("params", message) if isinstance(message, dict) else None
        if not isinstance(params, dict) or self.auth is None:
            return None
        params = {k: v for k, v in params.items() if k not in ("jsonrpc", "id", "method")}
        token = params.pop("access_token", None)
        if header.lower().startswith("bearer "):
            token = header.split(" ", 1)[1].strip()
        elif header or not token:
            return None  # signed (the leader checks it) or anonymous
        key = self.auth.from_token(str(token))
        target = request.path
        payload = orjson.dumps({"jsonrpc": "2.0", "id": 1, "params": params})
        headers = {
            "Content-Type": "application/json",
            "Authorization": signature(key, "POST", target, payload.decode()),
        }
        return "POST", target, payload, headers

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _method_of(request: web.Request) -> str | None:
    """The JSON-RPC method of an HTTP API request (None for anything else)."""
    parts = request.path.strip("/").split("/")
    if len(parts) == 4 and parts[:2] == ["api", "v2"]:
        return f"{parts[2]}/{parts[3]}"
    return None


def _error(code: int, message: str) -> web.Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message,
            "data": {"reason": message, "forwarded_by": "read replica"}}}  # fmt: skip
    return web.Response(body=orjson.dumps(body), status=400, content_type="application/json")
