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

**Heartbeats and cancel-on-disconnect.** ``public/set_heartbeat`` runs at the router,
as a gateway runs it: every ``interval`` seconds a ``test_request``, and a client that
sent nothing since the last one is closed; closing a client closes its upstream
connections, so each leader cancels its orders where cancel-on-disconnect is set.
``private/enable_cancel_on_disconnect`` / ``disable`` (connection scope) go to every
domain and are remembered: each upstream opened later (a domain first used, or the new
leader after a takeover) is set the same way before it is used, and a domain whose
connection dropped while the setting (or a channel) is on is reconnected at once rather
than at the next request, so the orders on the new leader are covered too. (The account
scope lives in each leader's memory; a new leader does not know it.)

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
from derivex.cluster.routing import show_order_ids, upstream_error
from derivex.gateway.errors import OUTCOME_UNKNOWN, UNAUTHORIZED, RpcError
from derivex.gateway.keys import ApiKey

__all__ = ["ClientSocket", "Upstream"]

_log = logging.getLogger("derivex.cluster.router")

SUBSCRIBE = ("public/subscribe", "private/subscribe")
UNSUBSCRIBE = ("public/unsubscribe", "private/unsubscribe")
HEARTBEAT = ("public/set_heartbeat", "public/disable_heartbeat")
COD = ("private/enable_cancel_on_disconnect", "private/disable_cancel_on_disconnect")
TEST_REQUEST = {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
HEARTBEAT_MIN_S = 10  # Deribit's least interval, as the gateway's default
HEARTBEAT_MAX_S = 3600


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
        self.cancel_on_disconnect = False  # connection scope, replayed on new upstreams
        self.heard = False  # a request since the last test_request
        self._heartbeat: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            async for message in self.socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.heard = True
                    self._spawn(self._handle(message.data))
        finally:
            self._beat_every(0)
            for task in self._tasks:
                task.cancel()
            for upstream in list(self.upstreams.values()):
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
            # run here, with the client: a leader's test_requests would go to the router
            return self._set_heartbeat(method, params)
        if method in SUBSCRIBE or method in UNSUBSCRIBE:
            return await self._subscription(method, params)
        route = router.table.route(method, params)
        if route.error is not None:
            raise RpcError(*route.error)
        result = await router.forward(
            method, route, lambda index: self._call(index, method, route.params)
        )
        if method in COD and params.get("scope", "connection") == "connection":
            self.cancel_on_disconnect = method == COD[0]
        return result

    def _set_heartbeat(self, method: str, params: dict[str, Any]) -> str:
        if method == HEARTBEAT[1]:
            self._beat_every(0)
            return "ok"
        interval = params.get("interval")
        if isinstance(interval, str) and interval.isdigit():
            interval = int(interval)
        if not isinstance(interval, int) or isinstance(interval, bool):
            raise RpcError(-32602, "Invalid params", {"param": "interval"})
        if not HEARTBEAT_MIN_S <= interval <= HEARTBEAT_MAX_S:
            bounds = f"{HEARTBEAT_MIN_S}..{HEARTBEAT_MAX_S}"
            raise RpcError(-32602, "Invalid params", {"param": "interval", "reason": bounds})
        self._beat_every(interval)
        return "ok"

    def _beat_every(self, seconds: float) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if seconds > 0:
            self._heartbeat = asyncio.ensure_future(self._beat(seconds))

    async def _beat(self, seconds: float) -> None:
        """Every ``seconds``: close the client if it sent nothing since the last
        test_request (any request counts, as at a gateway), else send the next one."""
        asked = False
        while not self.socket.closed:
            await asyncio.sleep(seconds)
            if asked and not self.heard:
                _log.info("router websocket closed: heartbeat not answered")
                self._heartbeat = None
                await self.socket.close(code=1000, message=b"heartbeat not answered")
                return
            self.heard = False
            asked = True
            await self._send(TEST_REQUEST)

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
                if self.cancel_on_disconnect:  # before any order goes on this connection
                    try:
                        reply = await upstream.call(COD[0], {"scope": "connection"},
                                                    self.router.timeout_s)  # fmt: skip
                    except ConnectionLost:
                        reply = {"error": "lost"}
                    if "error" in reply:
                        await upstream.close()
                        raise self.router.no_leader(domain, "cancel-on-disconnect not set")
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
            raise upstream_error(failure)
        return reply.get("result")

    def _notified(self, index: int, data: dict[str, Any] | None) -> None:
        if data is None:  # the leader's connection dropped
            wanted = self.channels.get(index) or self.cancel_on_disconnect
            if wanted and not self.socket.closed and index in self.upstreams:
                self._spawn(self._resubscribe(index))
            return
        shown = {**data, "params": show_order_ids(data.get("params"), index)}
        self._spawn(self._send(shown))

    async def _resubscribe(self, index: int, budget_s: float = 60.0) -> None:
        """Connect to domain ``index``'s (new) leader again (its cancel-on-disconnect
        set as before) and subscribe its channels again."""
        deadline = asyncio.get_running_loop().time() + budget_s
        while asyncio.get_running_loop().time() < deadline and not self.socket.closed:
            await asyncio.sleep(self.resubscribe_s)
            by_method: dict[str, list[str]] = {}
            for channel, method in self.channels.get(index, {}).items():
                by_method.setdefault(method, []).append(channel)
            try:
                await self._upstream(index)
                for method, channels in by_method.items():
                    await self._call(index, method, {"channels": channels})
                return
            except RpcError:
                continue
