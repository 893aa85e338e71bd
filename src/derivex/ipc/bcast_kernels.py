"""The broadcast ring's own kernels and control-block layout (see :mod:`.broadcast`): its
claim (the slowest active consumer, the drop policy) and its publish / peek / release through
the arithmetic both rings share (:mod:`.ring_step`); the copy and wait loops are shared too
(:mod:`.ring_loops`).

Control words (int64, ``LINE_WORDS`` = 16 words = 128 bytes apart)::

    [0]                 head: records published (release store by the producer)
    [16]                done flag (producer finished)
    [(2+k)*16 + 0..4]   consumer k: cursor, state, pid, drop_at, drop_head

Consumer status codes: ``EOF`` (-1) end of stream, ``DROPPED_RC`` (-2) the
consumer is no longer active (dropped or left).
"""

from __future__ import annotations

from numba import njit

from .atomics import (
    compare_exchange,
    fence_acquire,
    fence_seq_cst,
    load_acquire,
    monotonic_ns,
    store_release,
)
from .ring_step import advance, contiguous, free_slots, readable
from .segment import LINE_WORDS
from .wait import wait_step

B_HEAD = 0
B_DONE = LINE_WORDS
C_CURSOR, C_STATE, C_PID, C_DROP_AT, C_DROP_HEAD = range(5)
ACTIVE, DROPPED, LEFT = 0, 1, 2
BLOCK, DROP = 0, 1
POLICIES = {"block": BLOCK, "drop": DROP}
DROPPED_RC = -2
# producer-local words
P_HEAD, P_CMIN, P_CAP, P_SIZE, P_NCONS, P_POLICY, P_GRACE, P_STUCK_SINCE = range(8)
# consumer-local words
Q_CURSOR, Q_CHEAD, Q_CAP, Q_SIZE, Q_BASE = range(5)


def consumer_base(k: int) -> int:
    return (2 + k) * LINE_WORDS


# ----------------------------------------------------------------- producer
@njit(cache=True, nogil=True)
def _min_cursor(ctrl, local):
    m = local[P_HEAD]
    for k in range(local[P_NCONS]):
        base = (2 + k) * LINE_WORDS
        if load_acquire(ctrl, base + C_STATE) == ACTIVE:
            m = min(m, load_acquire(ctrl, base + C_CURSOR))
    return m


@njit(cache=True, nogil=True)
def _drop_laggards(ctrl, local):
    head = local[P_HEAD]
    dropped = 0
    for k in range(local[P_NCONS]):
        base = (2 + k) * LINE_WORDS
        if load_acquire(ctrl, base + C_STATE) != ACTIVE:
            continue
        cursor = load_acquire(ctrl, base + C_CURSOR)
        if cursor > head - local[P_CAP]:
            continue  # not a whole ring behind
        if compare_exchange(ctrl, base + C_STATE, ACTIVE, DROPPED) == ACTIVE:
            store_release(ctrl, base + C_DROP_AT, cursor)
            store_release(ctrl, base + C_DROP_HEAD, head)
            dropped += 1
    fence_seq_cst()  # DROPPED must be visible before any slot is overwritten
    return dropped


@njit(cache=True, nogil=True)
def bcast_try_claim(ctrl, local, want):
    head, cap = local[P_HEAD], local[P_CAP]
    slot, want = contiguous(head, cap, want)
    free = free_slots(head, local[P_CMIN], cap)
    if free < want:
        local[P_CMIN] = _min_cursor(ctrl, local)
        free = free_slots(head, local[P_CMIN], cap)
    n = max(0, min(want, free))
    if n > 0:
        local[P_STUCK_SINCE] = 0
    return slot, n


@njit(cache=True, nogil=True)
def bcast_claim(ctrl, local, want, wparams, deadline_ns):
    slot, n = bcast_try_claim(ctrl, local, want)
    if n > 0 or want <= 0:
        return slot, n
    drop = local[P_POLICY] == DROP
    limit = deadline_ns
    if drop:
        # the grace period runs from when the producer first found the ring full,
        # across calls (Python waits in slices, callers may retry)
        if local[P_STUCK_SINCE] == 0:
            local[P_STUCK_SINCE] = monotonic_ns()
        grace_end = local[P_STUCK_SINCE] + local[P_GRACE]
        if deadline_ns < 0 or grace_end <= deadline_ns:
            limit = grace_end
        else:
            drop = False  # the caller's deadline comes first: time out, don't drop
    i = 0
    while not (drop and monotonic_ns() >= limit):
        if not wait_step(wparams, i, limit):
            break
        i += 1
        slot, n = bcast_try_claim(ctrl, local, want)
        if n > 0:
            return slot, n
    if drop:
        _drop_laggards(ctrl, local)
        slot, n = bcast_try_claim(ctrl, local, want)
    return slot, n


@njit(cache=True, nogil=True, inline="always")
def bcast_publish(ctrl, local, n):
    advance(ctrl, local, P_HEAD, B_HEAD, n)


# ----------------------------------------------------------------- consumer
@njit(cache=True, nogil=True, inline="always")
def bcast_try_peek(ctrl, local, want):
    if load_acquire(ctrl, local[Q_BASE] + C_STATE) != ACTIVE:
        return 0, DROPPED_RC
    return readable(ctrl, local, Q_CURSOR, Q_CHEAD, Q_CAP, B_HEAD, want)


@njit(cache=True, nogil=True, inline="always")
def bcast_release(ctrl, local, n):
    """Release ``n`` records; returns n, or DROPPED_RC if the consumer is no longer
    active (dropped: what was read may be corrupt; or left)."""
    fence_acquire()  # order the slot reads before the state check
    base = local[Q_BASE]
    if load_acquire(ctrl, base + C_STATE) != ACTIVE:
        return DROPPED_RC
    advance(ctrl, local, Q_CURSOR, base + C_CURSOR, n)
    return n
