"""Fair turns on the event loop (docs/limits.md, "Fair turns"): every WebSocket frame goes
through ``Turns.offer``, which handles it now or parks it for a later tick.

In one event-loop tick a connection has at most ``max_frames_per_tick`` frames handled, and
all connections together at most ``max_time_per_tick_s`` of handling; the frames beyond
wait, in order, on their connection (``parked``), which is not read meanwhile. Parked
frames are handled first in the next ticks (their callbacks run before the loop's next
reads). A cancel frame is never parked unless frames of its own connection are parked
before it, so a cancel never waits for a flood. A tick's work, hence everyone's wait, is
bounded by the budgets, not by what one client sends. The order flush that ends a tick
(``Dispatcher``: one engine call for the tick's new orders) runs outside any frame's
handling; its time is charged (``charge``) to the tick it runs in, so that tick handles
that much less and a loop iteration stays near ``max_time_per_tick_s`` in all.

The connection needs ``closing``, ``transport``, ``writes_paused``, ``parked`` (a deque),
``parked_at``, ``tick`` and ``tick_frames``; ``handle(connection, frame)`` does the work.
``delay_s`` (how long the backlog has waited for its turn) is the shedding's second signal
(``overload``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Any

import orjson

from derivex.gateway.rpc import CANCELS

CANCEL = b"private/cancel"  # (a byte search before the parse of ``is_cancel``)


def is_cancel(data: bytes) -> bool:
    """Whether ``data`` is a request for a cancel method (``rpc.CANCELS``). Parses only
    frames that name one, and is asked only past the budgets.

    >>> is_cancel(b'{"method":"private/cancel","params":{"order_id":"1"}}')
    True
    >>> is_cancel(b'{"method":"public/test","params":{"label":"private/cancel"}}')
    False
    """
    if CANCEL not in data:
        return False
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return type(message) is dict and message.get("method") in CANCELS


class Turns:
    """The per-tick budgets of one server. Cost per frame: two clock reads and a few
    attribute updates."""

    def __init__(
        self,
        handle: Callable[[Any, bytes], None],
        frames_per_tick: int,
        time_per_tick_s: float,
        busy_share: float = 1.0,
        window_s: float = 0.005,
    ) -> None:
        self.handle = handle
        self.frames_per_tick = frames_per_tick if frames_per_tick > 0 else 1 << 62
        self.time_per_tick_s = time_per_tick_s if time_per_tick_s > 0 else float("inf")
        #: the share of each ``window_s`` that handling and flushes may take (1: no limit);
        #: past it, frames other than cancels wait for the next window and the loop idles
        self.window_s = window_s
        self.window_budget_s = (
            busy_share * window_s if 0 < busy_share < 1 and window_s > 0 else float("inf")
        )
        self._window_start = 0.0
        self._window_used = 0.0
        self.tick = 0  # event-loop ticks with frames, counted
        self._open = False
        self._used_s = 0.0  # spent handling frames in this tick
        #: how long the backlog being worked off has waited: at each turn of a connection
        #: with parked frames, the age of its oldest (connections take their turns in the
        #: order they were parked, so this is about the oldest of all); 0 once nothing is
        #: parked. The overload signal of the shedding (``overload``)
        self.delay_s = 0.0
        self._parked_connections = 0

    def offer(self, conn: Any, data: bytes) -> None:
        """Handle ``data`` (a frame of ``conn``) now, or park it past the budgets."""
        if conn.closing:
            return
        if not self._open:
            self._open_tick()
        if conn.tick != self.tick:
            conn.tick, conn.tick_frames = self.tick, 0
        conn.tick_frames += 1
        start = perf_counter()
        if (
            conn.tick_frames > self.frames_per_tick
            or self._used_s > self.time_per_tick_s
            or self._window_spent(start)
        ) and (conn.parked or not is_cancel(data)):
            self._park(conn, data)
            return
        self.handle(conn, data)
        used = perf_counter() - start
        self._used_s += used
        self._window_used += used

    def charge(self, seconds: float) -> None:
        """Count ``seconds`` of work done outside ``handle`` (the order flush at the end of
        a tick) against this tick's time budget: a tick's whole work, not only its frames'
        handling, is what a reader of another socket (a cancel) waits for."""
        if not self._open:
            self._open_tick()
        self._used_s += seconds
        self._window_used += seconds

    def _window_spent(self, now: float) -> bool:
        """Whether this window's busy budget is used up (a new window starts once the
        last one is over)."""
        if now - self._window_start >= self.window_s:
            self._window_start, self._window_used = now, 0.0
            return False
        return self._window_used > self.window_budget_s

    def _open_tick(self) -> None:
        """Frames are handled in this tick: its budgets end with it."""
        self._open = True
        asyncio.get_running_loop().call_soon(self._next_tick)

    def _next_tick(self) -> None:
        self.tick += 1
        self._open = False
        self._used_s = 0.0

    def _park(self, conn: Any, data: bytes) -> None:
        conn.parked.append(data)
        if len(conn.parked) == 1:
            conn.parked_at = perf_counter()
            self._parked_connections += 1
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._unpark, conn)

    def _unpark(self, conn: Any) -> None:
        """Handle up to a tick's budget of ``conn``'s parked frames; read it again once
        none is left (and its writes are not paused)."""
        parked = conn.parked
        if not self._open:
            self._open_tick()
        now = perf_counter()
        if parked:
            self.delay_s = now - conn.parked_at
        spent = self._window_spent(now)
        for _ in range(min(len(parked), self.frames_per_tick)):
            if conn.closing or spent or self._used_s > self.time_per_tick_s:
                break
            start = perf_counter()
            self.handle(conn, parked.popleft())
            used = perf_counter() - start
            self._used_s += used
            self._window_used += used
            spent = self._window_used > self.window_budget_s
        if conn.closing:
            parked.clear()
        if parked:
            loop = asyncio.get_running_loop()
            if spent:  # the loop idles (reads, cancels) until the next window
                rest = self.window_s - (perf_counter() - self._window_start)
                loop.call_later(max(rest, 0.0), self._unpark, conn)
            else:
                loop.call_soon(self._unpark, conn)
            return
        self._parked_connections -= 1
        if self._parked_connections <= 0:
            self._parked_connections = 0
            self.delay_s = 0.0
        if conn.closing:
            return
        if (
            not conn.writes_paused
            and conn.transport is not None
            and not conn.transport.is_closing()
        ):
            conn.transport.resume_reading()
