"""Group commit at the gateway: replies and notifications leave only once the commands they
follow are durable, without blocking the event loop on the disk.

With a ``"group"`` journal the gateway tells its ``Exchange`` not to wait for the flush in
``submit`` (``durable_results = False``): the loop goes on placing the next tick's orders
while the journal's flusher runs the ``fdatasync`` that covers this tick. Each WebSocket
connection hands its frames of a tick to the gate tagged with the journal's ``last_seq`` at
that moment (everything they could report was appended by then); they are written, in
order, once ``durable_seq`` reaches the tag. REST replies ``await`` the same. The flusher
thread wakes the loop once per flush (``call_soon_threadsafe``). Cost: one wake-up per
flush and a seq compare per connection write; the latency of one flush per reply.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from derivex.gateway.errors import OUTCOME_UNKNOWN
from derivex.journal import Journal

#: how often a stalled journal is looked for (``DurabilityGate.timeout_s``)
STALL_CHECK_S = 0.25
#: the longest a watcher blocks on its doorbell before looking again (a journal writer
#: that died cannot ring)
BELL_BACKSTOP_S = 0.005


class DurabilityTimeout(Exception):
    """Nothing became durable for the gate's ``timeout_s`` while this waited."""


class SharedDurability:
    """The run's journal as a gateway worker's gate sees it (``derivex serve --workers``):
    ``durable_seq`` is published in shared memory by the journal writer process, and
    ``last_seq`` is what this worker's replica has applied (everything its replies and
    notifications can report). The writer cannot call into this process, so a watcher
    thread polls ``durable_seq`` every ``poll_s`` while something applied is not durable
    yet (``kick`` wakes it after a submission) and calls ``on_durable``; it sleeps
    otherwise. With ``bell`` (the worker's ``durable`` doorbell, rung by the journal writer
    each time ``durable_seq`` moves) it blocks on the bell between looks instead of polling
    every ``poll_s``. Cost: one shared-memory read per look while replies wait."""

    def __init__(
        self,
        durable: Callable[[], int],
        applied: Callable[[], int],
        poll_s: float = 0.0001,
        bell: Any = None,
    ) -> None:
        self._durable = durable
        self._applied = applied
        self.poll_s = poll_s
        # (``runtime.doorbell.Doorbell``) rung by the journal writer when durable_seq
        # moves: the watcher blocks on it instead of polling every ``poll_s``
        self._bell = bell
        self.on_durable: Callable[[int], None] | None = None
        self._kick = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._watch, name="derivex-durable", daemon=True)
        self._thread.start()

    @property
    def durable_seq(self) -> int:
        return self._durable()

    @property
    def last_seq(self) -> int:
        return self._applied()

    def kick(self) -> None:
        """Something was applied that is not durable yet: watch until it is."""
        self._kick.set()

    def stop(self) -> None:
        self._stopped = True
        self._kick.set()

    def _watch(self) -> None:
        seen = -1
        while not self._stopped:
            self._kick.wait()
            self._kick.clear()  # (a kick from now on makes the next wait return at once)
            while not self._stopped:
                durable = self._durable()
                if durable != seen:
                    seen = durable
                    if self.on_durable is not None:
                        self.on_durable(durable)
                if durable >= self._applied():
                    break
                if self._bell is not None:
                    self._bell.wait(BELL_BACKSTOP_S)
                else:
                    time.sleep(self.poll_s)


