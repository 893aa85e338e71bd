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
``DROPPED_RC`` (-2) once the consumer is no longer active (dropped, or it
left) and ``EOF`` (-1) at end of stream).
"""

from __future__ import annotations

import os

import numpy as np

from .atomics import atomic_cas, atomic_load, atomic_store
from .bcast_kernels import (
    ACTIVE,
    B_DONE,
    B_HEAD,
    C_CURSOR,
    C_DROP_AT,
    C_DROP_HEAD,
    C_PID,
    C_STATE,
    DROPPED,
    DROPPED_RC,
    LEFT,
    P_CMIN,
    P_GRACE,
    P_HEAD,
    P_POLICY,
    POLICIES,
    _min_cursor,
    bcast_claim,
    bcast_publish,
    bcast_release,
    bcast_try_claim,
    bcast_try_peek,
    consumer_base,
)
from .endpoint import (
    EOF,
    RingBase,
    count_arg,
    create_segment,
    pop_into,
    pop_records,
    push_loop,
    readonly,
)
from .ring_loops import _bcast_pop_records, _bcast_push_records, bcast_peek, bcast_pop, bcast_push
from .segment import (
    H_GRACE_NS,
    H_N_CONSUMERS,
    H_POLICY,
    KIND_BROADCAST,
    IpcError,
    Segment,
    pid_alive,
)
from .wait import WaitStrategy

__all__ = ["BroadcastConsumer", "BroadcastRing", "ConsumerDropped"]


class ConsumerDropped(IpcError):
    """This consumer fell a whole ring behind and the producer (policy="drop") dropped it."""


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
        seg = create_segment(
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
            # P_HEAD, P_CMIN, P_CAP, P_SIZE, P_NCONS, P_POLICY, P_GRACE, P_STUCK_SINCE
            [head, 0, self.capacity, self.record_size, self.n_consumers, 0, 0, 0],
            dtype=np.int64,
        )
        self.local[P_POLICY] = int(h[H_POLICY])
        self.local[P_GRACE] = int(h[H_GRACE_NS])
        self.local[P_CMIN] = _min_cursor(self.ctrl, self.local)
        self._claimed = 0

    def try_claim(self, n: int) -> np.ndarray:
        """Writable view of up to ``n`` free contiguous slots (possibly empty; never drops)."""
        slot, k = bcast_try_claim(self.ctrl, self.local, count_arg(n))
        self._claimed = k
        return self.records[slot : slot + k]

    def claim(self, n: int, timeout: float | None = None) -> np.ndarray:
        """Writable view of 1..n slots, waiting or dropping laggards per the policy."""
        n = count_arg(n)
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
        return push_loop(self, (_bcast_push_records, bcast_push), records, timeout)

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
        return readonly(self.records[slot : slot + n])

    def try_peek(self, max_n: int) -> np.ndarray:
        return self._result(*bcast_try_peek(self.ctrl, self.local, count_arg(max_n)))

    def peek(self, max_n: int, timeout: float | None = None) -> np.ndarray:
        """Wait for data; view of 1..max_n records, empty at end of stream.

        Raises :class:`ConsumerDropped` if this consumer has been dropped.
        """
        max_n = count_arg(max_n)
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
        """Wait for data and copy up to ``len(out)`` records into ``out`` (0: end of stream)."""
        return pop_into(self, (_bcast_pop_records, bcast_pop), out, timeout)

    def pop(self, max_n: int = 1 << 30, timeout: float | None = None) -> np.ndarray:
        """Wait for data; copy of 1..max_n records, or an empty array at end of stream."""
        return pop_records(self, (_bcast_pop_records, bcast_pop), max_n, timeout)

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
