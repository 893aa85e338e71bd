"""Snapshots on a replica: tagged with stream seq and root, a new replica bootstraps from
the newest and reaches the leader's state, the stream is trimmed below the oldest kept
snapshot (a replica can no longer start from scratch, one from the snapshot can), and a
snapshot whose state does not match its recorded root is refused."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from derivex.cluster.__main__ import synthetic_batch
from derivex.cluster.jetstream import JetStreamLog, stream_name
from derivex.cluster.lease import Lease
from derivex.cluster.log import LogError
from derivex.cluster.node import Follower
from derivex.cluster.snapshots import bootstrap, snapshots, take_snapshot, trim
from derivex.sequencer import SequenceGap

K = 4


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


def _first_seq(urls: list[str], stream: str) -> int:
    async def first() -> int:
        connection = await nats.connect(servers=urls)
        try:
            return (await connection.jetstream().stream_info(stream)).state.first_seq
        finally:
            await connection.close()

    return asyncio.run(first())


def _sequence(leader, frames: int) -> None:
    for _ in range(frames):
        leader.sequence(synthetic_batch(leader.sequencer.seq + 1, 3))


def test_snapshot_bootstrap_and_trim(nats_cluster, domain, leader, tmp_path) -> None:
    _sequence(leader, 19)  # with the takeover's fence frame: stream seqs 1..20
    with JetStreamLog(nats_cluster.urls, domain) as log:
        replica = Follower(log, every=K, node="replica")
        replica.poll(idle=0.5, until=12)
        take_snapshot(replica, tmp_path)
        replica.poll(idle=0.5, until=20)
        take_snapshot(replica, tmp_path)
        replica.close()
        taken = snapshots(tmp_path, domain)
        assert [(s["position"], s["seq"]) for s in taken] == [(12, 34), (20, 58)]

        _sequence(leader, 5)
        fresh = bootstrap(log, tmp_path, every=K, node="fresh")
        assert (fresh.position, fresh.sequencer.seq) == (20, 58)
        assert fresh.poll(idle=0.5, until=leader.position) == 5
        assert fresh.sequencer.engine.state_hash() == leader.sequencer.engine.state_hash()
        fresh.close()

        assert trim(log, tmp_path, keep=1) == 21
        assert _first_seq(nats_cluster.urls, stream_name(domain)) == 21
        assert [s["position"] for s in snapshots(tmp_path, domain)] == [20]
        scratch = Follower(log, every=K, node="scratch")  # the stream no longer starts at 1
        with pytest.raises(SequenceGap):
            scratch.poll(idle=0.5, until=leader.position)
        scratch.close()
        again = bootstrap(log, tmp_path, every=K, node="again")
        again.poll(idle=0.5, until=leader.position)
        assert again.sequencer.engine.state_hash() == leader.sequencer.engine.state_hash()
        again.close()

        sidecar = tmp_path / f"cluster-{58:020d}.json"
        entry = json.loads(sidecar.read_text())
        entry["root"] = "00" * 32
        sidecar.write_text(json.dumps(entry))
        with pytest.raises(LogError, match="state root differs"):
            bootstrap(log, tmp_path, every=K)
