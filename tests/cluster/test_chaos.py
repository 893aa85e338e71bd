"""Chaos, fast version (the long one is ``bench/cluster_bench.py --chaos``): under a
steady ccxt order flow, kill -9 the leader, the replica, a NATS server and the leader
again, one at a time: every acknowledged order is in the stream exactly once, the stream
replays gap-free, the leader's and the replica's roots equal the replay's, and the client
resumed on each new leader (``tests/cluster/chaos.py``)."""

from __future__ import annotations

from tests.cluster.chaos import Chaos


def test_kills_under_a_steady_order_flow(nats_cluster, domain, tmp_path) -> None:
    chaos = Chaos(nats_cluster, domain, tmp_path)
    try:
        chaos.wait_acks(10)
        for round_number, kind in enumerate(["leader", "replica", "nats", "leader"]):
            if kind == "leader":
                chaos.kill_leader()  # returns once an order was acknowledged again
            elif kind == "replica":
                chaos.kill_replica()
            else:
                chaos.kill_server(round_number)
            chaos.wait_acks(10)  # the client resumed
        words = chaos.finish()
        outcome = chaos.outcome
        assert outcome.kills == {"leader": 2, "replica": 1, "nats": 1}
        assert {role for role, *_ in words.values()} >= {"leader", "replica"}
        # reported, never asserted
        print(
            f"chaos: {len(outcome.acked)} orders acknowledged, errors {dict(outcome.errors)}, "
            f"failovers {[round(s, 2) for s in outcome.failovers_s]} s, exits {dict(outcome.exits)}"
        )
    finally:
        chaos.kill_all()
