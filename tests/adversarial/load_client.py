"""Test support for the load tests: a gateway on loopback with chosen ``Limits``, and a raw
WebSocket client over a plain socket that reads only when told to (a real slow consumer:
client libraries read in the background)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.gateway import ApiKey, Gateway, GatewayThread, KeyStore, Venue
from derivex.gateway.limits import Limits
from derivex.gateway.listing import list_all, perpetual

INSTRUMENT = "BTC_USDC-PERPETUAL"
GUARD_S = 20.0  # a bound on every wait, so a broken server fails the test instead of hanging


@dataclass
class Served:
    thread: GatewayThread
    keys: KeyStore

    @property
    def gateway(self) -> Gateway:
        assert self.thread.gateway is not None
        return self.thread.gateway

    @property
    def port(self) -> int:
        return int(self.thread.url.rsplit(":", 1)[1])

    def account_key(self, deposit: int = 10**13) -> ApiKey:
        def create() -> int:
            exchange = self.gateway.venue.exchange
            account = exchange.create_account()
            assert exchange.deposit(account, deposit).accepted
            return account

        return self.keys.create(self.thread.call(create), ("read", "trade"))


@contextlib.contextmanager
def serving(limits: Limits) -> Iterator[Served]:
    keys = KeyStore(None)

    def build() -> Gateway:
        exchange = Exchange(EngineConfig(risk_checks=False))
        return Gateway(Venue(exchange, list_all(exchange, [perpetual("BTC")])), keys, limits=limits)

    thread = GatewayThread(build)
    thread.start()
    try:
        yield Served(thread, keys)
    finally:
        thread.stop()


def request(request_id: int, method: str, **params: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def masked(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame (RFC 6455: masked; the all-zero key leaves the payload as is)."""
    size = len(payload)
    head = (
        bytes((0x80 | opcode, 0x80 | size))
        if size < 126
        else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    )
    return head + b"\0\0\0\0" + payload


class RawWebSocket:
    """A WebSocket over a plain blocking socket: ``send`` writes frames, nothing is read
    until ``frames`` is called. ``receive_buffer``: the socket's receive buffer (small: the
    kernel holds little for a client that does not read)."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(GUARD_S)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            b"GET /ws/api/v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        self.head = head

    def send(self, payloads: list[bytes]) -> None:
        """All of ``payloads`` as text frames, in one write."""
        self.sock.sendall(b"".join(masked(p) for p in payloads))

    def frames(self, until_id: Any = None) -> Iterator[tuple[int, bytes]]:
        """``(opcode, payload)`` of the server's frames as they are read, until the close
        frame (included), the end of the stream, or a reply with id ``until_id``."""
        while True:
            frame = self._next()
            if frame is None:
                return
            yield frame
            opcode, payload = frame
            if opcode == 0x8:
                return
            if (
                until_id is not None
                and opcode == 0x1
                and orjson.loads(payload).get("id") == until_id
            ):
                return

    def _next(self) -> tuple[int, bytes] | None:
        while True:
            if len(self.buffer) >= 10 or (len(self.buffer) >= 2 and self.buffer[1] & 0x7F < 126):
                first, second = self.buffer[0], self.buffer[1] & 0x7F
                start, size = 2, second
                if second == 126:
                    start, size = 4, struct.unpack("!H", self.buffer[2:4])[0]
                elif second == 127:
                    start, size = 10, struct.unpack("!Q", self.buffer[2:10])[0]
                if len(self.buffer) >= start + size:
                    payload = self.buffer[start : start + size]
                    self.buffer = self.buffer[start + size :]
                    return first & 0x0F, payload
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionResetError, TimeoutError):
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def close_reason(payload: bytes) -> tuple[int, str]:
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def wait_for(condition: Any, what: str) -> None:
    """Poll ``condition`` until true; fails after ``GUARD_S`` (a bound, not a timing)."""
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)
