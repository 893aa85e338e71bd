"""For the credential tests: a real gateway whose keys live in a keys file (as ``derivex
serve`` keeps them, so ``derivex keys revoke`` in another process changes what it accepts),
and raw HTTP / WebSocket clients for what ccxt never sends (replays, wrong secrets)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from derivex.gateway import ApiKey, GatewayThread, KeyStore
from tests.gateway.conftest import Server, build_gateway

DERIVEX = [sys.executable, "-m", "derivex.cli"]
WAIT_S = 10.0  # bound on every wait (never reached when green)
_NONCES = itertools.count(time.time_ns())


def revoke(data: Path, client_id: str) -> None:
    """``derivex keys revoke`` in its own process."""
    done = subprocess.run(
        [*DERIVEX, "keys", "revoke", client_id, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


class FileServer(Server):
    """A ``Server`` whose gateway reads ``data/keys.json``; ``keys`` is a second store on
    the same file (what ``derivex keys`` does from another process)."""

    data: Path
    boot: ApiKey  # a key that was in the file when the server started


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    data = tmp_path_factory.mktemp("creds")
    writer = KeyStore(data)
    boot = writer.create(3, name="boot")  # in the file before the server starts
    served = KeyStore(data)
    thread = GatewayThread(lambda: build_gateway(served))
    thread.start()
    server = FileServer(thread, writer, [])
    server.data = data
    assert server.account() == 3  # the boot key's account
    server.boot = boot
    yield server
    thread.stop()


def signature_header(
    key: ApiKey, method: str, target: str, body: str = "", *, client_id: str | None = None
) -> str:
    """A ``deri-hmac-sha256`` header with a fresh timestamp and a unique nonce."""
    ts, nonce = str(time.time_ns() // 1_000_000), str(next(_NONCES))
    sig = hmac.new(
        key.client_secret.encode(),
        f"{ts}\n{nonce}\n{method}\n{target}\n{body}\n".encode(),
        hashlib.sha256,
    ).hexdigest()
    return f"deri-hmac-sha256 id={client_id or key.client_id},ts={ts},sig={sig},nonce={nonce}"


def grant_signature(key: ApiKey, *, client_id: str | None = None) -> dict[str, Any]:
    """``public/auth`` parameters of a ``client_signature`` grant (ccxt.pro's shape)."""
    ts, nonce = time.time_ns() // 1_000_000, str(next(_NONCES))
    sig = hmac.new(
        key.client_secret.encode(), f"{ts}\n{nonce}\n".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "grant_type": "client_signature",
        "client_id": client_id or key.client_id,
        "timestamp": ts,
        "nonce": nonce,
        "data": "",
        "signature": sig,
    }


def http(
    url: str,
    target: str,
    *,
    header: str | None = None,
    body: bytes | None = None,
    method: str = "GET",
) -> dict[str, Any]:
    """One raw HTTP request; the decoded JSON reply, whatever the status."""
    request = urllib.request.Request(url + target, data=body, method=method)
    if header is not None:
        request.add_header("Authorization", header)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def error_of(reply: dict[str, Any]) -> dict[str, Any] | None:
    return reply.get("error")


class Socket:
    """A raw JSON-RPC WebSocket client: ``call`` sends one request and returns its reply;
    notifications are kept in ``notifications``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.notifications: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        await self.ws.send_str(
            json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            )
        )
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed: {message.type} {message.extra}")
                data = json.loads(message.data)
                if data.get("id") == request_id:
                    return data
                self.notifications.append(data)

    async def closed(self) -> tuple[int | None, str]:
        """Read until the server closes; the close code and reason."""
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await self.ws.receive()
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.notifications.append(json.loads(message.data))
                    continue
                if message.type == aiohttp.WSMsgType.CLOSE:
                    return int(message.data), str(message.extra or "")
                raise AssertionError(f"unexpected {message.type}")

    async def notified(self, channel_prefix: str) -> dict[str, Any]:
        """The first notification on a channel starting with ``channel_prefix``."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for note in self.notifications:
                    if note.get("params", {}).get("channel", "").startswith(channel_prefix):
                        return note
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed: {message.type}")
                self.notifications.append(json.loads(message.data))


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))
