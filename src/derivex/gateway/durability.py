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
from typing import Any

from derivex.journal import Journal


class DurabilityGate:
    """Holds a journaled venue's outbound data until it is durable. Loop thread only,
    except ``_on_durable`` (the journal's flusher thread)."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop) -> None:
        self.journal = journal
        self.loop = loop
        self.waiting: dict[Any, None] = {}  # connections with held frames (ordered set)
        self._futures: list[tuple[int, asyncio.Future[None]]] = []
        self._scheduled = False
        journal.on_durable = self._on_durable

    @classmethod
    def install(cls, exchange: Any, loop: asyncio.AbstractEventLoop) -> DurabilityGate | None:
        """A gate for ``exchange`` if it has a group-commit journal (else None: results are
        durable when returned, or the policy acknowledges before the flush)."""
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
        """Return once every command up to ``seq`` (default: the last appended) is durable."""
        target = self.journal.last_seq if seq is None else seq
        if self.journal.durable_seq >= target:
            return
        future = self.loop.create_future()
        self._futures.append((target, future))
        await future
