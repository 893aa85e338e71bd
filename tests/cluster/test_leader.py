"""A leader that cannot tell whether its frame landed stops: the frame may land later,
leaving its engine behind the log, and only a takeover (which reads the log first) can
resolve that. It never reuses the seqs for another batch."""

from __future__ import annotations

import signal
import time

import pytest

from derivex.cluster.__main__ import synthetic_batch
from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.log import Fenced, LogError
from derivex.cluster.node import Follower


def test_an_append_with_an_unknown_outcome_stops_the_leader(nats_cluster, domain) -> None:
    with JetStreamLog(nats_cluster.urls, domain, retry_for=1.0) as log:
        lease = Lease(log, "leader", ttl_s=30)
        leader = Follower(log, every=4).take_over(lease)
        leader.sequence(synthetic_batch(leader.sequencer.seq + 1, 2))
        seq, hash_before = leader.sequencer.seq, leader.sequencer.engine.state_hash()
        for node in nats_cluster.nodes:  # the whole cluster stalls
            node.signal(signal.SIGSTOP)
        try:
            with pytest.raises(LogError):
                leader.sequence(synthetic_batch(seq + 1, 2))
        finally:
            for node in nats_cluster.nodes:
                node.signal(signal.SIGCONT)
        # the engine did not see the batch; the seqs were not used up
        assert leader.sequencer.seq == seq
        assert leader.sequencer.engine.state_hash() == hash_before
        deadline = time.monotonic() + 30
        while not all(node.healthy() for node in nats_cluster.nodes):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with pytest.raises(Fenced, match="stopped"):
            leader.sequence(synthetic_batch(seq + 1, 3))  # another batch at the same seqs
        log.retry_for = 20.0
        frames = list(log.read(1))
        # the stalled frame may have landed after the resume; nothing else did
        assert len(frames) in (2, 3)
        assert all(len(frame.commands) != 3 for frame in frames)
        lease.release()
