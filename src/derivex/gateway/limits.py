"""Resource limits at the gateway's edge (docs/limits.md): what one address, one TCP
connection and one WebSocket may hold of the server.

- ``Limits``: every limit, with the defaults a public venue would use; ``derivex serve
  --limit NAME=VALUE`` overrides any of them.
- ``Admission``: the listening socket's protocol factory. It refuses a connection beyond
  ``max_connections_per_address`` (HTTP 429 and close), closes one that has not sent a
  complete request head within ``header_timeout_s``, and gives each connection a ``Peer``:
  its address and its public-method rate buckets (per connection and per address).

Idle HTTP keep-alive connections are closed by aiohttp after ``idle_timeout_s``
(``keepalive_timeout``); WebSockets are pinged every ``ws_heartbeat_s`` and closed when the
pong does not come. Slow WebSocket consumers are handled by ``connection.Connection`` with
``max_outbound_bytes`` and ``pause_reading_bytes``; overload shedding by ``overload``.

>>> Limits.from_options(["max_connections_per_address=8", "header_timeout_s=2.5"]).header_timeout_s
2.5
>>> Limits.from_options(["nope=1"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: unknown limit 'nope' (known: max_connections_per_address, ...)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from derivex.gateway.ratelimit import RateLimiter


@dataclass(frozen=True)
class Limits:
    """The gateway's resource limits (0 or a negative value switches a limit off)."""

    #: TCP connections (HTTP and WebSocket together) open at once from one IP address
    max_connections_per_address: int = 32
    #: public methods: sustained requests per second and burst, per connection ...
    public_rate_per_connection: float = 20.0
    public_burst_per_connection: float = 100.0
    #: ... and per address (all its connections and HTTP requests together)
    public_rate_per_address: float = 100.0
    public_burst_per_address: float = 500.0
    #: WebSocket frames queued for a client beyond its socket buffer: past this the client
    #: is a slow consumer and is closed (1008 "slow consumer: ...")
    max_outbound_bytes: int = 4 << 20
    #: the socket's write buffer size at which writes stop and the connection's requests
    #: are no longer read, until the client drains it
    pause_reading_bytes: int = 1 << 20
    #: a connection whose writes stay paused this long is a slow consumer too
    send_stall_s: float = 30.0
    #: after a slow-consumer close, the client has this long to read what is buffered and
    #: the close frame before the socket is aborted
    close_grace_s: float = 5.0
    #: a new connection must send a complete request head (HTTP or the WebSocket upgrade)
    #: within this time
    header_timeout_s: float = 10.0
    #: an idle HTTP keep-alive connection is closed after this time
    idle_timeout_s: float = 60.0
    #: WebSocket ping interval; a client that does not answer in half of it is closed
    ws_heartbeat_s: float = 30.0
    #: WebSocket frames handled per connection per event-loop tick; the rest of what was
    #: read waits for the next ticks, and the connection is not read meanwhile (a tick's
    #: work, hence everyone's latency, is bounded by the connections, not by one flood)
    max_frames_per_tick: int = 64
    #: ... and frames of all connections handled until they took this long in the tick
    #: (the rest, except cancels, wait for the next ticks: a tick, hence a cancel's wait,
    #: stays short under any flood; expensive requests take turns with everyone's)
    max_time_per_tick_s: float = 0.0005
    #: ... and the share of every ``busy_window_s`` that handling frames and flushing
    #: orders may take (1: no limit; 0: automatic, ``worker_busy_share``). Past it, frames
    #: other than cancels wait for the next window and the event loop idles: a process that
    #: never saturates its core is woken at once when a cancel arrives, where a saturated
    #: one waits for its time slice behind the others
    busy_share: float = 0.0
    busy_window_s: float = 0.005
    #: bytes read from one WebSocket connection's socket at a time (0: the event loop's
    #: 256 KiB, about 1,500 order frames): what is read is parsed at once, before any budget
    #: applies, so this bounds the work one flooding connection adds to the iteration that
    #: everyone waits for (8 KiB: about 50 order frames, 0.1 ms)
    ws_read_bytes: int = 8192
    #: new orders offered in one event-loop tick (the queue in front of the engine) past
    #: which those that can take liquidity are shed (10047), and past which every other
    #: new order is shed too (10040)
    shed_taking_at: int = 128
    shed_all_at: int = 256
    #: ... and once requests have waited this long for their turn (the age of the oldest
    #: backlog of frames read but not yet handled: ``Turns.delay_s``), new orders that can
    #: take liquidity are shed, and past the second figure every other new order too. The
    #: per-tick counts above cannot see a queue that the tick budgets push back into the
    #: sockets; this sees how long it makes requests wait (seconds, 0: off)
    shed_taking_after_s: float = 0.02
    shed_all_after_s: float = 0.05
    #: the least interval ``public/set_heartbeat`` accepts (Deribit's: 10 s)
    heartbeat_min_s: int = 10

    @classmethod
    def from_options(cls, items: Iterable[str], base: Limits | None = None) -> Limits:
        """``base`` (the defaults) with ``NAME=VALUE`` overrides; raises ``ValueError``
        naming an unknown limit or a bad value."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name = name.strip().replace("-", "_")
            if name not in fields:
                raise ValueError(f"unknown limit {name!r} (known: {', '.join(fields)})")
            if not sep:
                raise ValueError(f"limit {name!r}: expected NAME=VALUE")
            kind = int if fields[name].type in ("int", int) else float
            try:
                changes[name] = kind(text)
            except ValueError:
                raise ValueError(f"limit {name!r}: {text!r} is not a number") from None
        return dataclasses.replace(base or cls(), **changes)


class Peer:
    """One TCP connection as the limits see it: its address and public-method buckets."""

    __slots__ = ("address", "admission", "bucket", "on_pause", "on_resume", "timer")

    def __init__(self, address: str, admission: Admission) -> None:
        limits = admission.limits
        self.address = address
        self.admission = admission
        # one bucket (key ""): the same token-bucket arithmetic as the address's
        self.bucket = (
            RateLimiter(limits.public_burst_per_connection, limits.public_rate_per_connection)
            if limits.public_rate_per_connection > 0
            else None
        )
        # the WebSocket on this connection, told when the socket's writes pause and resume
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self.timer: asyncio.TimerHandle | None = None  # the request-head timeout

    def started(self) -> None:
        """A complete request head arrived: the head timeout is over."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def allow_public(self, cost: float) -> str | None:
        """Take ``cost`` from this connection's and this address's public budgets; None if
        allowed, else which limit refused (the connection's bucket is spent first, so a
        refused request still costs its connection: a flood stays refused)."""
        if self.bucket is not None and not self.bucket.allow("", cost):
            return "public rate limit per connection"
        by_address = self.admission.by_address
        if by_address is not None and not by_address.allow(self.address, cost):
            return "public rate limit per address"
        return None


