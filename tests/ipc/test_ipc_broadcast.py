"""Broadcast ring semantics in one process (deterministic)."""

from __future__ import annotations

import time

import ipc_workers as w
import numpy as np
import pytest

from derivex.ipc import BroadcastConsumer, BroadcastRing, ConsumerDropped, IpcError, RingTimeout


def test_every_consumer_sees_everything(shm_name):
    with BroadcastRing.create(shm_name, w.REC, 8, consumers=3) as ring:
        cons = [ring.consumer(k) for k in range(3)]
        ring.push(w.make_records(0, 5))
        for c in cons:
            assert w.check(c.pop(100), 0) is None
        ring.push(w.make_records(5, 8))  # wraps; all consumers released everything
        assert w.check(cons[0].pop(3), 5) is None
        view = cons[1].peek(100)
        assert w.check(view, 5) is None and len(view) == 3  # contiguous part before the wrap
        assert np.shares_memory(view, cons[1].records) and not view.flags.writeable
        cons[1].release(3)
        ring.finish()
        for c, start in zip(cons, (8, 8, 5), strict=True):
            got = []
            while len(batch := c.pop(100, timeout=1)):
                got.append(batch)
            assert w.check(np.concatenate(got), start) is None
            assert sum(map(len, got)) == 13 - start
        for c in cons:
            c.close()


def test_block_policy_waits_for_slowest(shm_name):
    with BroadcastRing.create(shm_name, w.REC, 4, consumers=2, policy="block") as ring:
        fast, slow = ring.consumer(0), ring.consumer(1)
        ring.push(w.make_records(0, 4))
        assert len(fast.pop(4)) == 4
        assert len(ring.try_claim(1)) == 0  # slow consumer still holds all 4 slots
        t0 = time.monotonic()
        with pytest.raises(RingTimeout):
            ring.claim(1, timeout=0.1)
        assert time.monotonic() - t0 >= 0.1
        assert w.check(slow.pop(1), 0) is None
        assert len(ring.claim(4)) == 1
        ring.publish(0)
        assert ring.consumer_state(1) == {"state": "active", "cursor": 1, "pid": slow._pid}
        slow.leave()  # unsubscribed: the producer no longer waits for it
        assert ring.push(w.make_records(4, 3), timeout=0.1) == 3
        assert w.check(fast.pop(10), 4) is None
        with pytest.raises(IpcError, match="left"):
            slow.peek(1)
        fast.close()
        slow.close()


def test_drop_policy_drops_only_the_laggard(shm_name):
    with BroadcastRing.create(shm_name, w.REC, 4, consumers=2, policy="drop") as ring:
        fast, slow = ring.consumer(0), ring.consumer(1)
        ring.push(w.make_records(0, 4))
        assert w.check(fast.pop(4), 0) is None
        assert w.check(slow.pop(1), 0) is None  # slow is now 3 behind ...
        ring.push(w.make_records(4, 4))  # ... and a whole ring behind after record 5
        assert not fast.dropped and slow.dropped
        assert ring.consumer_state(1)["state"] == "dropped"
        assert w.check(fast.pop(10), 4) is None
        with pytest.raises(
            ConsumerDropped, match=r"consumer 1 .* dropped: it had released 1 records"
        ):
            slow.pop(1)
        with pytest.raises(ConsumerDropped):
            slow.peek(1)
        with pytest.raises(ConsumerDropped):
            slow.try_peek(1)
        slow.close()
        with pytest.raises(ConsumerDropped):  # the slot stays dropped for new attachers
            ring.consumer(1)
        fast.close()


def test_drop_while_reading_a_view(shm_name):
    """A view read during a drop may be overwritten; release() flags it."""
    with BroadcastRing.create(shm_name, w.REC, 4, consumers=1, policy="drop") as ring:
        c = ring.consumer(0)
        ring.push(w.make_records(0, 4))
        view = c.peek(4)
        assert w.check(view, 0) is None
        ring.push(w.make_records(4, 2))  # overwrites slots 0 and 1 under the view
        assert w.check(view, 0) is not None  # the view really changed
        with pytest.raises(ConsumerDropped):
            c.release(4)
        c.close()


def test_drop_grace_and_caller_deadline(shm_name):
    with BroadcastRing.create(
        shm_name, w.REC, 4, consumers=1, policy="drop", drop_grace=0.2
    ) as ring:
        c = ring.consumer(0)
        ring.push(w.make_records(0, 4))
        t0 = time.monotonic()
        with pytest.raises(RingTimeout):  # caller's deadline is before the grace ends
            ring.claim(1, timeout=0.05)
        assert not c.dropped
        view = ring.claim(1)  # grace counts from when the producer first got stuck
        assert time.monotonic() - t0 >= 0.2
        assert len(view) == 1 and c.dropped
        ring.publish(0)
        c.close()


def test_manual_drop_and_slot_ownership(shm_name):
    with BroadcastRing.create(shm_name, w.REC, 4, consumers=2) as ring:
        c0 = ring.consumer(0)
        with pytest.raises(IpcError, match="in use by pid"):
            BroadcastConsumer.attach(shm_name, 0)
        ring.push(w.make_records(0, 2))
        assert w.check(c0.pop(1), 0) is None
        c0.close()
        c0 = BroadcastConsumer.attach(shm_name, 0, w.REC)  # resumes at its cursor
        assert w.check(c0.pop(5), 1) is None
        with pytest.raises(IndexError):
            ring.consumer(2)
        assert ring.drop_consumer(1) is True
        assert ring.drop_consumer(1) is False
        with pytest.raises(ConsumerDropped):
            ring.consumer(1)
        ring.push(w.make_records(2, 4))  # dropped consumer no longer holds space
        c0.close()


def test_create_validation(shm_name):
    with pytest.raises(ValueError, match="policy"):
        BroadcastRing.create(shm_name, w.REC, 4, consumers=1, policy="lossy")
    with pytest.raises(ValueError, match="consumers"):
        BroadcastRing.create(shm_name, w.REC, 4, consumers=0)
    with pytest.raises(ValueError, match="drop_grace"):
        BroadcastRing.create(shm_name, w.REC, 4, consumers=1, drop_grace=-1)
    with BroadcastRing.create(shm_name, w.REC, 4, consumers=2, policy="drop") as ring:
        other = BroadcastRing.attach(shm_name, w.REC)
        assert other.policy == "drop" and other.n_consumers == 2
        other.close()
        ring.close()


def test_consumer_cursors_on_own_cache_lines(shm_name):
    from derivex.ipc.broadcast import C_CURSOR, consumer_base

    with BroadcastRing.create(shm_name, w.REC, 4, consumers=3) as ring:
        addrs = [ring.ctrl[consumer_base(k) + C_CURSOR :].ctypes.data for k in range(3)]
        head = ring.ctrl.ctypes.data
        lines = {a // 64 for a in [*addrs, head]}
        assert len(lines) == 4
