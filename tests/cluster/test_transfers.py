"""Cross-domain transfers on a real 3-node NATS cluster: two domains, each with a leader
and a standby (``python -m derivex.cluster`` nodes whose synthetic flow sends transfers to
the other domain), and the relay (``python -m derivex.cluster.relay``). The relay is
killed -9 and restarted twice, and the leader of each domain is killed -9 once (its
standby takes over). Then the flows pause, the relay settles what is in flight, and from
the two streams alone: every transfer sent was processed exactly once by the other domain
(credited, or refused and refunded once), global conservation holds with the escrows, and
the root of roots over the leaders' last roots equals the one recomputed from the logs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derivex.cluster.domains import audit, replay, root_of_roots, venue_root
from derivex.cluster.jetstream import JetStreamLog
from derivex.core import query
from tests.cluster.test_failover import Node, check_acks_in_stream

pytestmark = pytest.mark.integration


class RelayProcess:
    def __init__(self, directory: Path, name: str, urls: list[str], domains: str) -> None:
        self.output = directory / f"{name}.log"
        self.status = directory / f"{name}.status"
        command = [
            sys.executable, "-m", "derivex.cluster.relay", "--urls", ",".join(urls),
            "--domains", domains, "--status", str(self.status), "--lifetime", "150",
        ]  # fmt: skip
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while "relay: started" not in self.output.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start:\n{self.output.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _audit(urls: list[str], ids: dict[str, int]):
    logs = {name: JetStreamLog(urls, name) for name in ids}
    try:
        return audit({name: replay(log) for name, log in logs.items()}, ids)
    finally:
        for log in logs.values():
            log.close()


def test_transfers_survive_relay_and_leader_kills(nats_cluster, domain, tmp_path) -> None:
    rng = random.Random(17)
    urls = nats_cluster.urls
    ids = {f"{domain}a": 0, f"{domain}b": 1}
    spec = ",".join(f"{name}={ident}" for name, ident in ids.items())
    pause = tmp_path / "pause"
    # domain a has one account more than b: its transfers from that account are refused
    # in b (no such account) and refunded in a
    extra = {
        f"{domain}a": ("--peers", "1", "--accounts", "9", "--transfer-every", "2"),
        f"{domain}b": ("--peers", "0", "--accounts", "8", "--transfer-every", "3"),
    }
    nodes: dict[str, list[Node]] = {name: [] for name in ids}
    relays: list[RelayProcess] = []

    def node(name: str, suffix: str) -> Node:
        started = Node(
            tmp_path, f"{name}-{suffix}", urls, name, "--rate", "20",
            "--pause-file", str(pause), *extra[name],
        )  # fmt: skip
        nodes[name].append(started)
        return started

    try:
        leaders = {name: node(name, "1") for name in ids}
        for leader in leaders.values():
            leader.wait_acked(5)
        for name in ids:
            node(name, "2").wait_output("standby from stream seq")
        relays.append(RelayProcess(tmp_path, "relay-1", urls, spec))
        time.sleep(rng.uniform(2, 4))
        relays[-1].kill()  # kill -9 the relay mid-flight; a new one starts from the logs
        relays.append(RelayProcess(tmp_path, "relay-2", urls, spec))
        for name in rng.sample(sorted(ids), 2):  # either leader, in a random order
            time.sleep(rng.uniform(1, 3))
            old, standby = nodes[name]
            os.killpg(old.process.pid, signal.SIGKILL)
            old.process.wait(10)
            standby.wait_acked(3)
            if name == sorted(ids)[0]:
                relays[-1].kill()
                relays.append(RelayProcess(tmp_path, "relay-3", urls, spec))
        time.sleep(2)
        pause.touch()  # the leaders now sequence only what the relay brings them
        deadline = time.monotonic() + 90
        while True:
            result = _audit(urls, ids)
            assert result.ok, result.problems
            if result.settled or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert result.settled, (result.in_flight, result.refunds_pending)
        statuses = {name: nodes[name][1].finish() for name in ids}
        relays[-1].process.send_signal(signal.SIGTERM)
        relays[-1].process.wait(30)
        logs = {name: JetStreamLog(urls, name) for name in ids}
        try:
            replays = {}
            for name, log in logs.items():
                check_acks_in_stream(log, *nodes[name])
                replays[name] = replay(log)
            final = audit(replays, ids)
            assert final.ok and final.settled, final
            # exactly once, from the states alone: every number sent was processed once
            for source, src_id in ids.items():
                for destination, dst_id in ids.items():
                    if source == destination:
                        continue
                    sent = query.transfers(replays[source].engine.state)[dst_id]
                    got = query.transfers(replays[destination].engine.state)[src_id]
                    assert sent["out_count"] > 3
                    assert (got["in_mark"], got["in_window"]) == (sent["out_count"], 0)
                    assert got["in_units"] + got["refused_units"] == sent["out_units"]
                    assert sent["refund_units"] == got["refused_units"]
            refused = query.transfers(replays[f"{domain}b"].engine.state)[0]["refused_count"]
            assert refused > 0  # the refusal and refund path ran
            counts = {
                name: {
                    peer: row["out_count"]
                    for peer, row in query.transfers(rep.engine.state).items()
                }
                for name, rep in replays.items()
            }
            print(f"transfers sent {counts}, refused and refunded {refused}")  # reported only
            # the root of roots over the leaders' last words = the one from the logs
            stated = {
                name: (status["position"], bytes.fromhex(status["root"]))
                for name, status in statuses.items()
            }
            assert all(status["role"] == "leader" for status in statuses.values())
            computed, entries = venue_root(logs, {n: s[0] for n, s in stated.items()})
            assert entries == stated
            assert computed == root_of_roots(stated)
        finally:
            for log in logs.values():
                log.close()
    finally:
        for relay in relays:
            relay.kill()
        for started in (n for group in nodes.values() for n in group):
            started.stop()