REFUSED = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class Admission:
    """Connections per address, request-head timeouts and each connection's ``Peer``.
    ``factory(make_handler)`` is the protocol factory for ``loop.create_server``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: dict[str, int] = {}  # address -> open connections
        self.peers: dict[Any, Peer] = {}  # transport -> its peer
        self.refused = 0
        self.timed_out = 0
        self.by_address = (
            RateLimiter(limits.public_burst_per_address, limits.public_rate_per_address)
            if limits.public_rate_per_address > 0
            else None
        )

    def factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], Guarded]:
        return lambda: Guarded(self, make_handler())

    def peer_of(self, transport: Any) -> Peer | None:
        return self.peers.get(transport)

    def admit(self, transport: asyncio.BaseTransport) -> Peer | None:
        """The new connection's peer, or None (and the refusal written, the transport
        closing) when its address has ``max_connections_per_address`` open."""
        name = transport.get_extra_info("peername")
        address = str(name[0]) if isinstance(name, tuple) and name else "?"
        cap = self.limits.max_connections_per_address
        count = self.open.get(address, 0)
        if 0 < cap <= count:
            self.refused += 1
            body = b"too many connections from this address (limit %d)\n" % cap
            transport.write(REFUSED % (len(body), body))  # type: ignore[attr-defined]
            transport.close()
            return None
        self.open[address] = count + 1
        peer = self.peers[transport] = Peer(address, self)
        return peer

    def release(self, transport: Any) -> None:
        peer = self.peers.pop(transport, None)
        if peer is None:
            return
        count = self.open.get(peer.address, 1) - 1
        if count > 0:
            self.open[peer.address] = count
        else:
            self.open.pop(peer.address, None)

    def prune(self) -> None:
        """Forget the address buckets that are full again (bounds their memory)."""
        if self.by_address is not None:
            self.by_address.prune()


class Guarded(asyncio.Protocol):
    """aiohttp's request handler behind the admission checks: every protocol call is
    passed on; ``connection_made`` admits (or refuses) and starts the request-head timer,
    which ``Peer.started`` (called for the first request) cancels."""

    def __init__(self, admission: Admission, inner: Any) -> None:
        self.admission = admission
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer = self.admission.admit(transport)
        if self.peer is None:
            return
        self.transport = transport
        limits = self.admission.limits
        if limits.pause_reading_bytes > 0:
            # the socket tells ``pause_writing`` at this size (the WebSocket stops writing
            # and reading); resume at a quarter of it
            transport.set_write_buffer_limits(high=limits.pause_reading_bytes)  # type: ignore[attr-defined]
        self.inner.connection_made(transport)
        if limits.header_timeout_s > 0:
            self.peer.timer = asyncio.get_running_loop().call_later(
                limits.header_timeout_s, self._head_timeout
            )

    def _head_timeout(self) -> None:
        if self.peer is not None:
            self.peer.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.admission.timed_out += 1
            self.transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self.inner.pause_writing()
        if self.peer is not None and self.peer.on_pause is not None:
            self.peer.on_pause()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
        if self.peer is not None and self.peer.on_resume is not None:
            self.peer.on_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is None:
            return  # refused: aiohttp never saw it
        self.peer.started()
        self.admission.release(self.transport)
        self.inner.connection_lost(exc)


def worker_busy_share(workers: int, cores: int | None = None) -> float:
    """The automatic ``busy_share`` of each of ``workers`` gateway workers (``derivex serve
    --workers N``) on a machine with ``cores`` cores (if None: the cores this process may
    run on, ``os.sched_getaffinity``, else ``os.cpu_count()``). The workers, the engine, the
    journal writer and market data are ``workers + 3`` busy processes; on fewer cores each
    worker takes at most its fair share of them, so that under a flood the engine and the
    journal writer, which every cancel waits for, find a free core, and a worker is idle
    often enough to be woken at once by a cancel (measured: docs/limits.md, "Worker mode
    on few cores"). 1 (no limit) once there is a core each. A single process (no workers)
    has no automatic limit.

    >>> worker_busy_share(2, 2), worker_busy_share(2, 16), worker_busy_share(4, 4)
    (0.4, 1.0, 0.5714285714285714)
    """
    import os

    if cores is None:
        affinity = getattr(os, "sched_getaffinity", None)
        cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return min(1.0, cores / (workers + 3))
