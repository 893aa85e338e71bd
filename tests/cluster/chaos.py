"""The chaos driver (the CI test ``test_chaos.py`` runs a few rounds, the benchmark
``bench/cluster_bench.py`` many): ``derivex serve --cluster`` nodes of one domain (a
leader, a standby, a replica) on a real 3-node NATS cluster, a steady ccxt order flow
that follows whichever node serves, and kill -9 of the leader, the replica or a NATS
server, one at a time. A killed node comes back as a standby (the replica as a replica),
a killed server is started again on its store.

``finish`` stops everything in an order that leaves the stream still (standbys, then the
leader, then the replica once it caught up) and checks: the stream replays gap-free (no
frame twice, none skipped), every order a client was acknowledged is accepted in it
exactly once, and the leader's and the replica's roots equal the replay's."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import ccxt

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.servers import LocalCluster
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, EventKind
from derivex.journal import full_root
from derivex.sequencer import Sequencer
from tests.cluster.test_serve_cluster import PERPETUAL, ServedNode, client, low_price

STOPPED = re.compile(r"(\S+): stopped as (\S+) at stream seq (\d+), seq (\d+), root ([0-9a-f]+)")


@dataclass
class Outcome:
    """What a chaos run saw (times on the monotonic clock, seconds)."""

    acked: list[str] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    failovers_s: list[float] = field(default_factory=list)  # leader kill -> next ack
    kills: Counter[str] = field(default_factory=Counter)
    exits: Counter[int] = field(default_factory=Counter)  # nodes that stopped by themselves


class Chaos:
    def __init__(self, cluster: LocalCluster, domain: str, directory: Path) -> None:
        self.cluster, self.domain, self.directory = cluster, domain, directory
        self.data, self.log = directory / "venue", directory / "nodes.log"
        self.nodes: dict[str, ServedNode] = {}
        self.outcome = Outcome()
        self._stop = threading.Event()
        self.start("a", "leader")
        self.nodes["a"].banner()
        self.key, self.secret = self.nodes["a"].credentials()
        self.start("b", "standby")
        self.start("r", "replica")
        self._flow = threading.Thread(target=self._orders, name="chaos-flow", daemon=True)
        self._flow.start()

    def start(self, name: str, role: str) -> None:
        urls = self.cluster.urls
        self.nodes[name] = ServedNode(self.data, self.log, urls, self.domain, role, name)

    def serving(self) -> tuple[str, str] | None:
        """(name, URL) of the live node that printed a banner (the leader), if any."""
        for name, node in self.nodes.items():
            if node.process.poll() is None:
                found = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", "".join(node.lines))
                if found:
                    return name, found.group(1)
        return None

    def _orders(self) -> None:
        """Place resting orders on whichever node serves, one every 20 ms; an error
        (connection refused, 10040 not_leader, 13888, a price outside the band) is
        counted and the order is not counted as acknowledged."""
        url = price = trader = None
        while not self._stop.is_set():
            current = self.serving()
            try:
                if current is None:
                    raise ccxt.ExchangeNotAvailable("no node serves")
                if current[1] != url or trader is None or price is None:
                    trader, url = client(current[1], self.key, self.secret), current[1]
                    price = low_price(trader, 0)
                order = trader.create_order(PERPETUAL, "limit", "buy", 0.01, price)
                self.outcome.acked.append(order["id"])
                self.outcome.ack_times.append(time.monotonic())
            except (ccxt.BaseError, AssertionError) as error:
                self.outcome.errors[type(error).__name__] += 1
                price = None if isinstance(error, ccxt.InvalidOrder) else price
                time.sleep(0.1)
            time.sleep(0.02)

    def supervise(self) -> None:
        """Start again every node that stopped by itself, as ``cluster up`` does (a
        leader fenced by a lease that ran out during a NATS election exits with 3)."""
        for name, node in list(self.nodes.items()):
            code = node.process.poll()
            if code is not None:
                assert code == 3, f"{name} exited {code}: {self.log.read_text()[-3000:]}"
                self.outcome.exits[code] += 1
                self.start(name, "replica" if name == "r" else "standby")

    def wait_acks(self, more: int, timeout: float = 120.0) -> None:
        target = len(self.outcome.acked) + more
        deadline = time.monotonic() + timeout
        while len(self.outcome.acked) < target:
            assert time.monotonic() < deadline, f"flow stalled: {self.outcome}"
            self.supervise()
            time.sleep(0.05)

    def kill_leader(self) -> None:
        serving = self.serving()
        assert serving is not None, "nobody serves"
        name = serving[0]
        killed = self._kill(name)
        self.start(name, "standby")
        self.wait_acks(1)
        # the first acknowledgement after the kill (one may have been on its way before)
        times = self.outcome.ack_times
        while times[-1] <= killed:
            self.wait_acks(1)
        self.outcome.failovers_s.append(next(t for t in times if t > killed) - killed)
        self.outcome.kills["leader"] += 1

    def kill_replica(self) -> None:
        self._kill("r")
        self.start("r", "replica")
        self.outcome.kills["replica"] += 1

    def kill_server(self, index: int) -> None:
        server = self.cluster.nodes[index % len(self.cluster.nodes)]
        server.signal(signal.SIGKILL)
        assert server.process is not None
        server.process.wait(10)
        time.sleep(1.0)
        self.cluster.start_node(server)
        self.outcome.kills["nats"] += 1

    def _kill(self, name: str) -> float:
        node = self.nodes[name]
        os.killpg(node.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        node.process.wait(10)
        return killed

    def stopped_lines(self) -> dict[str, tuple[str, int, int, str]]:
        """name -> (role, stream seq, seq, root) from the nodes' last words."""
        return {
            m.group(1): (m.group(2), int(m.group(3)), int(m.group(4)), m.group(5))
            for m in STOPPED.finditer(self.log.read_text())
        }

    def finish(self) -> dict[str, tuple[str, int, int, str]]:
        """Stop the flow and the nodes (standbys, the leader, then the caught-up replica)
        and return their last words; check the stream and the acknowledged orders."""
        self._stop.set()
        self._flow.join(30)
        self.supervise()
        serving = self.serving()
        assert serving is not None
        leader = serving[0]
        for name, node in self.nodes.items():
            if name not in (leader, "r"):  # a standby restarted a moment ago may still be
                # importing, before its SIGTERM handler: it holds nothing, either is fine
                assert node.stop() in (0, -signal.SIGTERM), name
        assert self.nodes[leader].stop() == 0
        time.sleep(3.0)  # the replica applies the last frames (it polls every 0.5 s)
        assert self.nodes["r"].stop() == 0
        words = self.stopped_lines()
        with JetStreamLog(self.cluster.urls, self.domain) as stream:
            frames = list(stream.read(1))  # raises on a gap or a repeated frame
        assert [frame.position for frame in frames] == list(range(1, len(frames) + 1))
        sequencer = Sequencer(Engine())
        accepted: Counter[str] = Counter()
        for frame in frames:
            events = sequencer.apply(frame.commands)
            placed = (events["kind"] == EventKind.ACCEPTED) & (
                events["command"] == CommandKind.PLACE_ORDER
            )
            accepted.update(str(order_id) for order_id in events["order_id"][placed])
        root = full_root(sequencer.engine.state).hex()
        assert len(set(self.outcome.acked)) == len(self.outcome.acked)
        assert all(accepted[order_id] == 1 for order_id in self.outcome.acked)
        end = (len(frames), sequencer.seq, root)
        assert words[leader][1:] == end, (words, end)
        assert words["r"][1:] == end, (words, end)
        return words

    def kill_all(self) -> None:
        self._stop.set()
        for node in self.nodes.values():
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(10)
