"""``derivex serve --cluster`` as an operator runs it: a leader and a standby over one data
directory on a real 3-node NATS cluster, with the demo agents (they give the book its mark,
hence the price band) trading through the leader. A ccxt client trades on the leader; the leader is
killed with SIGKILL; the standby takes the lease, catches up from the stream, serves, and
the client resumes there: the orders it was acknowledged are all there, and it trades on.
A replica follows the same stream and agrees with the new leader's roots."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ccxt
import numpy as np
import pytest

from derivex.cluster.__main__ import synthetic_batch
from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.node import RootReport, roots_subject
from derivex.core.engine import Engine
from derivex.core.records import CommandKind
from derivex.journal import full_root
from derivex.sequencer import Sequencer
from tests.cluster.test_failover import replay_root
from tests.gateway.conftest import unique_nonce

DERIVEX = [sys.executable, "-m", "derivex.cli"]
PERPETUAL = "BTC/USDC:USDC"


class ServedNode:
    """``derivex serve --cluster ...`` as a subprocess; its stdout collected by a thread
    (a standby prints its banner only once it leads)."""

    def __init__(
        self, data: Path, log: Path, urls: list[str], domain: str, role: str, node: str, *extra: str
    ) -> None:
        command = [
            *DERIVEX, "serve", "--cluster", ",".join(urls), "--domain", domain,
            "--role", role, "--node", node, "--data-dir", str(data),
            "--port", "0", "--lease-ttl", "2", "--log-format", "console", *extra,
        ]  # fmt: skip
        self.log = log
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def banner(self, timeout: float = 120.0) -> str:
        """The REST URL, once the node serves (it leads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "".join(self.lines)
            if "ccxt.deribit(" in text:
                found = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", text)
                assert found, text
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"no banner ({self.process.poll()}): {''.join(self.lines)}\n"
            f"{self.log.read_text()[-4000:]}"
        )

    def credentials(self) -> tuple[str, str]:
        text = "".join(self.lines)
        return (
            re.search(r"client_id\s+(\S+)", text).group(1),  # type: ignore[union-attr]
            re.search(r"client_secret\s+(\S+)", text).group(1),  # type: ignore[union-attr]
        )

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def client(url: str, key: str, secret: str) -> ccxt.deribit:
    exchange = ccxt.deribit(
        {
            "apiKey": key,
            "secret": secret,
            "urls": {"api": {"rest": url}},
            "enableRateLimit": False,
            "nonce": unique_nonce,
        }
    )
    exchange.load_markets()
    return exchange


def low_price(exchange: ccxt.deribit, step: int) -> float:
    """A buy price a little over the band's floor (never fills, never refused)."""
    deadline = time.monotonic() + 60
    while not (floor := exchange.fetch_ticker(PERPETUAL)["info"]["min_price"]):
        assert time.monotonic() < deadline, "no price band: no mark yet"
        time.sleep(0.2)
    return float(exchange.price_to_precision(PERPETUAL, floor * (1.02 + step / 1000)))


