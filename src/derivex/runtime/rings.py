"""Non-blocking SPSC moves for loops that serve several rings (the engine) or must never
wait on a peer (responses to a gateway worker), plus process-local helpers every runtime
process uses: start-up hygiene and a spin-then-yield-then-sleep idle back-off."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
from numba import njit

from derivex.ipc.atomics import copy_bytes, load_acquire
from derivex.ipc.spsc_kernels import (
    L_SIZE,
    S_DONE,
    spsc_publish,
    spsc_release,
    spsc_try_claim,
    spsc_try_peek,
)

__all__ = ["Idle", "Pauses", "child_setup", "offer", "take"]

_WATCHDOG_S = 0.2


@njit(cache=True, nogil=True)
def take(ctrl, local, raw, dst, at, max_n):
    """Copy up to ``max_n`` available records of an SPSC ring into the byte buffer ``dst``
    from record ``at`` on, without waiting. Returns the count, or -1 once the producer has
    finished and everything was taken. O(records)."""
    size = local[L_SIZE]
    got = 0
    while got < max_n:
        slot, n = spsc_try_peek(ctrl, local, max_n - got)
        if n == 0:
            break
        copy_bytes(dst, (at + got) * size, raw, slot * size, n * size)
        spsc_release(ctrl, local, n)
        got += n
    if got == 0 and max_n > 0 and load_acquire(ctrl, S_DONE) != 0:
        # head is stored before done: nothing visible now means nothing will come
        slot, n = spsc_try_peek(ctrl, local, 1)
        if n == 0:
            return -1
    return got


@njit(cache=True, nogil=True)
def offer(ctrl, local, raw, src, start, total):
    """Copy records ``start .. total-1`` of the byte buffer ``src`` into an SPSC ring as far
    as there is room, without waiting; returns the number of records moved."""
    size = local[L_SIZE]
    done = start
    while done < total:
        slot, n = spsc_try_claim(ctrl, local, total - done)
        if n == 0:
            break
        copy_bytes(raw, slot * size, src, done * size, n * size)
        spsc_publish(ctrl, local, n)
        done += n
    return done - start


class Idle:
    """Back-off of a polling loop with nothing to do: spin (Python-level polls), then
    ``sched_yield``, then sleep 20 us doubling to 1 ms. ``reset()`` after useful work.
    On a 2-core machine the yield phase hands the CPU to a peer that needs it."""

    def __init__(self, spins: int = 50, yields: int = 50, max_sleep_s: float = 0.001) -> None:
        self.spins, self.yields, self.max_sleep_s = spins, yields, max_sleep_s
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def __call__(self) -> None:
        i = self.i
        self.i += 1
        if i < self.spins:
            return
        if i < self.spins + self.yields:
            os.sched_yield()
            return
        time.sleep(min(self.max_sleep_s, 20e-6 * 2 ** min(10, i - self.spins - self.yields)))


class Pauses:
    """Seeded random pauses for soak tests (no-op at probability 0)."""

    def __init__(self, probability: float, max_pause_s: float, seed) -> None:
        self.probability = probability
        self.max_pause_s = max_pause_s
        self._rng = random.Random(seed)

    def __call__(self) -> None:
        if self.probability and self._rng.random() < self.probability:
            time.sleep(self._rng.random() * self.max_pause_s)


def child_setup(parent_pid: int) -> None:
    """Start-up of every runtime child. Ctrl-C in a terminal reaches the whole process
    group, but only the supervisor decides how to stop, so SIGINT is ignored here. A
    watchdog thread sends this process SIGTERM once the supervisor is gone (a parent-death
    signal would not do: it fires when the supervisor *thread* that started the child
    ends, and restarted workers are started by a thread that ends at shutdown)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_WATCHDOG_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="derivex-parent-watchdog", daemon=True).start()


def as_bytes(records: np.ndarray) -> np.ndarray:
    return records.view(np.uint8)
