"""One WebSocket connection of the gateway: its outbound queue and one write per tick, the
pause when the client stops reading and the slow-consumer close, the group-commit hold of
what it sends (``durability``), and the inline parsing of its frames (``attach_inline``:
data frames are handed on as aiohttp's parser produces them). The routes that create
connections are in ``gateway.routes``; the server in ``gateway.server``.
"""

from __future__ import annotations

import asyncio
import collections
import struct
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

from derivex.gateway.auth import Session
from derivex.gateway.durability import DurabilityGate, outcome_unknown_frames
from derivex.gateway.limits import Limits, Peer
from derivex.gateway.telemetry import logger
from derivex.gateway.trace import TRACE, TracedParser

HARD_FRAME_LIMIT = 4 << 20  # beyond this aiohttp closes the socket (1009)
SLOW_CONSUMER = 1008  # WebSocket close code (policy violation) of a slow consumer


class Connection:
    """One WebSocket: its session (auth state) and the frames waiting to go out.

    Frames queued during one event-loop tick leave in ONE transport write at its end (one
    system call for a batch of replies and notifications, not one per frame). While a
    request is handled its connection is held (``hold``): the notifications it causes wait
    until its reply is queued (``reply``), so the reply goes out first.

    Slow consumers (``Limits``): once the socket's write buffer passes
    ``pause_reading_bytes`` (the transport's ``pause_writing``) nothing more is written and
    the client's requests are no longer read, until it drains the buffer; frames queued
    meanwhile wait here, and past ``max_outbound_bytes`` of them, or after
    ``send_stall_s`` paused, the connection is closed with code 1008 and the reason
    ``slow consumer: ...`` (written after what is buffered; the socket is aborted if that
    is not read within ``close_grace_s``)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        limits: Limits | None = None,
        peer: Peer | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.peer = peer
        self.session = Session(origin=origin_of(transport))
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        limits = limits or Limits()
        self.max_outbound_bytes = (
            limits.max_outbound_bytes if limits.max_outbound_bytes > 0 else 1 << 62
        )
        self.send_stall_s = limits.send_stall_s
        self.close_grace_s = limits.close_grace_s
        self.writes_paused = False
        self._stall: asyncio.TimerHandle | None = None
        # frames read beyond this tick's budgets (``turns.Turns``), and the budget
        self.parked: collections.deque[bytes] = collections.deque()
        self.parked_at = 0.0  # (perf_counter) when the first of ``parked`` was parked
        self.tick = -1
        self.tick_frames = 0
        if peer is not None:
            peer.on_pause, peer.on_resume = self.pause, self.resume
        self._held: list[bytes] | None = None
        self._scheduled = False
        self.closing = False
        self._loop = asyncio.get_running_loop()
        self._heartbeat: asyncio.Task[None] | None = None
        # ``public/set_heartbeat``: the least interval, and whether a request came in since
        # the last test_request (``_beat`` closes the connection when none did)
        self.heartbeat_min_s = limits.heartbeat_min_s
        self.heard = True
        # ``private/enable_cancel_on_disconnect`` with the connection scope
        self.cancel_on_disconnect = False
        self._closer: asyncio.Future[Any] | None = None
        # group commit (durability.py): frames of each tick wait, tagged with the journal's
        # last seq then, until the flush covering it returns
        self.gate: DurabilityGate | None = None
        self._held_for_disk: collections.deque[tuple[int, list[bytes]]] = collections.deque()

    def send(self, data: bytes) -> None:
        """Queue a notification (non-blocking)."""
        if self.closing:
            return
        if self._held is not None:
            self._held.append(data)
            return
        self._queue(data)

    def reply(self, data: bytes) -> None:
        """Queue a request's reply, then the notifications held while it was handled."""
        held, self._held = self._held, None
        if self.closing:
            return
        if held is None and self._scheduled:
            self.outbox.append(data)  # ``_queue``'s common case: a write is already due
            self.outbox_bytes += len(data)
            if self.outbox_bytes > self.max_outbound_bytes:
                self.slow_consumer(f"more than {self.max_outbound_bytes} bytes unread")
            return
        self._queue(data)
        for frame in held or ():
            self._queue(frame)

    def hold(self) -> None:
        self._held = []

    def _queue(self, data: bytes) -> None:
        self.outbox.append(data)
        self.outbox_bytes += len(data)
        if self.outbox_bytes > self.max_outbound_bytes:
            self.slow_consumer(f"more than {self.max_outbound_bytes} bytes unread")
        elif not self._scheduled and not self.writes_paused:
            self._scheduled = True
            self._loop.call_soon(self.write_pending)

    def write_pending(self) -> None:
        """Write the queued frames now (one system call), unless the client is behind
        (writes paused: ``resume`` writes them)."""
        self._scheduled = False
        transport = self.transport
        if self.closing or self.ws.closed or transport is None or transport.is_closing():
            self.outbox.clear()
            self.outbox_bytes = 0
            return
        if self.writes_paused or not (self.outbox or self._held_for_disk):
            return
        frames, self.outbox, self.outbox_bytes = self.outbox, [], 0
        gate = self.gate
        if gate is not None:
            journal = gate.journal
            durable, held = journal.durable_seq, self._held_for_disk
            if held or durable < journal.last_seq:
                if frames:
                    held.append((journal.last_seq, frames))
                frames = []
                while held and held[0][0] <= durable:
                    frames += held.popleft()[1]
                if held:
                    gate.waiting[self] = None
                    kick = getattr(journal, "kick", None)
                    if kick is not None:  # (a worker: the watcher thread polls the disk)
                        kick()
                if not frames:
                    return
        transport.write(text_frames(frames))  # type: ignore[attr-defined]

    def expire_held(self) -> None:
        """The journal stalled (``DurabilityGate.timeout_s``): the replies held for the disk
        are answered 13888 now, error replies sent as they are; notifications keep waiting."""
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return
        now: list[bytes] = []
        still: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        for seq, frames in self._held_for_disk:
            sent, later = outcome_unknown_frames(frames)
            now += sent
            if later:
                still.append((seq, later))
        self._held_for_disk = still
        if still and self.gate is not None:
            self.gate.waiting[self] = None
        if now:
            transport.write(text_frames(now))  # type: ignore[attr-defined]

    def pause(self) -> None:
        """The socket's write buffer is full (``pause_writing``): stop writing and stop
        reading this client's requests until it drains; a slow consumer if it stays so
        for ``send_stall_s``."""
        self.writes_paused = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()  # type: ignore[attr-defined]
        if self.send_stall_s > 0 and self._stall is None:
            self._stall = self._loop.call_later(
                self.send_stall_s,
                self.slow_consumer,
                f"replies not read for {self.send_stall_s:g} s",
            )

    def resume(self) -> None:
        """The client drained its socket: write what waits and read its requests again."""
        self.writes_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return
        if not self.parked:
            transport.resume_reading()  # type: ignore[attr-defined]
        if self.outbox and not self._scheduled:
            self.write_pending()

    def slow_consumer(self, why: str) -> None:
        """Close as a slow consumer: drop what is queued, write the close frame (1008,
        ``slow consumer: why``) after what the socket holds, close; abort after
        ``close_grace_s`` if the client does not read it."""
        if self.closing:
            return
        self.stop()
        transport = self.transport
        logger().info("websocket closed: slow consumer", reason=why)
        if transport is None or transport.is_closing():
            return
        reason = f"slow consumer: {why}".encode()[:120]
        close = bytes((0x88, 2 + len(reason))) + SLOW_CONSUMER.to_bytes(2, "big") + reason
        transport.write(close)  # type: ignore[attr-defined]
        # half-close (FIN after the buffered frames), and read again, discarding: a socket
        # closed with unread input resets the connection and the client would lose the
        # frames and the reason
        transport.write_eof()  # type: ignore[attr-defined]
        self.parked.clear()
        transport.resume_reading()  # type: ignore[attr-defined]
        self._loop.call_later(self.close_grace_s, transport.abort)  # type: ignore[attr-defined]

    def set_heartbeat(self, seconds: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if seconds > 0:
            self._heartbeat = asyncio.ensure_future(self._beat(seconds))

    async def _beat(self, seconds: int) -> None:
        """Every ``seconds``: close the connection if no request came in since the last
        test_request (Deribit's rule: a client answers one with ``public/test``; any
        request counts here), else send the next one."""
        data = orjson.dumps(
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
        )
        asked = False
        while True:
            await asyncio.sleep(seconds)
            if asked and not self.heard:
                self._heartbeat = None  # (this task ends here: ``stop`` must not cancel it)
                logger().info("websocket closed: heartbeat not answered", interval_s=seconds)
                self.close(1000, b"heartbeat not answered")
                return
            self.heard = False
            asked = True
            self.send(data)

    def stop(self) -> None:
        self.closing = True
        self.outbox.clear()
        self.parked.clear()
        self.outbox_bytes = 0
        self._held_for_disk.clear()
        self.set_heartbeat(0)
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self.peer is not None:
            self.peer.on_pause = self.peer.on_resume = None

    def close(self, code: int, message: bytes) -> None:
        """Write what is queued, then close with ``code`` and ``message`` (the reason the
        client sees); nothing more is read or answered."""
        self.write_pending()
        self.stop()
        self._closer = asyncio.ensure_future(self.ws.close(code=code, message=message))


def origin_of(transport: asyncio.BaseTransport | None) -> str:
    """``host:port`` of the client end of a connection ("" if unknown): the origin that
    failed authentication attempts are counted against."""
    name = transport.get_extra_info("peername") if transport is not None else None
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) and len(name) >= 2 else ""