class DurabilityGate:
    """Holds a journaled venue's outbound data until it is durable. Loop thread only,
    except ``_on_durable`` (the journal's flusher thread)."""

    def __init__(
        self, journal: Any, loop: asyncio.AbstractEventLoop, timeout_s: float = 0.0
    ) -> None:
        self.journal = journal  # a ``Journal`` or a ``SharedDurability``
        self.loop = loop
        self.waiting: dict[Any, None] = {}  # connections with held frames (ordered set)
        self._futures: list[tuple[int, asyncio.Future[None]]] = []
        self._scheduled = False
        self._released_seq = -1  # ``durable_seq`` at the last release (``release_due``)
        journal.on_durable = self._on_durable
        #: nothing durable for this long while replies wait (0: wait for ever): the
        #: waiting replies are answered 13888 (``expire``)
        self.timeout_s = timeout_s
        self._progress_at = time.monotonic()
        self._progress_seq = journal.durable_seq
        if timeout_s > 0:
            loop.call_later(STALL_CHECK_S, self._check_stall)

    @classmethod
    def install(cls, exchange: Any, loop: asyncio.AbstractEventLoop) -> DurabilityGate | None:
        """A gate for ``exchange`` if it has a group-commit journal (else None: results are
        durable when returned, or the policy acknowledges before the flush)."""
        shared = getattr(exchange, "durability", None)
        if isinstance(shared, SharedDurability):  # a gateway worker of a multi-process run
            exchange.durable_results = False
            return cls(shared, loop, getattr(exchange, "timeout_s", 0.0))
        journal = getattr(exchange, "journal", None)
        if not isinstance(journal, Journal) or journal.fsync != "group":
            return None
        exchange.durable_results = False  # the gate holds the results instead
        return cls(journal, loop)

    def _on_durable(self, seq: int) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self._scheduled = False  # first: a flush completing from now on schedules again
        durable = self.journal.durable_seq
        self._released_seq = durable
        waiting, self.waiting = self.waiting, {}
        for connection in waiting:
            connection.write_pending()
        if self._futures:
            ready = [future for seq, future in self._futures if seq <= durable]
            self._futures = [(seq, future) for seq, future in self._futures if seq > durable]
            for future in ready:
                if not future.done():
                    future.set_result(None)

    async def wait(self, seq: int | None = None) -> None:
        """Return once every command up to ``seq`` (default: the last appended) is durable.
        Raises ``DurabilityTimeout`` if nothing becomes durable for ``timeout_s``."""
        target = self.journal.last_seq if seq is None else seq
        if self.journal.durable_seq >= target:
            return
        future = self.loop.create_future()
        self._futures.append((target, future))
        kick = getattr(self.journal, "kick", None)
        if kick is not None:
            kick()
        await future

    def _check_stall(self) -> None:
        """Every ``STALL_CHECK_S``: if nothing became durable for ``timeout_s`` while
        something waited, answer what waits as outcome unknown (``expire``)."""
        now, durable = time.monotonic(), self.journal.durable_seq
        if durable != self._progress_seq or not (self.waiting or self._futures):
            self._progress_seq, self._progress_at = durable, now
        elif now - self._progress_at > self.timeout_s:
            self._progress_at = now
            self.expire()
        self.loop.call_later(STALL_CHECK_S, self._check_stall)

    def release_due(self) -> None:
        """Write what became durable since the last release, now, if anything waits: called
        by the loop after work that took a while (an order flush, whose engine round trip
        in a gateway worker blocks the loop) instead of leaving it to the flusher's wake-up,
        which runs only after the rest of the loop's current iteration. Cost: one read of
        ``durable_seq`` when nothing waits or nothing moved."""
        if (self.waiting or self._futures) and self.journal.durable_seq > self._released_seq:
            self._release()

    def release_now(self) -> None:
        """Write what is durable now without waiting for the next wake-up (a clean stop)."""
        self._release()

    def expire(self) -> None:
        """Answer everything held as outcome unknown now (13888 for replies with a result,
        errors as they are; ``outcome_unknown_frames``): what it reports may never become
        durable (a stalled journal, a leader that stopped)."""
        self._release()  # what is durable goes first, as it is
        waiting, self.waiting = self.waiting, {}
        for connection in waiting:
            connection.expire_held()
        futures, self._futures = self._futures, []
        for _, future in futures:
            if not future.done():
                future.set_exception(DurabilityTimeout(f"nothing durable for {self.timeout_s} s"))


def outcome_unknown_frames(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split frames held for the disk when it stalled into what can be sent now and what
    still waits: a reply with a ``result`` becomes error 13888 (outcome unknown: what it
    reports may not survive a crash; its order's label is kept, as for a submission that
    timed out), an error reply goes as it is (it changed nothing), and notifications keep
    waiting (they are true once durable). Cost: one JSON parse per held frame, only on a
    stall."""
    now: list[bytes] = []
    later: list[bytes] = []
    for frame in frames:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            later.append(frame)
            continue
        if not isinstance(message, dict) or "id" not in message:
            later.append(frame)
        elif "result" not in message:
            now.append(frame)
        else:
            result = message["result"]
            order = result.get("order", result) if isinstance(result, dict) else None
            data: dict[str, Any] = {"reason": "outcome_unknown"}
            if isinstance(order, dict) and order.get("label"):
                data["label"] = order["label"]
            del message["result"]
            message["error"] = {"code": OUTCOME_UNKNOWN, "message": "timed_out", "data": data}
            if isinstance(message.get("usIn"), int):
                message["usOut"] = time.time_ns() // 1000
                message["usDiff"] = message["usOut"] - message["usIn"]
            now.append(orjson.dumps(message))
    return now, later
