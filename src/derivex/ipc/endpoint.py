"""Python-side machinery shared by all ring endpoints.

:class:`RingBase` holds the mapped segment views and the wait strategy and
implements lifetime (close / unlink / staleness / context manager).  The
``push_loop`` / ``pop_loop`` helpers drive the njit copy kernels from Python
in bounded time slices (so Ctrl-C works with ``timeout=None``) and turn
kernel status codes into exceptions.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from .segment import RingTimeout, Segment, remove_stale
from .wait import PY_SLICE_NS, WaitStrategy, deadline_after, resolve, slice_deadline

__all__ = [
    "EOF",
    "RingBase",
    "create_segment",
    "pop_into",
    "pop_records",
    "push_loop",
    "shrink",
]

EOF = -1  # kernel status: producer finished and everything was consumed


def numba_supports(dtype: np.dtype) -> bool:
    """Whether njit code can take arrays of ``dtype`` directly (else pass uint8 views)."""
    try:
        numba.typeof(np.empty(1, dtype))
    except Exception:
        return False
    return True


class RingBase:
    """Shared lifetime handling: close / unlink / staleness / context manager."""

    local: np.ndarray  # process-local counters of this endpoint (set by subclasses)

    def __init__(self, seg: Segment, wait: WaitStrategy | str | None) -> None:
        self._seg = seg
        self.name = seg.name
        self.dtype = seg.dtype
        self.capacity = seg.capacity
        self.record_size = seg.record_size
        self.ctrl = seg.ctrl
        self.raw = seg.raw
        self.records = seg.records
        self.wait = resolve(wait)
        # Python-level push/pop hand record arrays straight to njit wrappers when numba
        # supports the dtype (saves a .view(np.uint8) per call); else uint8 views.
        self._typed = numba_supports(self.dtype)

    @property
    def wait(self) -> WaitStrategy:
        return self._wait

    @wait.setter
    def wait(self, strategy: WaitStrategy | str | None) -> None:
        self._wait = resolve(strategy)
        self._wparams = self._wait.params()

    @property
    def owner(self) -> bool:
        """True in the handle that created the segment."""
        return self._seg.owner

    @property
    def closed(self) -> bool:
        return self._seg.closed

    def is_stale(self) -> bool:
        """True if the creating process is gone (see :func:`.segment.is_stale`)."""
        return self._seg.is_stale()

    def close(self) -> None:
        """Unmap this handle (idempotent); the segment itself stays until unlinked."""
        for attr in ("ctrl", "raw", "records", "local"):
            self.__dict__.pop(attr, None)
        self._seg.close()

    def unlink(self) -> bool:
        """Remove the segment name; returns False if it was already gone."""
        return self._seg.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self.owner:
            self.unlink()

    def _as_records(self, records) -> np.ndarray:
        """``records`` as a contiguous 1-D array of the ring's dtype."""
        if (
            type(records) is np.ndarray
            and records.dtype is self.dtype
            and records.ndim == 1
            and records.flags.c_contiguous
        ):
            return records
        arr = np.asarray(records)
        if arr.dtype != self.dtype:
            raise TypeError(f"records have dtype {arr.dtype}, ring holds {self.dtype}")
        return np.ascontiguousarray(arr.reshape(-1))

    def _check_state(self) -> None:
        """Raise if this endpoint can no longer read (overridden by consumers)."""

    def _blocking(self, kernel, args, timeout, what):
        """Run an njit kernel returning (slot, n) in <= 100 ms slices; n == 0 is a timeout."""
        deadline = deadline_after(timeout)
        while True:
            slot, n = kernel(*args, self._wparams, slice_deadline(deadline))
            if n != 0:
                return slot, n
            if 0 <= deadline <= time.monotonic_ns():
                raise RingTimeout(f"{what} on ring {self.name!r} timed out after {timeout} s")


