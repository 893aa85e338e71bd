"""``Turns``' busy share (``Limits.busy_share``): past a window's budget of handling, frames
other than cancels wait for the next window while the event loop idles, and a cancel of
another connection is still handled at once."""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter
from typing import Any

from derivex.gateway.turns import Turns

ORDER = b'{"method":"private/buy","params":{"instrument_name":"BTC-PERPETUAL","amount":1}}'
CANCEL = b'{"method":"private/cancel","params":{"order_id":"1"}}'


class Conn:
    """What ``Turns`` reads and writes on a connection (no socket: never paused)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closing = False
        self.transport = None
        self.writes_paused = False
        self.parked: deque[bytes] = deque()
        self.parked_at = 0.0
        self.tick = -1
        self.tick_frames = 0


def _run(busy_share: float) -> dict[str, Any]:
    handled: list[tuple[str, bytes, float]] = []

    def handle(conn: Conn, data: bytes) -> None:
        handled.append((conn.name, data, perf_counter()))
        until = perf_counter() + 0.002  # each frame takes at least 2 ms
        while perf_counter() < until:
            pass

    async def scenario() -> dict[str, Any]:
        # a 1 s window with a 10 ms budget: at most 6 frames of 2 ms fit
        turns = Turns(handle, 0, 0, busy_share=busy_share, window_s=1.0)
        flooder, canceller, other = Conn("flooder"), Conn("canceller"), Conn("other")
        for i in range(10):
            turns.offer(flooder, ORDER + b" " * i)
        at_once = [name for name, _, _ in handled]
        turns.offer(canceller, CANCEL)
        cancel_handled = handled[-1][0] == "canceller"
        turns.offer(other, ORDER)
        other_parked = len(other.parked)
        window_end = turns._window_start + turns.window_s
        for _ in range(600):  # until all is handled (bounded: 6 s)
            if len(handled) == 12:
                break
            await asyncio.sleep(0.01)
        return {
            "at_once": at_once,
            "cancel_handled": cancel_handled,
            "other_parked": other_parked,
            "window_end": window_end,
        }

    result = asyncio.run(scenario())
    result["handled"] = handled
    return result


def test_past_the_busy_budget_orders_wait_for_the_next_window_and_cancels_do_not() -> None:
    result = _run(busy_share=0.01)
    handled = result["handled"]
    first = result["at_once"]
    assert 1 <= len(first) <= 6, first  # the budget ran out, the rest was parked
    assert result["cancel_handled"]  # a cancel of another connection: at once
    assert result["other_parked"] == 1  # an order of another connection: parked
    assert len(handled) == 12  # everything was handled in the end, nothing lost
    flooded = [data for name, data, _ in handled if name == "flooder"]
    assert flooded == [ORDER + b" " * i for i in range(10)]  # in order
    later = [at for name, _, at in handled[len(first) + 1 :]]
    # the parked frames waited for the next window: the loop idled meanwhile
    assert min(later) >= result["window_end"]


def test_without_a_busy_share_every_frame_is_handled_at_once() -> None:
    result = _run(busy_share=1.0)
    assert len(result["at_once"]) == 10
    assert result["other_parked"] == 0


def test_worker_mode_resolves_the_automatic_share_and_keeps_an_explicit_one() -> None:
    import os

    from derivex.gateway.limits import Limits, worker_busy_share
    from derivex.gateway.worker import _with_busy_share

    assert Limits().busy_share == 0  # automatic: off in a single process (Turns: no limit)
    assert Turns(lambda conn, data: None, 64, 0.0005, 0.0).window_budget_s == float("inf")
    cores = len(os.sched_getaffinity(0))
    assert _with_busy_share(Limits(), 2).busy_share == min(1.0, cores / 5)
    assert _with_busy_share(Limits(busy_share=1.0), 2).busy_share == 1.0  # off on request
    assert _with_busy_share(Limits(busy_share=0.25), 8).busy_share == 0.25
    assert worker_busy_share(1, 1) == 0.25 and worker_busy_share(5, 8) == 1.0
