"""A raw JSON-RPC WebSocket client for the gateway tests: ``call`` (the whole reply),
``notifications`` (subscription frames by channel, in arrival order), ``heartbeats``
(the server's test_request frames), and ``answer_heartbeats`` (answer them with
``public/test`` as Deribit asks, or ignore them)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp


class RpcClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session, self.ws = session, ws
        self.worker = ws._response.headers.get("X-Derivex-Worker", "?")  # type: ignore[union-attr]
        self.closed = asyncio.get_running_loop().create_future()
        self.notifications: dict[str, list[Any]] = {}
        self.heartbeats = 0
        self.answer_heartbeats = True
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._arrived = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str) -> RpcClient:
        session = aiohttp.ClientSession()
        return cls(session, await session.ws_connect(url, max_msg_size=0, autoping=True))

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(message.data)
                if frame.get("method") == "subscription":
                    params = frame["params"]
                    self.notifications.setdefault(params["channel"], []).append(params["data"])
                    self._arrived.set()
                elif frame.get("method") == "heartbeat":
                    self.heartbeats += 1
                    if self.answer_heartbeats:
                        await self.ws.send_str(
                            json.dumps(
                                {"jsonrpc": "2.0", "id": 0, "method": "public/test", "params": {}}
                            )
                        )
                else:
                    waiter = self._waiting.pop(frame.get("id"), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))
            if not self.closed.done():
                self.closed.set_result(self.ws.close_code)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        request_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        await self.ws.send_str(
            json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            )
        )
        return await asyncio.wait_for(waiter, timeout)

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The ``result`` of a call that must succeed."""
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]

    async def auth(self, client_id: str, secret: str) -> None:
        await self.result(
            "public/auth",
            {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )

    async def wait_for(self, channel: str, count: int = 1, timeout: float = 30.0) -> list[Any]:
        """The first ``count`` notifications of ``channel`` (waiting up to ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.notifications.get(channel, ())) < count:
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{channel}: {self.notifications.get(channel)} in {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self.notifications[channel][:count]

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def drop(self) -> None:
        """End the connection without a close handshake (the TCP socket just goes)."""
        conn = self.ws._conn  # (aiohttp keeps the TCP connection there)
        transport = conn.transport if conn is not None else None
        if transport is not None:
            transport.abort()
        await self.session.close()
