"""The leader lease: one holder at a time, renewal by compare-and-set, expiry by TTL,
and an epoch that grows with every acquisition."""

from __future__ import annotations

import time

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease


def test_one_holder_renewal_and_expiry(nats_cluster, domain) -> None:
    with (
        JetStreamLog(nats_cluster.urls, domain) as log_a,
        JetStreamLog(nats_cluster.urls, domain) as log_b,
    ):
        # a TTL of 3 s leaves margin for a loaded machine between the renewals below
        a, b = Lease(log_a, "a", ttl_s=3), Lease(log_b, "b", ttl_s=3)
        assert a.try_acquire() and a.valid
        assert not b.try_acquire() and b.holder_now() == "a"
        first_epoch = a.epoch
        for _ in range(3):  # renewing keeps it past several TTLs
            time.sleep(0.4)
            assert a.renew()
        assert not b.try_acquire()
        # a stops renewing: the server drops the key after its TTL and b gets it
        assert b.acquire(timeout=15.0)
        assert b.epoch > first_epoch and b.holder_now() == "b"
        assert not a.valid
        assert not a.renew() and not a.held  # the CAS on a's old revision fails
        b.release()
        assert b.holder_now() is None and a.try_acquire()