def test_a_standby_serves_after_the_leader_is_killed(nats_cluster, domain, tmp_path) -> None:
    data, log = tmp_path / "venue", tmp_path / "nodes.log"
    leader = ServedNode(data, log, nats_cluster.urls, domain, "leader", "a")
    nodes = [leader]
    try:
        url = leader.banner()
        key, secret = leader.credentials()
        standby = ServedNode(data, log, nats_cluster.urls, domain, "standby", "b")
        nodes.append(standby)
        trader = client(url, key, secret)
        acknowledged = []
        for step in range(5):  # just inside the price band, far under the index: rests
            order = trader.create_order(
                PERPETUAL, "limit", "buy", 0.01, low_price(trader, step), {"label": f"rest{step}"}
            )
            assert order["status"] == "open"
            acknowledged.append(order["id"])
        # a market order fills against the demo makers: a closed order and a trade
        filled = trader.create_order(PERPETUAL, "market", "buy", 0.01, None, {"label": "taken"})
        filled = trader.fetch_order(filled["id"], PERPETUAL)
        assert filled["status"] == "closed" and filled["filled"] == 0.01
        trades = {trade["id"] for trade in trader.fetch_my_trades(PERPETUAL)}
        assert trades
        time.sleep(1.0)  # the standby follows (not needed for correctness)
        os.killpg(leader.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        leader.process.wait(10)

        new_url = standby.banner()
        # reported, never asserted: the lease TTL, the catch-up, the fence frame, the start
        print(
            f"serve failover: kill -9 to the new leader's banner {time.monotonic() - killed:.1f} s"
        )
        assert new_url != url
        resumed = client(new_url, key, secret)  # the same key: one data directory
        open_orders = resumed.fetch_open_orders(PERPETUAL)
        open_ids = {order["id"] for order in open_orders}
        assert set(acknowledged) <= open_ids  # every acknowledged order survived
        labels = {order["id"]: order["info"]["label"] for order in open_orders}
        assert [labels[id_] for id_ in acknowledged] == [f"rest{step}" for step in range(5)]
        # the history of the leader before: the filled order and its trade
        again = resumed.fetch_order(filled["id"], PERPETUAL)
        assert (again["status"], again["filled"], again["info"]["label"]) == (
            "closed",
            0.01,
            "taken",
        )
        assert trades <= {trade["id"] for trade in resumed.fetch_my_trades(PERPETUAL)}
        order = resumed.create_order(PERPETUAL, "limit", "buy", 0.01, low_price(resumed, 9))
        assert order["status"] == "open"
        assert resumed.cancel_order(acknowledged[0], PERPETUAL)["status"] == "canceled"
        assert standby.stop() == 0
        with JetStreamLog(nats_cluster.urls, domain) as stream:
            frames = list(stream.read(1))
        seq, _root = replay_root(frames)
        assert seq == frames[-1].last_seq  # the stream replays from scratch, gap-free
    finally:
        for node in nodes:
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(10)


def test_a_replica_fed_a_tampered_frame_leaves_service(nats_cluster, domain, tmp_path) -> None:
    """The test is the leader: it appends frames, one with a deposit altered on the way,
    and publishes the roots of the true frames every K = 4. The replica process finds its
    root differs at stream seq 8 (the first multiple of K after frame 6) and exits 2."""
    log_path = tmp_path / "replica.log"
    replica = ServedNode(
        tmp_path / "venue", log_path, nats_cluster.urls, domain, "replica", "r",
        "--root-every", "4",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while f"r: replica of {domain}" not in log_path.read_text():  # listening to roots
            assert time.monotonic() < deadline and replica.process.poll() is None
            time.sleep(0.05)
        truth = Sequencer(Engine())
        with JetStreamLog(nats_cluster.urls, domain) as stream:
            for position in range(1, 13):
                batch = synthetic_batch(truth.seq + 1, 3)
                batch["seq"] = np.arange(truth.seq + 1, truth.seq + 4, dtype=np.uint64)
                sent = batch.copy()
                if position == 6:
                    deposit = np.flatnonzero(sent["kind"] == CommandKind.DEPOSIT)[0]
                    sent["amount_units"][deposit] += 1
                stream.append(sent, truth.seq)
                truth.apply(batch)
                if position % 4 == 0:
                    root = full_root(truth.engine.state).hex()
                    report = RootReport(domain, position, truth.seq, root, "test", True)
                    stream.loop.call(stream.nc.publish(roots_subject(domain), report.encode()))
        assert replica.process.wait(60) == 2  # out of service
        text = log_path.read_text()
        assert "replica diverged, out of service" in text and "stream seq 8" in text
    finally:
        if replica.process.poll() is None:
            os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait(10)


@pytest.mark.parametrize("role", ["replica", "nobody"])
def test_bad_cluster_options_are_refused(tmp_path, role) -> None:
    command = [*DERIVEX, "serve", "--cluster", "", "--role", role, "--data-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error:" in done.stderr
