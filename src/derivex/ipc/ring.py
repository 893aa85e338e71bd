"""Single-producer / single-consumer ring of fixed-size records in shared memory.

Sequence counters are monotonic int64s: ``head`` (records published by the
producer) and ``tail`` (records released by the consumer), each on its own
cache line (see :mod:`.segment`).  Record ``s`` lives in slot
``s & (capacity - 1)``.  The producer publishes with a release store of
``head`` after writing the slots; the consumer acquire-loads ``head`` before
reading them, and releases slots with a release store of ``tail`` that the
producer acquire-loads before overwriting.  Each side keeps a process-local
cache of the other side's counter (``local``) so that the shared line is only
touched when the cached value says the ring looks full / empty.

njit API (pass ``ring.ctrl``, ``ring.local``, ``ring.raw``; ``slot`` indexes
``ring.records`` / ``ring.raw`` in units of ``ring.record_size`` bytes)::

    slot, n = spsc_try_claim(ctrl, local, want)            # n may be 0
    slot, n = spsc_claim(ctrl, local, want, wparams, deadline_ns)  # n == 0: timeout
    spsc_publish(ctrl, local, n)
    slot, n = spsc_try_peek(ctrl, local, want)
    slot, n = spsc_peek(ctrl, local, want, wparams, deadline_ns)   # 0 timeout, -1 EOF
    spsc_release(ctrl, local, n)
    k = spsc_push(ctrl, local, raw, src_bytes, wparams, deadline_ns)  # records copied in
    k = spsc_pop(ctrl, local, raw, dst_bytes, wparams, deadline_ns)   # 0 timeout, -1 EOF

Claims and peeks never wrap: they return at most the contiguous run up to the
end of the buffer, so a batch may come back in two pieces.  Only one process
(thread) may act as producer and one as consumer at a time.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .atomics import atomic_load, atomic_store
from .endpoint import (
    EOF,
    RingBase,
    count_arg,
    create_segment,
    pop_into,
    pop_records,
    push_loop,
    readonly,
    shrink,
)
from .ring_loops import _spsc_pop_records, _spsc_push_records, spsc_peek, spsc_pop, spsc_push
from .segment import KIND_SPSC, RingTimeout, Segment
from .spsc_kernels import (
    S_DONE,
    S_HEAD,
    S_TAIL,
    SPSC_CTRL_LINES,
    spsc_claim,
    spsc_publish,
    spsc_release,
    spsc_try_claim,
    spsc_try_peek,
)
from .wait import PY_SLICE_NS, WaitStrategy

__all__ = [
    "SpscRing",
    "spsc_claim",
    "spsc_peek",
    "spsc_pop",
    "spsc_publish",
    "spsc_push",
    "spsc_release",
    "spsc_try_claim",
    "spsc_try_peek",
]

# (the SPSC kernels: :mod:`.spsc_kernels`; the copy and wait loops shared with the broadcast
# ring: :mod:`.ring_loops`)


class SpscRing(RingBase):
    """SPSC ring handle; the same handle type serves producer and consumer."""

    @classmethod
    def create(
        cls,
        name: str,
        dtype,
        capacity: int,
        *,
        wait: WaitStrategy | str | None = None,
        replace_stale: bool = False,
    ) -> SpscRing:
        """Create segment ``name``; raises FileExistsError if it exists (unless
        ``replace_stale`` and its creator is dead)."""
        seg = create_segment(name, KIND_SPSC, dtype, capacity, SPSC_CTRL_LINES, replace_stale)
        return cls(seg, wait)

    @classmethod
    def attach(
        cls,
        name: str,
        dtype=None,
        *,
        wait: WaitStrategy | str | None = None,
        timeout: float = 1.0,
    ) -> SpscRing:
        """Attach to an existing SPSC segment, validating its header (and ``dtype``)."""
        return cls(Segment.attach(name, KIND_SPSC, dtype, timeout=timeout), wait)

    def __init__(self, seg: Segment, wait=None) -> None:
        super().__init__(seg, wait)
        head = atomic_load(self.ctrl, S_HEAD)
        tail = atomic_load(self.ctrl, S_TAIL)
        self.local = np.array(
            [head, tail, tail, head, self.capacity, self.record_size, 0, 0], dtype=np.int64
        )
        self._claimed = 0
        self._peeked = 0

    def __repr__(self) -> str:
        return (
            f"SpscRing(name={self.name!r}, capacity={self.capacity}, "
            f"record_size={self.record_size}, pid={os.getpid()})"
        )

    # ------------------------------------------------------------ producer
    def try_claim(self, n: int) -> np.ndarray:
        """Writable view of up to ``n`` free contiguous slots (possibly empty)."""
        slot, k = spsc_try_claim(self.ctrl, self.local, count_arg(n))
        self._claimed = k
        return self.records[slot : slot + k]

    def claim(self, n: int, timeout: float | None = None) -> np.ndarray:
        """Wait for free space; writable view of 1..n contiguous slots."""
        n = count_arg(n)
        if n == 0:
            return self.records[:0]
        slot, k = self._blocking(spsc_claim, (self.ctrl, self.local, n), timeout, "claim")
        self._claimed = k
        return self.records[slot : slot + k]

    def publish(self, n: int) -> None:
        """Make the first ``n`` records of the last claim visible to the consumer."""
        if not 0 <= n <= self._claimed:
            raise ValueError(f"publish({n}) but only {self._claimed} slots are claimed")
        self._claimed = 0
        if n:
            spsc_publish(self.ctrl, self.local, n)

    def push(self, records, timeout: float | None = None) -> int:
        """Copy ``records`` into the ring, waiting for space; returns the count.

        On timeout raises :class:`RingTimeout` whose ``count`` attribute says
        how many records were pushed.
        """
        if not (  # fast path: exact dtype, contiguous; one kernel call usually does it
            self._typed
            and type(records) is np.ndarray
            and records.dtype is self.dtype
            and records.ndim == 1
            and records.flags.c_contiguous
        ):
            return push_loop(self, (_spsc_push_records, spsc_push), records, timeout)
        start = time.monotonic_ns()
        done = _spsc_push_records(
            self.ctrl, self.local, self.raw, records, self._wparams, _first_slice(start, timeout)
        )
        if done == records.shape[0]:
            return done
        try:
            return done + push_loop(
                self, (_spsc_push_records, spsc_push), records[done:], _left(start, timeout)
            )
        except RingTimeout as exc:
            exc.count += done
            raise

    def finish(self) -> None:
        """Mark end of stream: the consumer sees EOF once it has drained the ring."""
        atomic_store(self.ctrl, S_DONE, 1)

    # ------------------------------------------------------------ consumer
    def try_peek(self, max_n: int) -> np.ndarray:
        """Read-only view of up to ``max_n`` available contiguous records (maybe empty)."""
        slot, k = spsc_try_peek(self.ctrl, self.local, count_arg(max_n))
        self._peeked = k
        return readonly(self.records[slot : slot + k])

    def peek(self, max_n: int, timeout: float | None = None) -> np.ndarray:
        """Wait for data; view of 1..max_n records, or an empty view at end of stream."""
        max_n = count_arg(max_n)
        if max_n == 0:
            return readonly(self.records[:0])
        slot, k = self._blocking(spsc_peek, (self.ctrl, self.local, max_n), timeout, "peek")
        if k == EOF:
            slot = k = 0
        self._peeked = k
        return readonly(self.records[slot : slot + k])

    def release(self, n: int) -> None:
        """Return the first ``n`` records of the last peek to the producer."""
        if not 0 <= n <= self._peeked:
            raise ValueError(f"release({n}) but only {self._peeked} records are peeked")
        self._peeked = 0
        if n:
            spsc_release(self.ctrl, self.local, n)

    def pop_into(self, out: np.ndarray, timeout: float | None = None) -> int:
        """Wait for data and copy up to ``len(out)`` records into ``out``.

        Returns the number copied; 0 means end of stream.
        """
        return pop_into(self, (_spsc_pop_records, spsc_pop), out, timeout)

    def pop(self, max_n: int = 1 << 30, timeout: float | None = None) -> np.ndarray:
        """Wait for data; copy of 1..max_n records, or an empty array at end of stream."""
        if self._typed and type(max_n) is int and 0 < max_n <= self.capacity:
            out = np.empty(max_n, self.dtype)  # fast path: one kernel call
            start = time.monotonic_ns()
            k = _spsc_pop_records(
                self.ctrl, self.local, self.raw, out, self._wparams, _first_slice(start, timeout)
            )
            if k > 0:
                return shrink(out, k)
            timeout = _left(start, timeout)
        return pop_records(self, (_spsc_pop_records, spsc_pop), max_n, timeout)

    # --------------------------------------------------------------- state
    @property
    def finished(self) -> bool:
        """True once the producer called :meth:`finish`."""
        return atomic_load(self.ctrl, S_DONE) != 0

    def __len__(self) -> int:
        """Records published but not yet released (a racy snapshot)."""
        return atomic_load(self.ctrl, S_HEAD) - atomic_load(self.ctrl, S_TAIL)


def _first_slice(start_ns: int, timeout: float | None) -> int:
    """Deadline of the first njit call: min(timeout, one Python slice) from ``start_ns``."""
    if timeout is None or timeout * 1e9 > PY_SLICE_NS:
        return start_ns + PY_SLICE_NS
    if timeout < 0:
        raise ValueError("timeout must be >= 0")
    return start_ns + int(timeout * 1e9)


def _left(start_ns: int, timeout: float | None) -> float | None:
    """Seconds of ``timeout`` left since ``start_ns`` (None: no timeout)."""
    if timeout is None:
        return None
    return max(0.0, timeout - (time.monotonic_ns() - start_ns) / 1e9)
