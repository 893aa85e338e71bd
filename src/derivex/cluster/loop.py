"""A private asyncio event loop on a daemon thread, so that synchronous callers (the
``Sequencer``'s before-hook, a replica's apply loop, tests) can drive the async nats-py
client. One loop per connection owner; :meth:`LoopThread.call` blocks the caller until
the coroutine finishes on the loop.

>>> loop = LoopThread("example")
>>> async def two() -> int:
...     return 2
>>> loop.call(two())
2
>>> loop.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An event loop running forever on its own daemon thread until :meth:`close`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"nats:{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its exception).
        Cost: two thread hand-overs (~50-100 µs). Raises TimeoutError after ``timeout``
        seconds (the coroutine is then cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        """Cancel the loop's remaining tasks (a client's reader, pinger, reconnect), stop
        the loop and join its thread. Why cancel first: a task destroyed while pending
        complains from its finalizer, at any later garbage collection, in any thread."""
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.call(_cancel_all(), 5.0)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5.0)
        if not self.loop.is_running():
            self.loop.close()


async def _cancel_all() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