def create_segment(name, kind, dtype, capacity, lines, replace_stale, **kw) -> Segment:
    try:
        return Segment.create(name, kind, dtype, capacity, lines, **kw)
    except FileExistsError:
        if replace_stale and remove_stale(name):
            return Segment.create(name, kind, dtype, capacity, lines, **kw)
        raise


def push_loop(ring: RingBase, kernels, records, timeout: float | None) -> int:
    """Copy records in with an njit push kernel, waiting in <= 100 ms slices.

    ``kernels`` is (kernel taking a record array, kernel taking uint8 bytes).
    """
    recs = ring._as_records(records)
    if ring._typed:
        kernel, src, size = kernels[0], recs, 1
    else:
        kernel, src, size = kernels[1], recs.view(np.uint8), ring.record_size
    total = recs.shape[0]
    if timeout is None:  # fast path: one kernel call usually does it
        done = kernel(
            ring.ctrl, ring.local, ring.raw, src, ring._wparams, time.monotonic_ns() + PY_SLICE_NS
        )
        deadline = -1
    else:
        done = 0
        deadline = deadline_after(timeout)
    while done < total:
        if done and 0 <= deadline <= time.monotonic_ns():
            break
        done += kernel(
            ring.ctrl,
            ring.local,
            ring.raw,
            src[done * size :],
            ring._wparams,
            slice_deadline(deadline),
        )
        if 0 <= deadline <= time.monotonic_ns():
            break
    if done < total:
        exc = RingTimeout(f"push to {ring.name!r}: {done} of {total} records in {timeout} s")
        exc.count = done
        raise exc
    return done


def pop_loop(ring: RingBase, kernels, out: np.ndarray, timeout: float | None) -> int:
    """Copy records out into ``out`` (contiguous, ring dtype) with an njit pop kernel.

    Returns the number of records (0 at end of stream).
    """
    kernel, dst = (kernels[0], out) if ring._typed else (kernels[1], out.view(np.uint8))
    if timeout is None:
        k = kernel(
            ring.ctrl, ring.local, ring.raw, dst, ring._wparams, time.monotonic_ns() + PY_SLICE_NS
        )
        if k > 0:
            return k
        deadline = -1
    else:
        k = 0
        deadline = deadline_after(timeout)
    while True:
        if k == 0:
            k = kernel(
                ring.ctrl, ring.local, ring.raw, dst, ring._wparams, slice_deadline(deadline)
            )
        if k > 0:
            return k
        if k == EOF:
            return 0
        if k < 0:
            ring._check_state()  # raises (e.g. ConsumerDropped)
            raise AssertionError(f"unexpected ring status {k}")
        if 0 <= deadline <= time.monotonic_ns():
            raise RingTimeout(f"pop from {ring.name!r} timed out after {timeout} s")
        k = 0


def pop_into(ring: RingBase, kernels, out: np.ndarray, timeout: float | None) -> int:
    if out.dtype != ring.dtype or out.ndim != 1 or not out.flags.c_contiguous:
        raise TypeError(f"out must be a contiguous 1-D array of dtype {ring.dtype}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    if out.shape[0] == 0:
        return 0
    return pop_loop(ring, kernels, out, timeout)


def pop_records(ring: RingBase, kernels, max_n: int, timeout: float | None) -> np.ndarray:
    n = min(count_arg(max_n), ring.capacity)
    out = np.empty(n, ring.dtype)
    if n == 0:
        return out
    return shrink(out, pop_loop(ring, kernels, out, timeout))


def shrink(out: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` records of ``out``, without pinning a mostly unused buffer."""
    if k == out.shape[0]:
        return out
    if 2 * k >= out.shape[0]:
        return out[:k]
    small = np.empty(k, out.dtype)  # byte copy keeps padding bytes too
    small.view(np.uint8)[:] = out[:k].view(np.uint8)
    return small


def count_arg(n) -> int:
    n = int(n)
    if n < 0:
        raise ValueError("count must be >= 0")
    return n


def readonly(view: np.ndarray) -> np.ndarray:
    view.flags.writeable = False
    return view
