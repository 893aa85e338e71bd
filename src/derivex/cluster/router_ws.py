"""The router's WebSocket API (``/ws/api/v2``): one client connection over every domain.

Per client connection the router opens, when first needed, one WebSocket to each
domain's leader (``Upstream``), authenticated with the client's key once the client has
authenticated to the router (``public/auth`` is answered by the router itself, as over
HTTP). Each request is routed as over HTTP (``routing.RoutingTable``: instrument, order
id, fan-out and merge) and answered with the client's own id; requests are handled
concurrently, so replies may come in another order than the requests (as Deribit's).

**Subscriptions.** ``public/subscribe`` / ``private/subscribe``: a channel naming an
instrument (``book.BTC_USDC-PERPETUAL.100ms``) is subscribed on that instrument's domain;
any other (``user.orders.any.any.raw``, ``user.portfolio.usdc``) on every domain, so the
client receives each domain's notifications on it (order ids shown as the venue's). The
result is the union of what the domains subscribed.

**Failover.** When a leader's connection drops, requests waiting on it are answered 13888
``outcome_unknown`` (a command: ask by label) or 10040 (anything else); the next request
opens a connection to the domain's new leader. Channels subscribed on that domain are
subscribed again on the new leader as soon as it answers (tried every ``resubscribe_s``
for a minute): notifications published during the takeover are not replayed (a book
channel starts again with a snapshot).

``public/set_heartbeat`` is answered "ok" by the router, which sends no heartbeat
requests (its connections are kept alive by WebSocket pings); cancel-on-disconnect is set
on every domain (the leaders cancel when the router's connections to them close, i.e.
when the client's closes).

Cost: one upstream connection per (client, domain) in use; a notification is parsed and
re-serialised once per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from derivex.cluster import router_keys
from derivex.cluster.forward import is_command
from derivex.cluster.routing import show_order_ids
from derivex.gateway.errors import OUTCOME_UNKNOWN, RETRY, UNAUTHORIZED, RpcError
from derivex.gateway.keys import ApiKey

__all__ = ["ClientSocket", "Upstream"]

_log = logging.getLogger("derivex.cluster.router")

SUBSCRIBE = ("public/subscribe", "private/subscribe")
UNSUBSCRIBE = ("public/unsubscribe", "private/unsubscribe")
HEARTBEAT = ("public/set_heartbeat", "public/disable_heartbeat")


class ConnectionLost(Exception):
    """The leader's connection dropped before it answered."""


