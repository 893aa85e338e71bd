"""``admin.overview``: the operator page's aggregates pushed to subscribed WebSockets once a
second, computed once per gateway process for all of them (and not at all while nobody
subscribes), instead of each page asking for them.

A subscriber stays while its connection is open and its key has the ``admin`` scope: a
logout or a revoked key drops it at the next publication. The task that publishes runs on
the gateway's event loop and stops when the last subscriber is gone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from derivex.gateway.channels import frame
from derivex.gateway.telemetry import logger

if TYPE_CHECKING:
    from derivex.gateway.venue import Venue

CHANNEL = "admin.overview"
INTERVAL_S = 1.0


class AdminFeed:
    """Subscribers of ``admin.overview`` on one venue (see the module docstring)."""

    def __init__(self, venue: Venue, overview: Callable[[Venue], dict[str, Any]]) -> None:
        self.venue = venue
        self.overview = overview
        self.subscribers: set[Any] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, connection: Any) -> None:
        """Subscribe ``connection`` and send it the overview now. Cost: one overview."""
        self.subscribers.add(connection)
        connection.send(frame(CHANNEL, self.overview(self.venue)))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _live(self, connection: Any) -> bool:
        key = connection.session.key
        closed = connection.closing or getattr(connection.ws, "closed", False)
        return not closed and key is not None and key.allows("admin")

    def publish(self) -> int:
        """Send the overview to every live subscriber (dropping the others); returns how
        many got it. Cost: one overview and one serialisation, whatever their number."""
        self.subscribers = {c for c in self.subscribers if self._live(c)}
        if not self.subscribers:
            return 0
        text = frame(CHANNEL, self.overview(self.venue))
        for connection in self.subscribers:
            connection.send(text)
        return len(self.subscribers)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            try:
                if not self.publish():
                    return
            except Exception:  # a failed overview must not end the feed for good
                logger().exception("admin overview failed")


_FEEDS: weakref.WeakKeyDictionary[Any, AdminFeed] = weakref.WeakKeyDictionary()


def feed_of(venue: Venue, overview: Callable[[Venue], dict[str, Any]]) -> AdminFeed:
    """The venue's feed, created on first use."""
    found = _FEEDS.get(venue)
    if found is None:
        found = _FEEDS[venue] = AdminFeed(venue, overview)
    return found
