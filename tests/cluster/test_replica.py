"""Replicas apply the leader's frames with the same kernel and check state roots every K
frames: in agreement with an honest leader, and out of service within K frames of a
tampered frame."""

from __future__ import annotations

import numpy as np
import pytest

from derivex.cluster.__main__ import synthetic_batch
from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.node import Follower
from derivex.core.records import CommandKind

K = 4


def wait_for(condition, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def leader(nats_cluster, domain):
    log = JetStreamLog(nats_cluster.urls, domain)
    lease = Lease(log, "leader", ttl_s=5)
    leader = Follower(log, every=K, node="leader").take_over(lease)
    try:
        yield leader
    finally:
        lease.release()
        log.close()


def test_a_replica_agrees_with_the_leader(nats_cluster, domain, leader) -> None:
    with JetStreamLog(nats_cluster.urls, domain) as log:
        replica = Follower(log, every=K, node="replica")
        for _ in range(11):  # the takeover's NOOP frame, then 11 batches: 12 frames
            leader.sequence(synthetic_batch(leader.sequencer.seq + 1, 3))
        assert replica.poll(idle=0.5, until=leader.position) == 12
        assert replica.sequencer.seq == leader.sequencer.seq == 34
        assert replica.sequencer.engine.state_hash() == leader.sequencer.engine.state_hash()
        assert wait_for(lambda: len(replica.roots()[1]) == 3)  # stream seqs 4, 8, 12
        own, leader_roots = replica.roots()
        assert own == leader_roots and sorted(own) == [4, 8, 12] and replica.diverged is None
        replica.close()


def test_a_tampered_frame_is_detected_within_k_frames(nats_cluster, domain, leader) -> None:
    with JetStreamLog(nats_cluster.urls, domain) as log:
        replica = Follower(log, every=K, node="replica")  # listening to roots from now on
        for _ in range(15):  # stream seqs 2..16; the leader publishes roots at 4, 8, 12, 16
            leader.sequence(synthetic_batch(leader.sequencer.seq + 1, 3))
        assert wait_for(lambda: len(replica.roots()[1]) == 4)
        frames = list(log.read(1))
        assert [frame.position for frame in frames] == list(range(1, 17))
        for frame in frames[:8]:
            if frame.position == 6:  # one deposit's amount altered on the way
                commands = frame.commands.copy()
                deposit = np.flatnonzero(commands["kind"] == CommandKind.DEPOSIT)[0]
                commands["amount_units"][deposit] += 1
                frame = type(frame)(frame.first_seq, commands, frame.position)
            replica.apply_frame(frame)
            assert (replica.diverged is None) == (frame.position < 8)
        assert "stream seq 8" in replica.diverged  # caught at the first root after frame 6
        with pytest.raises(RuntimeError, match="out of service"):
            replica.apply_frame(frames[8])
        replica.close()


def test_a_replica_joins_from_the_middle(nats_cluster, domain, leader) -> None:
    """A replica that starts at stream seq P with an engine already at P (what a snapshot
    will give it) follows from P + 1 and reaches the leader's state."""
    for _ in range(9):
        leader.sequence(synthetic_batch(leader.sequencer.seq + 1, 2))
    with JetStreamLog(nats_cluster.urls, domain) as log:
        early = Follower(log, every=K, node="early")
        assert early.poll(idle=0.5, until=6) == 6
        middle = Follower(
            log, early.sequencer.engine, seq=early.sequencer.seq, position=6, node="middle"
        )
        assert middle.poll(idle=0.5, until=leader.position) == leader.position - 6 == 4
        assert middle.sequencer.engine.state_hash() == leader.sequencer.engine.state_hash()
        early.close()
        middle.close()
