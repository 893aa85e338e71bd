"""``ClusterExchange``: commands reach the engine only through the fenced stream, and a
leader that another writer has fenced answers the retryable 10040 ``not_leader`` (never
11094), before any publish, from then on; while the stream cannot acknowledge, nothing
succeeds (13888) and nothing is applied."""

from __future__ import annotations

import signal
import time

import pytest

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.node import Follower
from derivex.cluster.serve import ClusterExchange
from derivex.gateway.errors import OUTCOME_UNKNOWN, RETRY, RpcError
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


def test_no_success_while_the_stream_cannot_acknowledge(nats_cluster, domain) -> None:
    """The whole NATS cluster paused: the deposit gets 13888 outcome_unknown (its frame
    may still land), not a success, and the engine has not applied it; the leader then
    stops (10040 from the next command on)."""
    with JetStreamLog(nats_cluster.urls, domain, retry_for=1.0) as log:
        lease = Lease(log, "x", ttl_s=30)
        exchange = ClusterExchange(Follower(log, every=4, node="x").take_over(lease))
        account = exchange.create_account()
        assert exchange.deposit(account, 5).accepted
        for node in nats_cluster.nodes:
            node.signal(signal.SIGSTOP)
        try:
            with pytest.raises(RpcError) as unknown:
                exchange.deposit(account, 7)
        finally:
            for node in nats_cluster.nodes:
                node.signal(signal.SIGCONT)
        assert (unknown.value.code, unknown.value.data) == (
            OUTCOME_UNKNOWN,
            {"reason": "outcome_unknown"},
        )
        assert exchange.balance(account) == 5  # not applied: nothing acknowledged
        deadline = time.monotonic() + 30
        while not all(node.healthy() for node in nats_cluster.nodes):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with pytest.raises(RpcError) as stopped:
            exchange.deposit(account, 9)
        assert stopped.value.code == RETRY
        lease.release()