def text_frames(payloads: list[bytes]) -> bytes:
    """Server-to-client WebSocket text frames (final, unmasked, uncompressed: RFC 6455
    section 5.2), concatenated.

    >>> text_frames([b"hi", b""])
    b'\\x81\\x02hi\\x81\\x00'
    """
    parts: list[bytes] = []
    headers = _HEADERS
    for payload in payloads:
        size = len(payload)
        header = headers.get(size)
        if header is None:
            header = (
                bytes((0x81, size))
                if size < 126
                else _MEDIUM.pack(0x81, 126, size)
                if size < 65536
                else _LONG.pack(0x81, 127, size)
            )
            if size < 65536:
                headers[size] = header
        parts.append(header)
        parts.append(payload)
    return b"".join(parts)


_HEADERS: dict[int, bytes] = {}  # frame header by payload size (below 64 KiB), as met
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


class _InlineQueue(WebSocketDataQueue):  # type: ignore[misc, valid-type]
    """aiohttp's per-connection message queue, except that data frames are handed to
    ``on_message`` as the parser produces them (inside the protocol's ``data_received``)
    instead of being queued for ``receive()``. Control frames (close, ping, pong, errors)
    still go through the queue to the connection's receive loop."""

    def __init__(
        self,
        protocol: Any,
        limit: int,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[bytes], None],
    ) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.on_message = on_message

    def feed_data(self, data: Any, size: int) -> None:
        if data[0] in _DATA_TYPES:
            self.on_message(data[1])
        else:
            WebSocketDataQueue.feed_data(self, data, size)


