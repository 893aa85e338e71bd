"""A serving leader through a write outage (``cluster.pipeline``): the whole NATS
cluster paused for a few seconds, shorter than the lease's TTL.

While no PubAck can come, the gateway's loop keeps running (it no longer waits for the
cluster inside a request: pages are served and connections accepted), a new order is
refused with the retryable 10040 ``write_outage`` without being applied, and a cancel is
queued. An order sent to a read replica is forwarded to the leader and refused there the
same way. Replies still leave only once what they report is in the stream, so the
answers arrive when the cluster runs again: the refusals as they are, the cancel
acknowledged. The leader serves on, and the stream replays to the state the leader
reports when it stops."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import requests

from derivex.cluster.jetstream import JetStreamLog
from tests.cluster.test_failover import replay_root
from tests.cluster.test_serve_cluster import PERPETUAL, ServedNode, client, low_price


class Rpc:
    """Raw JSON-RPC over HTTP with a bearer token (the exact error codes, no ccxt)."""

    def __init__(self, url: str, key: str, secret: str) -> None:
        self.url = url
        auth = self.call(
            "public/auth",
            grant_type="client_credentials",
            client_id=key,
            client_secret=secret,
        )
        self.token = auth["result"]["access_token"]

    def call(self, method: str, timeout: float = 30.0, **params: object) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if hasattr(self, "token") else {}
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        reply = requests.post(
            f"{self.url}/api/v2/{method}", json=body, headers=headers, timeout=timeout
        )
        return reply.json()


def test_queries_answer_orders_are_refused_and_cancels_wait_through_a_write_outage(
    nats_cluster, domain, tmp_path
) -> None:
    data, log = tmp_path / "venue", tmp_path / "node.log"
    leader = ServedNode(
        data, log, nats_cluster.urls, domain, "leader", "a", "--lease-ttl", "6"
    )  # (the later --lease-ttl wins over the helper's 2 s)
    nodes = [leader]
    try:
        url = leader.banner()
        key, secret = leader.credentials()
        # a read replica on a copy of the data directory (here: the same one)
        replica = ServedNode(
            data, tmp_path / "replica.log", nats_cluster.urls, domain, "replica", "r"
        )
        nodes.append(replica)
        trader = client(url, key, secret)
        resting = trader.create_order(PERPETUAL, "limit", "buy", 0.01, low_price(trader, 1))
        price = low_price(trader, 2)
        rpc = Rpc(url, key, secret)
        reader = Rpc(replica.banner(), key, secret)
        name = trader.market(PERPETUAL)["id"]
        deadline = time.monotonic() + 30
        while not _open_ids(reader, name) >= {resting["id"]}:  # the replica has caught up
            assert time.monotonic() < deadline
            time.sleep(0.1)
        while f"endpoint of {domain}:" not in (tmp_path / "replica.log").read_text():
            assert time.monotonic() < deadline  # the replica knows where to forward
            time.sleep(0.1)
        replies: dict[str, dict] = {}
        for node in nats_cluster.nodes:
            node.signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            # the cancel is queued at once: its frame waits for a PubAck from now on
            canceller = threading.Thread(
                target=lambda: replies.update(
                    cancel=rpc.call("private/cancel", order_id=resting["id"])
                )
            )
            canceller.start()
            time.sleep(1.0)  # past the outage threshold (0.5 s without a PubAck)
            asked = time.monotonic()
            page = requests.get(f"{url}/", timeout=5)
            answered = time.monotonic() - asked
            # the replica answers queries from what the stream holds
            asked = time.monotonic()
            read_open = _open_ids(reader, name)
            book = reader.call("public/get_order_book", instrument_name=name, timeout=5)
            read_in = time.monotonic() - asked
            # a command sent to the replica is forwarded to the leader (cluster/forward.py):
            # refused there as the leader's own, its reply held the same way
            forwarded = threading.Thread(
                target=lambda: replies.update(
                    via_replica=reader.call(
                        "private/buy",
                        instrument_name=name,
                        amount=0.01,
                        type="limit",
                        price=price,
                        label="in-outage-via-replica",
                    )
                )
            )
            forwarded.start()
            buyer = threading.Thread(
                target=lambda: replies.update(
                    buy=rpc.call(
                        "private/buy",
                        instrument_name=name,
                        amount=0.01,
                        type="limit",
                        price=price,
                        label="in-outage",
                    )
                )
            )
            buyer.start()
            time.sleep(1.0)
            held = dict(replies)  # nothing is answered before its frame (or the one
            still_paused = time.monotonic() - paused  # before it) has its PubAck
        finally:
            for node in nats_cluster.nodes:
                node.signal(signal.SIGCONT)
        print(f"write outage: a page served in {answered * 1000:.0f} ms while paused")
        print(f"write outage: the replica answered two queries in {read_in * 1000:.0f} ms")
        assert page.status_code == 200 and still_paused < 5  # (within the lease's TTL)
        assert resting["id"] in read_open and book["result"]["instrument_name"] == name
        assert held == {}
        buyer.join(30)
        canceller.join(30)
        forwarded.join(30)
        cancelled, refused = replies["cancel"], replies["buy"]
        for refusal in (refused, replies["via_replica"]):
            assert refusal["error"]["code"] == 10040, refusal
            assert refusal["error"]["data"] == {"reason": "write_outage"}
        assert cancelled.get("result", {}).get("order_state") == "cancelled", (
            cancelled.get("error"),
            _tail(log),
        )
        # writing resumed: the leader serves on
        # a client retries 10040: the stream may take a few seconds to elect after the
        # pause, and new risk is refused until the queued frames have their PubAcks
        deadline = time.monotonic() + 30
        while "error" in (
            placed := rpc.call(
                "private/buy", instrument_name=name, amount=0.01, type="limit", price=price
            )
        ):
            assert placed["error"]["code"] == 10040 and time.monotonic() < deadline, (
                placed,
                _tail(log),
            )
            time.sleep(0.2)
        order = trader.fetch_order(placed["result"]["order"]["order_id"], PERPETUAL)
        assert order["status"] == "open"
        open_orders = trader.fetch_open_orders(PERPETUAL)
        assert resting["id"] not in {o["id"] for o in open_orders}
        labels = {o["info"].get("label") for o in open_orders}
        assert not labels & {"in-outage", "in-outage-via-replica"}
        assert leader.process.poll() is None
        deadline = time.monotonic() + 30
        while resting["id"] in _open_ids(reader, name):  # the replica follows the cancel
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert replica.stop() == 0
        assert leader.stop() == 0
        stopped = re.search(
            r"stopped as leader at stream seq (\d+), seq (\d+), root (\w+)", log.read_text()
        )
        assert stopped, log.read_text()[-3000:]
        with JetStreamLog(nats_cluster.urls, domain) as stream:
            frames = list(stream.read(1))
        seq, root = replay_root(frames)
        assert (seq, root) == (int(stopped.group(2)), stopped.group(3))
    finally:
        for node in nodes:
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(10)


def _open_ids(rpc: Rpc, instrument: str) -> set[str]:
    reply = rpc.call("private/get_open_orders_by_instrument", instrument_name=instrument, timeout=5)
    return {order["order_id"] for order in reply["result"]}


def _tail(path) -> str:
    """The node's log without its tracebacks' bodies (for a failing assertion)."""
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith(" "))[-3000:]
