"""The router: one Deribit-style HTTP API over all the risk domains of a venue.

```
 client ──HTTP, signed──▶ ROUTER ──HTTP, re-signed, same key──▶ leader of domain A
                            │  instrument → domain,        ──▶ leader of domain B
                            │  order id → domain, fan-out + merge (routing.py)
                            └─ dx_endpoints (KV): each domain's leader URL, re-read
                               every poll_s and on any refused connection
```

**Authentication.** The keys are the venue's: every leader and the router follow the
KV bucket ``dx_keys`` (``cluster.shared_keys``; key management through the router:
``cluster.router_keys``). The router checks the client's signature (or a bearer token
of its own ``public/auth``) with its own replay cache, then signs each request it
forwards afresh with that key's secret, so it may rewrite parameters (order ids, the
transfer's source) without breaking a signature.

**Routing and merging** are ``derivex.cluster.routing``'s: a request naming an
instrument or an order goes to one domain; one over the account goes to all and the
answers are merged (``get_account_summary`` sums the domains' amounts and lists each
domain's under ``domains``: one account, per-domain balances).

**Failover.** A leader that does not answer, refuses the connection or answers 10040
``not_leader`` makes the router re-read the endpoints at once. The client gets the
retryable 10040 (``data.reason`` ``no_leader``, ``data.domain``) when nothing was
delivered, or 13888 ``outcome_unknown`` when a command was sent and its answer lost: it
may be in the domain's log; the client looks it up by label
(``private/get_order_state_by_label``) before sending it again. A reply the router
passes on was given by the leader after the frame's PubAck, so an acknowledged order is
in the stream.

**WebSocket** (``/ws/api/v2``, ``cluster.router_ws``): the same routing per request, over
one upstream WebSocket per domain and client connection, subscriptions split by the
domain of each channel's instrument (account channels on every domain). Bearer tokens of
a domain's own gateway are not valid at the router (and vice versa).

Run: ``python -m derivex.cluster.router --urls URLS --domains a,b --directory DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import nats
import orjson
from aiohttp import web
from yarl import URL

from derivex.cluster import router_keys
from derivex.cluster.endpoints import Endpoints
from derivex.cluster.forward import is_command, no_resend, signature
from derivex.cluster.router_ws import ClientSocket
from derivex.cluster.routing import (
    TRANSFER,
    Route,
    RoutingTable,
    merge,
    show_order_ids,
    upstream_error,
)
from derivex.cluster.shared_keys import SharedKeys
from derivex.gateway.auth import Authenticator
from derivex.gateway.connection import origin_of
from derivex.gateway.errors import OUTCOME_UNKNOWN, RETRY, UNAUTHORIZED, RpcError
from derivex.gateway.keys import ApiKey, KeyStore

__all__ = ["Router", "main"]

_log = logging.getLogger("derivex.cluster.router")


class Router:
    """The routing front of ``domains`` (in id order) on the NATS cluster at ``urls``,
    with the venue's keys in ``directory``. ``start`` / ``stop`` on one asyncio loop."""

    def __init__(
        self,
        urls: list[str],
        domains: list[str],
        directory: Path,
        *,
        poll_s: float = 0.5,
        timeout_s: float = 20.0,
    ) -> None:
        self.urls = urls
        self.table = RoutingTable(domains)
        self.keys = KeyStore(directory)
        self.auth = Authenticator(self.keys)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.counts = {"forwarded": 0, "no_leader": 0, "outcome_unknown": 0}
        self.url = ""
        self._nc: Any = None
        self._endpoints: Endpoints | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self.shared: Any = None  # SharedKeys, once connected
        self.clients: set[ClientSocket] = set()  # for closing a revoked key's sockets
        self._tasks: set[asyncio.Task[Any]] = set()
        self.keys.on_revoke.append(self._revoked)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _revoked(self, client_ids: set[str]) -> None:
        """Keys were revoked (here, or in ``dx_keys``): their WebSockets at the router
        are told and closed, which closes their upstream connections. O(clients)."""
        for client in list(self.clients):
            if client.key is not None and client.key.client_id in client_ids:
                client.key = None
                self._spawn(client.revoked())

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Connect to NATS, read the endpoints, listen; returns the router's URL."""
        self._nc = await nats.connect(servers=self.urls, max_reconnect_attempts=-1)
        self._endpoints = Endpoints(self._nc.jetstream(timeout=5.0), self.table.domains)
        with contextlib.suppress(Exception):  # no bucket yet: the poller reads it later
            await self._endpoints.refresh()
        # the venue's keys: one bucket every leader and router follows (shared_keys.py)
        self.shared = SharedKeys(self.keys, self._nc.jetstream(timeout=5.0), self._spawn, _now)
        await self.shared.start()
        self._session = no_resend(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=2.0)
            )
        )
        app = web.Application()
        app.router.add_route("GET", "/api/v2/{scope:public|private}/{name}", self._rest)
        app.router.add_route("POST", "/api/v2/{scope:public|private}/{name}", self._rest)
        app.router.add_route("POST", "/api/v2", self._post)
        app.router.add_route("POST", "/api/v2/", self._post)
        app.router.add_route("GET", "/router", self._status)
        app.router.add_route("GET", "/ws/api/v2", self._websocket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        self._poller = asyncio.create_task(self._poll())
        return self.url

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self.shared is not None:
            await self.shared.close()
        self.auth.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self._refresh()

    async def _refresh(self) -> None:
        assert self._endpoints is not None
        try:
            await self._endpoints.refresh()
        except Exception as error:  # NATS unreachable for now: the next poll
            _log.warning("endpoints not read: %r", error)

    # ---- the HTTP API ----

    async def _status(self, request: web.Request) -> web.Response:
        assert self._endpoints is not None
        known = {name: e.url for name, e in self._endpoints.known.items()}
        body = {"domains": self.table.domains, "leaders": known, "counts": self.counts}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
        await socket.prepare(request)
        assert self._session is not None
        session = ClientSocket(self, socket, self._session, origin_of(request.transport))
        self.clients.add(session)
        try:
            await session.run()
        finally:
            self.clients.discard(session)
        return socket

    async def _rest(self, request: web.Request) -> web.Response:
        name = f"{request.match_info['scope']}/{request.match_info['name']}"
        header = request.headers.get("Authorization", "")
        if request.method == "GET":
            return await self._answer(request, name, dict(request.query), None, header, "")
        body = (await request.read()).decode("utf-8", "replace")
        try:  # a JSON-RPC object with "params", or the parameters themselves
            message = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            return _reply(None, error=RpcError(-32700, "Parse error"))
        params = message.get("params", message) if isinstance(message, dict) else None
        if not isinstance(params, dict):
            return _reply(None, error=RpcError(-32600, "Invalid Request"))
        params = {k: v for k, v in params.items() if k not in ("jsonrpc", "id", "method")}
        return await self._answer(request, name, params, message.get("id"), header, body)

    async def _post(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", "replace")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _reply(None, error=RpcError(-32700, "Parse error"))
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params", {}) if isinstance(message, dict) else None
        if not isinstance(method, str) or not isinstance(params, dict):
            return _reply(None, error=RpcError(-32600, "Invalid Request"))
        header = request.headers.get("Authorization", "")
        return await self._answer(request, method, params, message.get("id"), header, body)

    async def _answer(
        self,
        request: web.Request,
        method: str,
        params: dict[str, Any],
        request_id: Any,
        header: str,
        body: str,
    ) -> web.Response:
        origin = origin_of(request.transport)
        try:
            if method == "public/auth":
                _, result = self.auth.auth(params, origin)
                return _reply(request_id, result)
            key = self._key(request, params, header, body, origin)
            params.pop("access_token", None)
            if method.startswith("private/") and key is None:
                raise RpcError(UNAUTHORIZED, "unauthorized", {"reason": "authorization required"})
            if method == router_keys.REMOVE and key is not None:
                return _reply(request_id, await router_keys.remove(self, key, params))
            route = self.table.route(method, params)
            if route.error is not None:
                raise RpcError(*route.error)
            result = await self.forward(
                method, route, lambda index: self._one(index, method, route.params, key)
            )
        except RpcError as error:
            return _reply(request_id, error=error)
        return _reply(request_id, result)

    def _key(
        self, request: web.Request, params: dict[str, Any], header: str, body: str, origin: str
    ) -> ApiKey | None:
        if header:
            return self.auth.from_header(header, request.method, request.raw_path, body, origin)
        token = params.get("access_token")
        return self.auth.from_token(str(token)) if token else None

    async def forward(
        self, method: str, route: Route, call: Callable[[int], Awaitable[Any]]
    ) -> Any:
        """``call(index)`` on every domain of ``route``: the answer, merged and with the
        venue's order ids (over HTTP or a client's WebSocket)."""
        answers = await asyncio.gather(*(call(index) for index in route.targets))
        pairs = zip(answers, route.targets, strict=True)
        results = [show_order_ids(answer, index) for answer, index in pairs]
        if len(results) == 1:
            result = results[0]
            if method == router_keys.CREATE:
                return await router_keys.created(self, result)
            if method == TRANSFER and isinstance(result, dict):
                result["source"] = self.table.domains[route.targets[0]]
            return result
        return merge(method, results, [self.table.domains[i] for i in route.targets])

    async def _one(
        self, index: int, method: str, params: dict[str, Any], key: ApiKey | None
    ) -> Any:
        """``method`` on domain ``index``'s leader: its result, or its error raised."""
        assert self._session is not None
        domain = self.table.domains[index]
        leader = await self.endpoint(domain)
        # a command goes as a POST: HTTP clients (aiohttp among them) resend an idempotent
        # GET on a dropped connection, and a resent command would be placed twice or
        # reported as never delivered
        command = is_command(method)
        target = f"/api/v2/{method}"
        body = ""
        if command:
            body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "params": params}).decode()
        elif params:
            target += "?" + urlencode({k: _text(v) for k, v in params.items()})
        headers = {"Content-Type": "application/json"}
        if key is not None and method.startswith("private/"):
            headers["Authorization"] = signature(key, "POST" if command else "GET", target, body)
        try:
            async with self._session.request(
                "POST" if command else "GET",
                URL(leader + target, encoded=True),
                headers=headers,
                data=body.encode() if command else None,
            ) as response:
                reply = orjson.loads(await response.read())
        except aiohttp.ClientConnectorError as error:  # nothing delivered
            await self._refresh()
            raise self._no_leader(domain, f"leader unreachable: {type(error).__name__}") from None
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as error:
            await self._refresh()
            if command:
                self.counts["outcome_unknown"] += 1
                raise RpcError(
                    OUTCOME_UNKNOWN,
                    "outcome_unknown",
                    {"reason": "outcome_unknown", "domain": domain, "error": type(error).__name__},
                ) from None
            raise self._no_leader(domain, f"no reply: {type(error).__name__}") from None
        self.counts["forwarded"] += 1
        return await self._result_of(reply, domain)

    async def _result_of(self, reply: Any, domain: str) -> Any:
        """The result of a leader's JSON-RPC ``reply``; its error raised as ``RpcError``."""
        if not isinstance(reply, dict) or not ("result" in reply or "error" in reply):
            raise self._no_leader(domain, "not a JSON-RPC reply")
        failure = reply.get("error")
        if isinstance(failure, dict):
            if failure.get("code") == RETRY:
                await self._refresh()
            raise upstream_error(failure)
        return reply.get("result")

    async def endpoint(self, domain: str) -> str:
        """The URL of ``domain``'s leader; 10040 when none is known."""
        assert self._endpoints is not None
        endpoint = self._endpoints.known.get(domain)
        if endpoint is None:
            await self._refresh()
            endpoint = self._endpoints.known.get(domain)
        if endpoint is None:
            raise self._no_leader(domain, "no leader known")
        return endpoint.url

    async def refresh(self) -> None:
        """Read the endpoints now (a leader did not answer)."""
        await self._refresh()

    def no_leader(self, domain: str, why: str) -> RpcError:
        return self._no_leader(domain, why)

    def _no_leader(self, domain: str, why: str) -> RpcError:
        self.counts["no_leader"] += 1
        return RpcError(RETRY, "not_leader", {"reason": "no_leader", "domain": domain, "why": why})


def _now(function: Callable[[], None]) -> None:
    function()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reply(request_id: Any, result: Any = None, error: RpcError | None = None) -> web.Response:
    now = time.time_ns() // 1_000
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if error is not None:
        body["error"] = error.to_json()
    else:
        body["result"] = result
    body.update(usIn=now, usOut=now, usDiff=0, testnet=False)
    return web.Response(
        body=orjson.dumps(body),
        status=400 if error is not None else 200,
        content_type="application/json",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivex.cluster.router")
    parser.add_argument("--urls", required=True, help="comma-separated nats:// URLs")
    parser.add_argument("--domains", required=True, help="domain names in id order: a,b")
    parser.add_argument("--directory", required=True, type=Path, help="holds keys.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    domains = [name for name in args.domains.split(",") if name]
    router = Router([u for u in args.urls.split(",") if u], domains, args.directory)

    async def run() -> None:
        url = await router.start(args.host, args.port)
        print(f"router: {url} over {', '.join(domains)}", flush=True)
        print(f"  REST       {url}/api/v2/public/get_instruments", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), args.lifetime)
        await router.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