_DATA_TYPES = (WSMsgType.TEXT, WSMsgType.BINARY)


def attach_inline(
    ws: web.WebSocketResponse, request: web.Request, on_message: Callable[[bytes], None]
) -> bool:
    """Have ``ws``'s data frames delivered to ``on_message`` synchronously, as they are
    parsed, instead of through ``async for message in ws``: no future, task switch and
    ``receive()`` per message (measured: bench/gateway_bench.py). This replaces aiohttp's
    frame queue and parser of a prepared response (private attributes, present in aiohttp
    3.10 to 3.14); returns False and changes nothing when they are not as expected, and the
    receive loop then gets data frames as usual. Frames parsed before the swap (sent with
    the upgrade request) are handed over in order."""
    old = getattr(ws, "_reader", None)
    protocol = getattr(request, "_protocol", None)
    if (
        not isinstance(old, WebSocketDataQueue)
        or type(old) is not WebSocketDataQueue
        or protocol is None
        or getattr(protocol, "_payload_parser", None) is None
        or getattr(ws, "_parser", None) is not protocol._payload_parser
    ):
        return False
    traced: TracedParser | None = None
    if TRACE is not None:
        deliver = on_message

        def on_message(data: bytes) -> None:
            assert traced is not None
            traced.frames += 1
            deliver(data)

    queue = _InlineQueue(protocol, old._limit // 2, asyncio.get_running_loop(), on_message)
    parser: Any = WebSocketReader(queue, HARD_FRAME_LIMIT, compress=False, decode_text=False)
    if TRACE is not None:
        parser = traced = TracedParser(parser, queue)
    pending = list(old._buffer)
    old._buffer.clear()
    ws._reader = queue  # type: ignore[assignment]
    ws._parser = parser  # type: ignore[attr-defined]
    protocol._payload_parser = parser
    for message, size in pending:
        queue.feed_data(message, size)
    return True