class Upstream:
    """One WebSocket to a domain leader for one client. ``call`` sends a request and waits
    for its reply; notifications go to ``on_notification``."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, on_notification: Any) -> None:
        self.socket = socket
        self.on_notification = on_notification
        self.closed = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = orjson.loads(message.data)
                waiting = self._pending.pop(data.get("id"), None) if "id" in data else None
                if waiting is not None and not waiting.done():
                    waiting.set_result(data)
                elif data.get("method") == "subscription":
                    self.on_notification(data)
        except (aiohttp.ClientError, orjson.JSONDecodeError, AttributeError) as error:
            _log.info("upstream dropped: %r", error)
        finally:
            self.closed = True
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionLost())
            self._pending.clear()
            if self.on_notification is not None:
                self.on_notification(None)  # tells the client socket

    async def call(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        """The reply object to ``method``; ``ConnectionLost`` if the connection drops."""
        if self.closed:
            raise ConnectionLost()
        number = next(self._ids)
        waiting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[number] = waiting
        request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
        try:
            await self.socket.send_bytes(orjson.dumps(request))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as error:
            self._pending.pop(number, None)
            raise ConnectionLost() from error
        try:
            return await asyncio.wait_for(waiting, timeout_s)
        except TimeoutError:
            self._pending.pop(number, None)
            raise ConnectionLost() from None

    async def close(self) -> None:
        self.on_notification = None
        with contextlib.suppress(Exception):
            await self.socket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


class ClientSocket:
    """One client's WebSocket at the router (``router``: the ``Router``)."""

    def __init__(
        self,
        router: Any,
        socket: web.WebSocketResponse,
        session: aiohttp.ClientSession,
        origin: str,
        resubscribe_s: float = 0.5,
    ) -> None:
        self.router = router
        self.socket = socket
        self.session = session
        self.origin = origin
        self.resubscribe_s = resubscribe_s
        self.key: ApiKey | None = None
        self.upstreams: dict[int, Upstream] = {}
        self.channels: dict[int, dict[str, str]] = {}  # domain -> channel -> subscribe method
        self._opening: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        try:
            async for message in self.socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._spawn(self._handle(message.data))
        finally:
            for task in self._tasks:
                task.cancel()
            for upstream in self.upstreams.values():
                await upstream.close()

    async def revoked(self) -> None:
        """The client's key was revoked: it is told (``session_closed``, as a gateway
        does), its upstream connections close (each leader cancels on disconnect where
        asked) and so does its socket (1008)."""
        self.key = None
        await self._send(
            {"jsonrpc": "2.0", "method": "session_closed",
             "params": {"reason": "credentials_revoked"}}
        )  # fmt: skip
        for upstream in list(self.upstreams.values()):
            await upstream.close()
        self.upstreams.clear()
        with contextlib.suppress(Exception):
            await self.socket.close(code=1008, message=b"credentials revoked")

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        if not self.socket.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.socket.send_bytes(orjson.dumps(body))

    async def _handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700,
                              "message": "Parse error"}})  # fmt: skip
            return
        request_id = message.get("id") if isinstance(message, dict) else None
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params", {}) if isinstance(message, dict) else None
        try:
            if not isinstance(method, str) or not isinstance(params, dict):
                raise RpcError(-32600, "Invalid Request")
            result = await self._answer(method, dict(params))
        except RpcError as error:
            await self._send({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})
            return
        await self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _answer(self, method: str, params: dict[str, Any]) -> Any:
        router = self.router
        if method == "public/auth":
            self.key, result = router.auth.auth(params, self.origin)
            for upstream in self.upstreams.values():  # re-opened with the key when used
                await upstream.close()
            self.upstreams.clear()
            return result
        token = params.pop("access_token", None)
        if token:
            self.key = router.auth.from_token(str(token))
        if method.startswith("private/") and self.key is None:
            raise RpcError(UNAUTHORIZED, "unauthorized", {"reason": "authorization required"})
        if method == router_keys.REMOVE and self.key is not None:
            return await router_keys.remove(router, self.key, params)
        if method in HEARTBEAT:
            # the router's own connections keep alive by WebSocket pings; a leader's
            # heartbeat requests would need answers the client cannot give through us
            return "ok"
        if method in SUBSCRIBE or method in UNSUBSCRIBE:
            return await self._subscription(method, params)
        route = router.table.route(method, params)
        if route.error is not None:
            raise RpcError(*route.error)
        return await router.forward(
            method, route, lambda index: self._call(index, method, route.params)
        )

    async def _subscription(self, method: str, params: dict[str, Any]) -> list[str]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise RpcError(-32602, "Invalid params", {"param": "channels"})
        per_domain: dict[int, list[str]] = {}
        table = self.router.table
        for channel in channels:
            instrument = next((part for part in channel.split(".") if "-" in part), None)
            targets = (
                [table.instrument_domain(instrument)]
                if instrument is not None
                else range(len(table.domains))
            )
            for index in targets:
                per_domain.setdefault(index, []).append(channel)
        answers = await asyncio.gather(
            *(self._call(index, method, {**params, "channels": chosen})
              for index, chosen in per_domain.items())
        )  # fmt: skip
        done: dict[str, None] = {}
        for index, answer in zip(per_domain, answers, strict=True):
            kept = self.channels.setdefault(index, {})
            for channel in answer if isinstance(answer, list) else []:
                done[channel] = None
                if method in SUBSCRIBE:
                    kept[channel] = method
                else:
                    kept.pop(channel, None)
        return list(done)

    async def _upstream(self, index: int) -> Upstream:
        """The open connection to domain ``index``'s leader (opened and authenticated
        with the client's key if needed); 10040 when it cannot be opened."""
        lock = self._opening.setdefault(index, asyncio.Lock())
        async with lock:
            upstream = self.upstreams.get(index)
            if upstream is not None and not upstream.closed:
                return upstream
            domain = self.router.table.domains[index]
            url = await self.router.endpoint(domain)
            try:
                socket = await self.session.ws_connect(url + "/ws/api/v2", heartbeat=30.0)
            except (aiohttp.ClientError, OSError) as error:
                await self.router.refresh()
                raise self.router.no_leader(domain, f"leader unreachable: {error!r}") from None
            upstream = Upstream(socket, lambda data: self._notified(index, data))
            if self.key is not None:
                grant = {"grant_type": "client_credentials", "client_id": self.key.client_id,
                         "client_secret": self.key.client_secret}  # fmt: skip
                try:
                    reply = await upstream.call("public/auth", grant, self.router.timeout_s)
                except ConnectionLost:
                    await upstream.close()
                    raise self.router.no_leader(domain, "connection lost at auth") from None
                if "error" in reply:
                    await upstream.close()
                    raise RpcError(UNAUTHORIZED, "unauthorized", {"domain": domain})
            self.upstreams[index] = upstream
            return upstream

    async def _call(self, index: int, method: str, params: dict[str, Any]) -> Any:
        upstream = await self._upstream(index)
        domain = self.router.table.domains[index]
        try:
            reply = await upstream.call(method, params, self.router.timeout_s)
        except ConnectionLost:
            await self.router.refresh()
            if is_command(method):
                unknown = {"reason": "outcome_unknown", "domain": domain}
                raise RpcError(OUTCOME_UNKNOWN, "outcome_unknown", unknown) from None
            raise self.router.no_leader(domain, "connection lost") from None
        failure = reply.get("error")
        if isinstance(failure, dict):
            code = failure.get("code")
            data = failure.get("data")
            raise RpcError(
                code if isinstance(code, int) else RETRY,
                str(failure.get("message", "")),
                data if isinstance(data, dict) else None,
            )
        return reply.get("result")

    def _notified(self, index: int, data: dict[str, Any] | None) -> None:
        if data is None:  # the leader's connection dropped
            if self.channels.get(index) and not self.socket.closed:
                self._spawn(self._resubscribe(index))
            return
        shown = {**data, "params": show_order_ids(data.get("params"), index)}
        self._spawn(self._send(shown))

    async def _resubscribe(self, index: int, budget_s: float = 60.0) -> None:
        """Subscribe domain ``index``'s channels again on its (new) leader."""
        deadline = asyncio.get_running_loop().time() + budget_s
        while asyncio.get_running_loop().time() < deadline and not self.socket.closed:
            await asyncio.sleep(self.resubscribe_s)
            by_method: dict[str, list[str]] = {}
            for channel, method in self.channels.get(index, {}).items():
                by_method.setdefault(method, []).append(channel)
            try:
                for method, channels in by_method.items():
                    await self._call(index, method, {"channels": channels})
                return
            except RpcError:
                continue
