"""The copy and wait loops of both rings (SPSC and broadcast), written once: ``peek`` (wait
for records or the end of the stream), ``push`` (claim, copy, publish until all is in) and
``pop`` (peek, copy, release up to the buffer's size). Each takes the ring's ``kind``
(``SPSC`` or ``BROADCAST``) and calls that ring's own step (claim, try_peek, publish,
release: :mod:`.spsc_kernels`, :mod:`.bcast_kernels`); the public ``spsc_*`` / ``bcast_*``
loop kernels are these with the kind fixed. (A branch on an integer, not a function
argument: numba does not cache a kernel that receives a function reaching ``wait_step``.)
The shared loops are inlined into each public kernel (``inline="always"``), so the kind is
a constant there and the other ring's branch is folded away: measured with
bench/ipc_bench.py, a call layer per step otherwise cost 20-25% of the single-record rate.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .atomics import copy_bytes, load_acquire
from .bcast_kernels import (
    B_DONE,
    DROPPED_RC,
    P_SIZE,
    Q_SIZE,
    bcast_claim,
    bcast_publish,
    bcast_release,
    bcast_try_peek,
)
from .endpoint import EOF
from .spsc_kernels import (
    L_SIZE,
    S_DONE,
    spsc_claim,
    spsc_publish,
    spsc_release,
    spsc_try_peek,
)
from .wait import wait_step

SPSC, BROADCAST = 0, 1


@njit(cache=True, nogil=True, inline="always")
def _try_peek(kind, ctrl, local, want):
    if kind == SPSC:
        return spsc_try_peek(ctrl, local, want)
    return bcast_try_peek(ctrl, local, want)


@njit(cache=True, nogil=True, inline="always")
def _claim(kind, ctrl, local, want, wparams, deadline_ns):
    if kind == SPSC:
        return spsc_claim(ctrl, local, want, wparams, deadline_ns)
    return bcast_claim(ctrl, local, want, wparams, deadline_ns)


@njit(cache=True, nogil=True, inline="always")
def _publish(kind, ctrl, local, n):
    if kind == SPSC:
        spsc_publish(ctrl, local, n)
    else:
        bcast_publish(ctrl, local, n)


@njit(cache=True, nogil=True, inline="always")
def _release(kind, ctrl, local, n):
    if kind == SPSC:
        return spsc_release(ctrl, local, n)
    return bcast_release(ctrl, local, n)


@njit(cache=True, nogil=True, inline="always")
def peek(kind, done_word, ctrl, local, want, wparams, deadline_ns):
    """``(slot, n)``: 1..want readable records, or n = 0 (timeout), ``EOF`` (the producer
    finished and everything is read) or a negative code of the ring (a dropped consumer)."""
    slot, n = _try_peek(kind, ctrl, local, want)
    i = 0
    while n == 0 and want > 0:
        if load_acquire(ctrl, done_word) != 0:
            # head was stored before done: re-reading it now sees the final value
            slot, n = _try_peek(kind, ctrl, local, want)
            return slot, (n if n != 0 else EOF)
        if not wait_step(wparams, i, deadline_ns):
            break
        i += 1
        slot, n = _try_peek(kind, ctrl, local, want)
    return slot, n


@njit(cache=True, nogil=True, inline="always")
def push(kind, size, ctrl, local, raw, src, wparams, deadline_ns):
    """Copy ``src`` (whole records of ``size`` bytes) into the ring, claiming and publishing
    run by run; returns the records pushed (fewer on timeout)."""
    total = src.shape[0] // size
    done = 0
    while done < total:
        slot, n = _claim(kind, ctrl, local, total - done, wparams, deadline_ns)
        if n == 0:
            break
        copy_bytes(raw, slot * size, src, done * size, n * size)
        _publish(kind, ctrl, local, n)
        done += n
    return done


@njit(cache=True, nogil=True, inline="always")
def pop(kind, size, done_word, ctrl, local, raw, dst, wparams, deadline_ns):
    """Copy up to ``len(dst) // size`` records out of the ring (waiting for the first);
    returns the count, or 0 (timeout), ``EOF`` or a negative code of the ring."""
    max_n = dst.shape[0] // size
    slot, n = peek(kind, done_word, ctrl, local, max_n, wparams, deadline_ns)
    got = 0
    while n > 0:
        copy_bytes(dst, got * size, raw, slot * size, n * size)
        if _release(kind, ctrl, local, n) == DROPPED_RC:
            return DROPPED_RC
        got += n
        if got == max_n:
            break
        slot, n = _try_peek(kind, ctrl, local, max_n - got)
    return got if got > 0 else n


# ---- the public loop kernels of each ring
@njit(cache=True, nogil=True)
def spsc_peek(ctrl, local, want, wparams, deadline_ns):
    return peek(SPSC, S_DONE, ctrl, local, want, wparams, deadline_ns)


@njit(cache=True, nogil=True)
def spsc_push(ctrl, local, raw, src, wparams, deadline_ns):
    return push(SPSC, local[L_SIZE], ctrl, local, raw, src, wparams, deadline_ns)


@njit(cache=True, nogil=True)
def spsc_pop(ctrl, local, raw, dst, wparams, deadline_ns):
    return pop(SPSC, local[L_SIZE], S_DONE, ctrl, local, raw, dst, wparams, deadline_ns)


@njit(cache=True, nogil=True)
def bcast_peek(ctrl, local, want, wparams, deadline_ns):
    return peek(BROADCAST, B_DONE, ctrl, local, want, wparams, deadline_ns)


@njit(cache=True, nogil=True)
def bcast_push(ctrl, local, raw, src, wparams, deadline_ns):
    return push(BROADCAST, local[P_SIZE], ctrl, local, raw, src, wparams, deadline_ns)


@njit(cache=True, nogil=True)
def bcast_pop(ctrl, local, raw, dst, wparams, deadline_ns):
    return pop(BROADCAST, local[Q_SIZE], B_DONE, ctrl, local, raw, dst, wparams, deadline_ns)


@njit(cache=True, nogil=True)
def _spsc_push_records(ctrl, local, raw, records, wparams, deadline_ns):
    return spsc_push(ctrl, local, raw, records.view(np.uint8), wparams, deadline_ns)


@njit(cache=True, nogil=True)
def _spsc_pop_records(ctrl, local, raw, out, wparams, deadline_ns):
    return spsc_pop(ctrl, local, raw, out.view(np.uint8), wparams, deadline_ns)


@njit(cache=True, nogil=True)
def _bcast_push_records(ctrl, local, raw, records, wparams, deadline_ns):
    return bcast_push(ctrl, local, raw, records.view(np.uint8), wparams, deadline_ns)


@njit(cache=True, nogil=True)
def _bcast_pop_records(ctrl, local, raw, out, wparams, deadline_ns):
    return bcast_pop(ctrl, local, raw, out.view(np.uint8), wparams, deadline_ns)
