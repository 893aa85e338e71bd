"""Diagnostics of where a WebSocket cancel's time goes under load (issue 12), off unless
``DERIVEX_TRACE=<path>`` is set in the server's environment: then the server records, and
writes to ``<path>`` as JSON every second,

- ``iteration_ms``: the event loop's iteration lengths (the gap between successive runs of
  a callback that re-queues itself with ``call_soon``: it runs once per iteration);
- ``feed``: per socket read of a WebSocket (one ``data_received``): bytes, data frames
  parsed in it, and milliseconds spent parsing and handling them;
- ``cancel_ms``: per cancel frame, from the start of the read that brought it to its reply
  being written (``Connection.write_pending``), and whether it was parked.

Percentiles only (p50/p90/p99/max and counts); never on in production. ``%p`` in the path
stands for the process id (one file per ``--workers`` process)."""

from __future__ import annotations

import asyncio
import os
from time import perf_counter
from typing import Any

import orjson

PATH = os.environ.get("DERIVEX_TRACE", "")


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "n": n,
        "p50": round(ordered[n // 2], 3),
        "p90": round(ordered[n * 9 // 10], 3),
        "p99": round(ordered[min(n - 1, n * 99 // 100)], 3),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / n, 3),
    }


class Trace:
    def __init__(self) -> None:
        self.read_at = 0.0  # start of the read being parsed
        self.windows: list[dict[str, Any]] = []
        self._reset()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _reset(self) -> None:
        self.late: list[float] = []
        self.feed_bytes: list[float] = []
        self.feed_frames: list[float] = []
        self.feed_ms: list[float] = []
        self.cancel_ms: list[float] = []
        self.calls: dict[str, list[float]] = {}

    def start(self, gateway: Any, connection: Any) -> None:
        """Time the loop's lateness and the calls that run as their own callbacks
        (``connection``: the server's connection class, whose ``write_pending`` is timed;
        passed in because this module is imported by the server, never the reverse)."""
        self._loop = asyncio.get_running_loop()
        self._due = perf_counter() + TIMER_S
        self._loop.call_later(TIMER_S, self._timer)
        self._loop.call_later(1.0, self._dump)
        dispatcher, turns = gateway.dispatcher, gateway.turns
        import gc

        gc.callbacks.append(self._gc)
        self._gc_start = 0.0
        dispatcher.flush = self.timed("flush", dispatcher.flush)
        dispatcher._end_tick = self.timed("end_tick", dispatcher._end_tick)
        turns._unpark = self.timed("unpark", turns._unpark)
        connection.write_pending = self.timed("write_pending", connection.write_pending)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = perf_counter()
        else:
            name = f"gc{info.get('generation')}"
            self.calls.setdefault(name, []).append((perf_counter() - self._gc_start) * 1000)

    def timed(self, name: str, function: Any) -> Any:
        times = self.calls.setdefault(name, [])

        def call(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.calls.setdefault(name, []).append((perf_counter() - start) * 1000)

        del times
        return call

    def _timer(self) -> None:
        """A timer due every ``TIMER_S``: how late it runs is how long the loop was busy."""
        now = perf_counter()
        self.late.append((now - self._due) * 1000)
        self._due = now + TIMER_S
        assert self._loop is not None
        self._loop.call_later(TIMER_S, self._timer)

    def _dump(self) -> None:
        window = {
            "t": round(perf_counter(), 1),
            "timer_late_ms": _summary(self.late),
            "feed_bytes": _summary(self.feed_bytes),
            "feed_frames": _summary(self.feed_frames),
            "feed_ms": _summary(self.feed_ms),
            "cancel_ms": _summary(self.cancel_ms),
        }
        for name, values in self.calls.items():
            window[name + "_ms"] = _summary(values)
            window[name + "_total_ms"] = round(sum(values))
        window["feed_total_ms"] = round(sum(self.feed_ms))
        self.windows.append(window)
        self._reset()
        with open(PATH.replace("%p", str(os.getpid())), "wb") as out:
            out.write(orjson.dumps(self.windows, option=orjson.OPT_INDENT_2))
        assert self._loop is not None
        self._loop.call_later(1.0, self._dump)


TIMER_S = 0.001
TRACE: Trace | None = Trace() if PATH else None


class TracedParser:
    """A WebSocket parser's stand-in that times each read's parse and counts its frames."""

    def __init__(self, parser: Any, queue: Any) -> None:
        self.parser = parser
        self.queue = queue
        self.frames = 0

    def feed_data(self, data: bytes) -> Any:
        assert TRACE is not None
        start = TRACE.read_at = perf_counter()
        self.frames = 0
        result = self.parser.feed_data(data)
        TRACE.feed_ms.append((perf_counter() - start) * 1000)
        TRACE.feed_bytes.append(len(data))
        TRACE.feed_frames.append(self.frames)
        return result

    def feed_eof(self) -> Any:
        return self.parser.feed_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)
