"""Broadcast ring: one producer, ``n`` consumers, each with its own cursor.

Every consumer sees every record, in order.  Consumer ``k`` owns one 128-byte
control block holding its cursor (records it has released), its state
(ACTIVE / DROPPED / LEFT), the pid of the attached process and drop details.
All slots exist from creation on with cursor 0, so records published before
a consumer attaches are kept for it.

When the ring is full for some active consumer the producer applies the
segment's policy:

* ``"block"`` -- wait (with the handle's wait strategy / timeout) until the
  slowest active consumer releases records;
* ``"drop"`` -- wait at most ``drop_grace`` seconds, then mark every consumer
  that is a whole ring behind as DROPPED and overwrite its unread records.
  A dropped consumer gets :class:`ConsumerDropped` from its next
  ``peek``/``pop``/``release``; records it read from a view since its last
  successful ``release`` may already have been overwritten and must be
  discarded (``release`` raising is the signal).

Drop detection is a seqlock-style protocol: the producer CASes the state to
DROPPED and issues a full fence *before* writing into the slots; a consumer
issues an acquire fence after reading slots and only then checks its state.
If any byte it read was overwritten, it is guaranteed to observe DROPPED.

njit API mirrors :mod:`.ring` (``bcast_try_claim``, ``bcast_claim``,
``bcast_publish``, ``bcast_push`` for the producer; ``bcast_try_peek``,
``bcast_peek``, ``bcast_release``, ``bcast_pop`` for consumers, which return
``DROPPED`` (-2) once the consumer has been dropped and ``EOF`` (-1) at end
of stream).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from .atomics import (
    atomic_cas,
    atomic_load,
    atomic_store,
    compare_exchange,
    fence_acquire,
    fence_seq_cst,
    load_acquire,
    monotonic_ns,
    store_release,
)
from .ring import (
    EOF,
    RingBase,
    _count,
    _create_segment,
    _readonly,
    copy_bytes,
    pop_loop,
    push_loop,
)
from .segment import (
    H_GRACE_NS,
    H_N_CONSUMERS,
    H_POLICY,
    KIND_BROADCAST,
    LINE_WORDS,
    IpcError,
    Segment,
    pid_alive,
)
from .wait import WaitStrategy, wait_step

__all__ = ["BroadcastConsumer", "BroadcastRing", "ConsumerDropped"]

B_HEAD = 0
B_DONE = LINE_WORDS
C_CURSOR, C_STATE, C_PID, C_DROP_AT, C_DROP_HEAD = range(5)
ACTIVE, DROPPED, LEFT = 0, 1, 2
BLOCK, DROP = 0, 1
POLICIES = {"block": BLOCK, "drop": DROP}
DROPPED_RC = -2
# producer-local words
P_HEAD, P_CMIN, P_CAP, P_SIZE, P_NCONS, P_POLICY, P_GRACE = range(7)
# consumer-local words
Q_CURSOR, Q_CHEAD, Q_CAP, Q_SIZE, Q_BASE = range(5)


def consumer_base(k: int) -> int:
    return (2 + k) * LINE_WORDS


class ConsumerDropped(IpcError):
    """This consumer fell a whole ring behind and the producer (policy="drop") dropped it."""


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
        if cursor <= head - local[P_CAP]:
            if compare_exchange(ctrl, base + C_STATE, ACTIVE, DROPPED) == ACTIVE:
                store_release(ctrl, base + C_DROP_AT, cursor)
                store_release(ctrl, base + C_DROP_HEAD, head)
                dropped += 1
    fence_seq_cst()  # DROPPED must be visible before any slot is overwritten
    return dropped


@njit(cache=True, nogil=True)
def bcast_try_claim(ctrl, local, want):
    head = local[P_HEAD]
    cap = local[P_CAP]
    slot = head & (cap - 1)
    want = min(want, cap - slot)
    free = cap - (head - local[P_CMIN])
    if free < want:
        local[P_CMIN] = _min_cursor(ctrl, local)
        free = cap - (head - local[P_CMIN])
    return slot, max(0, min(want, free))


@njit(cache=True, nogil=True)
def bcast_claim(ctrl, local, want, wparams, deadline_ns):
    slot, n = bcast_try_claim(ctrl, local, want)
    if n > 0 or want <= 0:
        return slot, n
    drop = local[P_POLICY] == DROP
    limit = deadline_ns
    if drop:
        grace_end = monotonic_ns() + local[P_GRACE]
        if deadline_ns < 0 or grace_end <= deadline_ns:
            limit = grace_end
        else:
            drop = False  # the caller's deadline comes first: time out, don't drop
    i = 0
    while not (drop and local[P_GRACE] == 0):
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


@njit(cache=True, nogil=True)
def bcast_publish(ctrl, local, n):
    local[P_HEAD] += n
    store_release(ctrl, B_HEAD, local[P_HEAD])


@njit(cache=True, nogil=True)
def bcast_push(ctrl, local, raw, src, wparams, deadline_ns):
    size = local[P_SIZE]
    total = src.shape[0] // size
    done = 0
    while done < total:
        slot, n = bcast_claim(ctrl, local, total - done, wparams, deadline_ns)
        if n == 0:
            break
        copy_bytes(raw, slot * size, src, done * size, n * size)
        bcast_publish(ctrl, local, n)
        done += n
    return done


# ----------------------------------------------------------------- consumer
@njit(cache=True, nogil=True)
def bcast_try_peek(ctrl, local, want):
    if load_acquire(ctrl, local[Q_BASE] + C_STATE) == DROPPED:
        return 0, DROPPED_RC
    cursor = local[Q_CURSOR]
    cap = local[Q_CAP]
    slot = cursor & (cap - 1)
    want = min(want, cap - slot)
    avail = local[Q_CHEAD] - cursor
    if avail < want:
        local[Q_CHEAD] = load_acquire(ctrl, B_HEAD)
        avail = local[Q_CHEAD] - cursor
    return slot, max(0, min(want, avail))


@njit(cache=True, nogil=True)
def bcast_peek(ctrl, local, want, wparams, deadline_ns):
    slot, n = bcast_try_peek(ctrl, local, want)
    i = 0
    while n == 0 and want > 0:
        if load_acquire(ctrl, B_DONE) != 0:
            slot, n = bcast_try_peek(ctrl, local, want)
            return slot, (n if n != 0 else EOF)
        if not wait_step(wparams, i, deadline_ns):
            break
        i += 1
        slot, n = bcast_try_peek(ctrl, local, want)
    return slot, n


@njit(cache=True, nogil=True)
def bcast_release(ctrl, local, n):
    """Release ``n`` records; returns n, or DROPPED if what was read may be corrupt."""
    fence_acquire()  # order the slot reads before the state check
    base = local[Q_BASE]
    if load_acquire(ctrl, base + C_STATE) == DROPPED:
        return DROPPED_RC
    local[Q_CURSOR] += n
    store_release(ctrl, base + C_CURSOR, local[Q_CURSOR])
    return n


@njit(cache=True, nogil=True)
def bcast_pop(ctrl, local, raw, dst, wparams, deadline_ns):
    size = local[Q_SIZE]
    max_n = dst.shape[0] // size
    slot, n = bcast_peek(ctrl, local, max_n, wparams, deadline_ns)
    got = 0
    while n > 0:
        copy_bytes(dst, got * size, raw, slot * size, n * size)
        if bcast_release(ctrl, local, n) == DROPPED_RC:
            return DROPPED_RC
        got += n
        if got == max_n:
            break
        slot, n = bcast_try_peek(ctrl, local, max_n - got)
    return got if got > 0 else n


# ------------------------------------------------------------ Python API
class BroadcastRing(RingBase):
    """Producer handle of a broadcast ring."""

    @classmethod
    def create(
        cls,
        name: str,
        dtype,
        capacity: int,
        consumers: int,
        *,
        policy: str = "block",
        drop_grace: float = 0.0,
        wait: WaitStrategy | str | None = None,
        replace_stale: bool = False,
    ) -> BroadcastRing:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {sorted(POLICIES)}, got {policy!r}")
        if not 1 <= consumers <= 4096:
            raise ValueError("consumers must be in 1..4096")
        if drop_grace < 0:
            raise ValueError("drop_grace must be >= 0")
        seg = _create_segment(
            name,
            KIND_BROADCAST,
            dtype,
            capacity,
            2 + consumers,
            replace_stale,
            n_consumers=consumers,
            policy=POLICIES[policy],
            grace_ns=int(drop_grace * 1e9),
        )
        return cls(seg, wait)

    @classmethod
    def attach(cls, name: str, dtype=None, *, wait=None, timeout: float = 1.0) -> BroadcastRing:
        """Attach as the producer (only one process may produce at a time)."""
        return cls(Segment.attach(name, KIND_BROADCAST, dtype, timeout=timeout), wait)

    def __init__(self, seg: Segment, wait=None) -> None:
        super().__init__(seg, wait)
        h = seg.header
        self.n_consumers = int(h[H_N_CONSUMERS])
        self.policy = {v: k for k, v in POLICIES.items()}[int(h[H_POLICY])]
        head = atomic_load(self.ctrl, B_HEAD)
        self.local = np.array(
            [head, 0, self.capacity, self.record_size, self.n_consumers]
            + [int(h[H_POLICY]), int(h[H_GRACE_NS]), 0],
            dtype=np.int64,
        )
        self.local[P_CMIN] = _min_cursor(self.ctrl, self.local)
        self._claimed = 0

    def try_claim(self, n: int) -> np.ndarray:
        """Writable view of up to ``n`` free contiguous slots (possibly empty; never drops)."""
        slot, k = bcast_try_claim(self.ctrl, self.local, _count(n))
        self._claimed = k
        return self.records[slot : slot + k]

    def claim(self, n: int, timeout: float | None = None) -> np.ndarray:
        """Writable view of 1..n slots, waiting or dropping laggards per the policy."""
        n = _count(n)
        if n == 0:
            return self.records[:0]
        slot, k = self._blocking(bcast_claim, (self.ctrl, self.local, n), timeout, "claim")
        self._claimed = k
        return self.records[slot : slot + k]

    def publish(self, n: int) -> None:
        if not 0 <= n <= self._claimed:
            raise ValueError(f"publish({n}) but only {self._claimed} slots are claimed")
        self._claimed = 0
        if n:
            bcast_publish(self.ctrl, self.local, n)

    def push(self, records, timeout: float | None = None) -> int:
        """Copy ``records`` in (see :meth:`SpscRing.push`)."""
        return push_loop(self, bcast_push, records, timeout)

    def finish(self) -> None:
        """Mark end of stream for all consumers."""
        atomic_store(self.ctrl, B_DONE, 1)

    def consumer(self, k: int, wait=None) -> BroadcastConsumer:
        """Open consumer slot ``k`` on a separate mapping (see :class:`BroadcastConsumer`)."""
        return BroadcastConsumer.attach(self.name, k, wait=wait or self.wait)

    def drop_consumer(self, k: int) -> bool:
        """Drop consumer ``k`` by hand (e.g. its process died); True if it was active."""
        base = consumer_base(_slot(k, self.n_consumers))
        cursor = atomic_load(self.ctrl, base + C_CURSOR)
        if atomic_cas(self.ctrl, base + C_STATE, ACTIVE, DROPPED) != ACTIVE:
            return False
        atomic_store(self.ctrl, base + C_DROP_AT, cursor)
        atomic_store(self.ctrl, base + C_DROP_HEAD, int(self.local[P_HEAD]))
        return True

    def consumer_state(self, k: int) -> dict:
        """Snapshot of consumer slot ``k``: state, cursor, pid."""
        base = consumer_base(_slot(k, self.n_consumers))
        state = atomic_load(self.ctrl, base + C_STATE)
        return {
            "state": {ACTIVE: "active", DROPPED: "dropped", LEFT: "left"}.get(state, state),
            "cursor": atomic_load(self.ctrl, base + C_CURSOR),
            "pid": atomic_load(self.ctrl, base + C_PID),
        }


class BroadcastConsumer(RingBase):
    """Consumer ``k`` of a broadcast ring; registers its pid in the slot."""

    @classmethod
    def attach(
        cls, name: str, k: int, dtype=None, *, wait=None, timeout: float = 1.0
    ) -> BroadcastConsumer:
        seg = Segment.attach(name, KIND_BROADCAST, dtype, timeout=timeout)
        try:
            return cls(seg, k, wait)
        except BaseException:
            seg.close()
            raise

    def __init__(self, seg: Segment, k: int, wait=None) -> None:
        super().__init__(seg, wait)
        self.k = _slot(k, int(seg.header[H_N_CONSUMERS]))
        self._base = base = consumer_base(self.k)
        self._check_state()
        me = os.getpid()
        prev = atomic_cas(self.ctrl, base + C_PID, 0, me)
        if prev != 0 and (pid_alive(prev) or atomic_cas(self.ctrl, base + C_PID, prev, me) != prev):
            raise IpcError(f"consumer slot {self.k} of {self.name!r} is in use by pid {prev}")
        self._pid = me
        cursor = atomic_load(self.ctrl, base + C_CURSOR)
        self.local = np.array(
            [cursor, cursor, self.capacity, self.record_size, base, 0, 0, 0], dtype=np.int64
        )
        self._peeked = 0

    def _check_state(self) -> None:
        state = atomic_load(self.ctrl, self._base + C_STATE)
        if state == DROPPED:
            at = atomic_load(self.ctrl, self._base + C_DROP_AT)
            head = atomic_load(self.ctrl, self._base + C_DROP_HEAD)
            raise ConsumerDropped(
                f"consumer {self.k} of broadcast ring {self.name!r} was dropped: it had "
                f"released {at} records while the producer had published {head} "
                f"(capacity {self.capacity}, policy 'drop')"
            )
        if state == LEFT:
            raise IpcError(f"consumer slot {self.k} of {self.name!r} has left the ring")

    def _result(self, slot: int, n: int) -> np.ndarray:
        if n == DROPPED_RC:
            self._check_state()
        if n == EOF:
            slot = n = 0
        self._peeked = n
        return _readonly(self.records[slot : slot + n])

    def try_peek(self, max_n: int) -> np.ndarray:
        return self._result(*bcast_try_peek(self.ctrl, self.local, _count(max_n)))

    def peek(self, max_n: int, timeout: float | None = None) -> np.ndarray:
        """Wait for data; view of 1..max_n records, empty at end of stream.

        Raises :class:`ConsumerDropped` if this consumer has been dropped.
        """
        max_n = _count(max_n)
        if max_n == 0:
            return self._result(0, 0)
        return self._result(
            *self._blocking(bcast_peek, (self.ctrl, self.local, max_n), timeout, "peek")
        )

    def release(self, n: int) -> None:
        """Release records of the last peek; raises ConsumerDropped if they may be corrupt."""
        if not 0 <= n <= self._peeked:
            raise ValueError(f"release({n}) but only {self._peeked} records are peeked")
        self._peeked = 0
        if bcast_release(self.ctrl, self.local, n) == DROPPED_RC:
            self._check_state()

    def pop_into(self, out: np.ndarray, timeout: float | None = None) -> int:
        return pop_loop(self, bcast_pop, out, timeout)

    def pop(self, max_n: int = 1 << 30, timeout: float | None = None) -> np.ndarray:
        out = np.empty(min(_count(max_n), self.capacity), self.dtype)
        k = self.pop_into(out, timeout)
        return out[:k] if 2 * k >= out.shape[0] else out[:k].copy()

    @property
    def dropped(self) -> bool:
        return atomic_load(self.ctrl, self._base + C_STATE) == DROPPED

    def leave(self) -> None:
        """Unsubscribe for good: the producer stops waiting for this slot."""
        atomic_cas(self.ctrl, self._base + C_STATE, ACTIVE, LEFT)

    def close(self) -> None:
        if not self.closed:
            atomic_cas(self.ctrl, self._base + C_PID, self._pid, 0)
        super().close()


def _slot(k: int, n: int) -> int:
    k = int(k)
    if not 0 <= k < n:
        raise IndexError(f"consumer index {k} out of range 0..{n - 1}")
    return k
