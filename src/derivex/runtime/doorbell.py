"""Doorbells: how one runtime process wakes another that waits for it, instead of polling.

A doorbell is a named pipe (FIFO) under ``/dev/shm`` that every process of the runtime
opens read-write and non-blocking (Linux: opening a FIFO read-write never blocks and its
reads never see end-of-file). ``ring`` writes one byte; ``wait`` blocks in ``poll(2)`` until
a byte is there or the timeout passes, then takes every byte. A ring that finds the pipe
full is dropped: a wake-up is pending anyway. A ring when nobody waits leaves a byte that
makes the next wait return at once: spurious wake-ups are possible, lost ones are not, so a
waiter always re-checks its condition, and always waits with a timeout as a backstop.

Why: on a machine with fewer cores than busy processes, a poller's spinning and
``sched_yield`` calls take the CPU from the very process it waits for (profiled at 10x
overload on 2 cores: 86% of the engine's and about half of each gateway worker's CPU went
to waiting). A process blocked in ``poll`` costs nothing and is woken within microseconds.

Who rings whom (``Doorbells``): a worker rings the engine after pushing commands; the
engine rings every worker's ``frames`` bell and the bus consumers' ``bus`` bells (the
journal writer, market data) after publishing frames; the journal writer rings every
worker's ``durable`` bell after ``durable_seq`` moves. Cost: one ``write(2)`` per
ring, one ``poll(2)`` + ``read(2)`` per wait that blocks.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
from pathlib import Path

__all__ = ["BellIdle", "Doorbell", "Doorbells"]

SHM = Path("/dev/shm")


class Doorbell:
    """One named pipe, opened by this process. Not thread-safe per instance (one waiter)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    @staticmethod
    def create(path: str | os.PathLike[str]) -> None:
        """Make the pipe at ``path``, replacing a stale one (of a killed run)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.mkfifo(path, 0o600)

    @staticmethod
    def remove(path: str | os.PathLike[str]) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISFIFO(os.stat(path).st_mode):
                os.unlink(path)

    def ring(self) -> None:
        """Wake the waiter (now, or its next wait returns at once)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self.fd, b"\x01")

    def wait(self, timeout_s: float) -> bool:
        """Block until rung or ``timeout_s`` passes; True if it was rung. Takes every
        pending ring (one wake-up for many rings)."""
        if not self._poll.poll(max(0, int(timeout_s * 1000 + 0.999))):
            return False
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 65536)
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Doorbells:
    """The doorbell paths of runtime ``name`` with ``workers`` gateway workers."""

    def __init__(self, name: str, workers: int) -> None:
        base = SHM / f"dxbell.{name}"
        self.engine = f"{base}.engine"
        self.frames = [f"{base}.frames.{w}" for w in range(workers)]
        self.durable = [f"{base}.durable.{w}" for w in range(workers)]
        #: the bus consumers' (``runtime.consumers``: 0 the journal writer, 1 market data)
        self.bus = [f"{base}.bus.{k}" for k in range(2)]

    def all(self) -> list[str]:
        return [self.engine, *self.frames, *self.durable, *self.bus]

    def create(self) -> None:
        for path in self.all():
            Doorbell.create(path)

    def remove(self) -> None:
        for path in self.all():
            Doorbell.remove(path)


class BellIdle:
    """The back-off of a loop waiting for work that a doorbell announces: ``spins`` quick
    re-checks (work often arrives within microseconds under load), then block on ``bell``
    for at most ``max_wait_s`` per call. ``reset()`` after useful work. Replaces
    ``rings.Idle``'s spin / ``sched_yield`` / sleep phases where a ringer exists."""

    def __init__(self, bell: Doorbell, spins: int = 8, max_wait_s: float = 0.001) -> None:
        self.bell, self.spins, self.max_wait_s = bell, spins, max_wait_s
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def __call__(self) -> None:
        self.i += 1
        if self.i > self.spins:
            self.bell.wait(self.max_wait_s)
