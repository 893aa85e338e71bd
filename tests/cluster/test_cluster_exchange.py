"""``ClusterExchange``: commands reach the engine only through the fenced stream, and a
leader that another writer has fenced answers the retryable 10040 ``not_leader`` (never
11094), before any publish, from then on."""

from __future__ import annotations

import pytest

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.node import Follower
from derivex.cluster.serve import ClusterExchange
from derivex.gateway.errors import RETRY, RpcError
from tests.cluster.conftest import stamped


def test_a_fenced_leader_answers_not_leader(nats_cluster, domain) -> None:
    with JetStreamLog(nats_cluster.urls, domain) as log:
        lease = Lease(log, "x", ttl_s=5)
        exchange = ClusterExchange(Follower(log, every=4, node="x").take_over(lease))
        try:
            account = exchange.create_account()
            assert exchange.deposit(account, 5).accepted
            assert log.stream_last == 3  # the fence frame, then one frame per command
            with JetStreamLog(nats_cluster.urls, domain, writer="intruder") as other:
                seq = exchange.sequencer.seq
                other.append(stamped(seq + 1, 1), seq)  # another writer slips a frame in
            balance = exchange.balance(account)
            for _ in range(2):  # refused by the server's fence, then before any publish
                with pytest.raises(RpcError) as refused:
                    exchange.deposit(account, 5)
                assert (refused.value.code, refused.value.data) == (RETRY, {"reason": "not_leader"})
            log.refresh()  # (the handle caches its tail)
            assert exchange.balance(account) == balance and log.stream_last == 4
        finally:
            lease.release()
