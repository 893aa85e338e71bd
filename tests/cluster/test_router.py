"""One venue, two risk domains, one API: ``derivex cluster up --domain btc_usdc --domain
eth_usdc`` on a real 3-node NATS cluster, a ccxt client on the router it starts.

- the client trades on both domains with one key and reads one account with per-domain
  balances; a transfer between the domains goes through the router;
- a forged request to a leader's inbox is refused and counted;
- a read replica forwards a command to its leader;
- the BTC leader dies after its order's PubAck and before its reply (fault injection,
  ``DERIVEX_FAULT_EXIT_AFTER_ACK``): the router answers 13888, the client asks for the
  label and finds the order exactly once; during the takeover BTC orders get the retryable
  10040 while ETH orders go on; afterwards every acknowledged order is there.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import ccxt
import nats
import pytest

from derivex.cluster.routing import domain_order_id, venue_order_id
from derivex.core.records import CommandKind, command_array
from tests.cluster.test_serve_cluster import ServedNode
from tests.gateway.conftest import unique_nonce

pytestmark = pytest.mark.integration

DOMAINS = ("btc_usdc", "eth_usdc")
BTC, ETH = "BTC/USDC:USDC", "ETH/USDC:USDC"
LOST = "lost-reply-1"  # the label whose order the BTC leader dies on


@dataclass
class Venue:
    process: subprocess.Popen[str]
    directory: Path
    lines: list[str] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # order id -> symbol

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 240.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(pattern, self.text())
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} ({self.process.poll()}):\n{self.text()[-4000:]}")

    @property
    def router(self) -> str:
        return self.wait_for(r"\[router\] router: (http://127\.0\.0\.1:\d+)").group(1)

    @property
    def nats_urls(self) -> list[str]:
        return self.wait_for(r"nats cluster: (\S+)").group(1).split(",")

    def credentials(self) -> tuple[str, str]:
        key = self.wait_for(r"client_id\s+(\S+)").group(1)
        return key, self.wait_for(r"client_secret\s+(\S+)").group(1)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    directory = tmp_path_factory.mktemp("venue") / "cluster"
    command = [
        sys.executable, "-m", "derivex.cli", "cluster", "up", "--directory", str(directory),
        "--domain", DOMAINS[0], "--domain", DOMAINS[1], "--lifetime", "500",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "DERIVEX_FAULT_EXIT_AFTER_ACK": LOST},
    )
    started = Venue(process, directory)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            started.lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        for domain in DOMAINS:  # both leaders serve
            started.wait_for(rf"\[{domain}-1\] +REST +http://")
        yield started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def trader(url: str, key: str, secret: str) -> ccxt.deribit:
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


def signed(url: str, key: str, secret: str, method: str, params: dict[str, Any]) -> Any:
    """A ``deri-hmac-sha256`` signed GET (as ccxt signs), for the methods ccxt lacks: the
    JSON reply, error or not."""
    target = f"/api/v2/{method}?{urllib.parse.urlencode(params)}"
    ts, nonce = str(time.time_ns() // 1_000_000), secrets.token_hex(8)
    message = f"{ts}\n{nonce}\nGET\n{target}\n\n".encode()
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    header = f"deri-hmac-sha256 id={key},ts={ts},sig={signature},nonce={nonce}"
    request = urllib.request.Request(url + target, headers={"Authorization": header})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def place(client: ccxt.deribit, *args: Any) -> dict[str, Any]:
    """``client.create_order(*args)``, sent again after a 10040: a leader refuses new
    orders while a PubAck is late (``write_outage``, common at load 7 with fsync always),
    as clients are told to (docs/cluster.md)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return client.create_order(*args)
        except ccxt.ExchangeNotAvailable as error:
            assert "10040" in str(error) and time.monotonic() < deadline, error
            time.sleep(0.3)


def until_accepted(call: Any) -> Any:
    """``call()`` (a JSON-RPC reply) again while it answers 10040 (as ``place``)."""
    deadline = time.monotonic() + 60
    while (reply := call()).get("error", {}).get("code") == 10040:
        assert time.monotonic() < deadline, reply
        time.sleep(0.3)
    return reply


def post(url: str, method: str, params: dict[str, Any], path: str = "/api/v2") -> Any:
    """A JSON-RPC request over ``POST /api/v2`` (or ``path``): the JSON reply, error or
    not."""
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        url + path, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


class SocketClient:
    """A WebSocket JSON-RPC client on a thread of its own (aiohttp): ``call`` waits for the
    reply; every notification lands in ``notifications``."""

    def __init__(self, url: str) -> None:
        import aiohttp

        self.notifications: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ids = iter(range(1, 10**9))
        self._pending: dict[int, asyncio.Future[Any]] = {}

        async def connect() -> Any:
            self._session = aiohttp.ClientSession()
            socket = await self._session.ws_connect(url.replace("http", "ws") + "/ws/api/v2")
            self._reader = asyncio.ensure_future(self._read(socket))
            return socket

        self._socket = asyncio.run_coroutine_threadsafe(connect(), self._loop).result(30)

    async def _read(self, socket: Any) -> None:
        async for message in socket:
            data = json.loads(message.data)
            if data.get("method") == "subscription":
                self.notifications.append(data["params"])
            elif data.get("id") in self._pending:
                self._pending.pop(data["id"]).set_result(data)

    def call(self, method: str, params: dict[str, Any], timeout: float = 60.0) -> Any:
        number = next(self._ids)

        async def send() -> Any:
            waiting = self._loop.create_future()
            self._pending[number] = waiting
            await self._socket.send_str(json.dumps(
                {"jsonrpc": "2.0", "id": number, "method": method, "params": params}))  # fmt: skip
            return await asyncio.wait_for(waiting, timeout)

        return asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout + 5)

    def orders_seen(self) -> dict[str, str]:
        """order id -> label of every order notification so far."""
        return {
            item["order_id"]: item.get("label", "")
            for note in list(self.notifications)
            if note["channel"].startswith("user.orders.")
            for item in (note["data"] if isinstance(note["data"], list) else [note["data"]])
        }

    def close(self) -> None:
        async def close() -> None:
            await self._socket.close()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def low_price(exchange: ccxt.deribit, symbol: str) -> float:
    """A buy price just over the band's floor: it rests, never fills."""
    deadline = time.monotonic() + 120
    while not (floor := exchange.fetch_ticker(symbol)["info"]["min_price"]):
        assert time.monotonic() < deadline, f"no price band on {symbol}: no mark yet"
        time.sleep(0.3)
    return float(exchange.price_to_precision(symbol, floor * 1.03))


def balances(url: str, key: str, secret: str) -> dict[str, float]:
    reply = signed(url, key, secret, "private/get_account_summary", {"currency": "USDC"})
    summary = reply["result"]
    by_domain = {name: each["balance"] for name, each in summary["domains"].items()}
    assert summary["balance"] == pytest.approx(sum(by_domain.values()))
    return by_domain


def test_one_key_trades_on_both_domains_and_moves_collateral(venue: Venue) -> None:
    key, secret = venue.credentials()
    url = venue.router
    client = trader(url, key, secret)
    sizes = {BTC: 0.01, ETH: 0.1}
    for index, symbol in enumerate((BTC, ETH)):
        order = place(
            client, symbol, "limit", "buy", sizes[symbol], low_price(client, symbol),
            {"label": "both"},
        )  # fmt: skip
        assert order["status"] == "open"
        assert domain_order_id(order["id"])[0] == index  # the id names its domain
        venue.acknowledged[order["id"]] = symbol
        assert order["id"] in {o["id"] for o in client.fetch_open_orders(symbol)}
    # one account, a balance per domain (account-wide requests reach every domain)
    balance = client.fetch_balance({"code": "USDC"})
    domains = balance["info"]["domains"]
    assert set(domains) == set(DOMAINS)
    assert balance["info"]["balance"] == pytest.approx(sum(d["balance"] for d in domains.values()))
    both = signed(url, key, secret, "private/get_order_state_by_label",
                  {"currency": "USDC", "label": "both"})  # fmt: skip
    assert {o["order_id"] for o in both["result"]} == set(venue.acknowledged)

    before = balances(url, key, secret)
    moved = until_accepted(lambda: signed(url, key, secret, "private/submit_transfer_to_domain",
                                          {"domain": "eth_usdc", "amount": 250}))  # fmt: skip
    assert moved["result"]["source"] == "btc_usdc" and moved["result"]["amount"] == 250
    deadline = time.monotonic() + 90
    while (after := balances(url, key, secret))["eth_usdc"] != before["eth_usdc"] + 250:
        assert time.monotonic() < deadline, f"not credited: {before} -> {after}"
        time.sleep(0.5)
    assert after["btc_usdc"] == before["btc_usdc"] - 250
    # a request the router cannot place is refused clearly, never 11094
    bad = signed(url, key, secret, "private/cancel", {"order_id": "123456789"})
    assert bad["error"]["code"] == 10004
    refused = signed(url, key, "wrong-secret", "private/get_positions", {"currency": "USDC"})
    assert refused["error"]["code"] == 13009
    # the router's own tokens: public/auth, then JSON-RPC over POST with the token
    grant = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
    token = post(url, "public/auth", grant)["result"]["access_token"]
    positions = post(url, "private/get_positions", {"currency": "USDC", "access_token": token})
    assert isinstance(positions["result"], list)
    assert post(url, "private/get_positions", {"access_token": "forged"})["error"]["code"] == 13009
    by_path = post(url, "", {"currency": "USDC", "access_token": token},
                   "/api/v2/private/get_account_summary")  # fmt: skip
    assert set(by_path["result"]["domains"]) == set(DOMAINS)


def test_a_forged_inbox_request_is_refused_and_counted(venue: Venue) -> None:
    key, secret = venue.credentials()
    before = balances(venue.router, key, secret)
    forged = command_array(1)
    forged["kind"] = CommandKind.TRANSFER_IN
    forged["account"] = 3
    forged["amount_units"] = 10**12
    forged["domain"] = 0
    forged["transfer_id"] = 999

    async def publish() -> list[bytes]:
        nc = await nats.connect(servers=venue.nats_urls)
        try:
            answers = []
            for headers in (None, {"Dx-Inbox-Sig": "00" * 32}):
                reply = await nc.request(
                    "dx.eth_usdc.inbox", forged.tobytes(), timeout=10, headers=headers
                )
                answers.append(reply.data)
            return answers
        finally:
            await nc.close()

    assert asyncio.run(publish()) == [b"error unauthenticated"] * 2
    log = (venue.directory / "eth_usdc-1.log").read_text()
    assert "inbox of eth_usdc: 1 unauthenticated requests refused" in log
    assert balances(venue.router, key, secret)["eth_usdc"] == before["eth_usdc"]


def test_a_read_replica_forwards_commands_to_the_leader(venue: Venue) -> None:
    key, secret = venue.credentials()
    node = ServedNode(
        venue.directory / "eth_usdc", venue.directory / "replica.log", venue.nats_urls,
        "eth_usdc", "replica", "eth_usdc-r",
    )  # fmt: skip
    try:
        url = node.banner()
        client = trader(url, key, secret)  # the replica's own URL, the venue's key
        order = place(client, ETH, "limit", "buy", 0.1, low_price(client, ETH),
                                    {"label": "via-replica"})  # fmt: skip
        assert order["status"] == "open"
        # the leader has it (through the router: the venue's id of a domain-1 order)
        found = signed(venue.router, key, secret, "private/get_order_state_by_label",
                       {"currency": "USDC", "label": "via-replica"})  # fmt: skip
        assert [domain_order_id(o["order_id"]) for o in found["result"]] == [(1, int(order["id"]))]
        venue.acknowledged[found["result"][0]["order_id"]] = ETH
        # the replica's own tokens, as a header and as a parameter: checked there, the
        # command re-signed for the leader (which does not know them)
        grant = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
        token = post(url, "public/auth", grant)["result"]["access_token"]
        order = {"instrument_name": "ETH_USDC-PERPETUAL", "amount": 0.1, "type": "limit",
                 "price": low_price(client, ETH)}  # fmt: skip
        for label, extra in (("bearer-header", {}), ("token-param", {"access_token": token})):
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "private/buy",
                               "params": {**order, "label": label, **extra}}).encode()  # fmt: skip
            headers = {"Content-Type": "application/json"}
            if not extra:
                headers["Authorization"] = f"Bearer {token}"
            request = urllib.request.Request(url + "/api/v2/private/buy", body, headers)
            with urllib.request.urlopen(request, timeout=60) as reply:
                placed = json.loads(reply.read())["result"]["order"]
            assert placed["label"] == label
            venue.acknowledged[venue_order_id(int(placed["order_id"]), 1)] = ETH
        forged = post(url, "private/buy", {**order, "access_token": "forged"},
                      "/api/v2/private/buy")  # fmt: skip
        assert forged["error"]["code"] == 13009
    finally:
        node.stop()


def test_the_router_websocket_trades_and_merges_subscriptions(venue: Venue) -> None:
    key, secret = venue.credentials()
    client = trader(venue.router, key, secret)
    prices = {BTC: low_price(client, BTC), ETH: low_price(client, ETH)}
    socket = SocketClient(venue.router)
    try:
        grant = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
        assert "access_token" in socket.call("public/auth", grant)["result"]
        channels = ["user.orders.any.any.raw", "book.ETH_USDC-PERPETUAL.100ms"]
        assert sorted(socket.call("private/subscribe", {"channels": channels})["result"]) == sorted(
            channels
        )
        placed = {}
        for symbol, amount in ((BTC, 0.01), (ETH, 0.1)):
            name = client.market(symbol)["id"]
            order = {
                "instrument_name": name,
                "amount": amount,
                "price": prices[symbol],
                "label": "ws",
            }
            reply = until_accepted(partial(socket.call, "private/buy", order))
            order_id = reply["result"]["order"]["order_id"]
            placed[order_id] = symbol
        assert sorted(domain_order_id(i)[0] for i in placed) == [0, 1]
        venue.acknowledged.update(placed)
        deadline = time.monotonic() + 30
        while not set(placed) <= set(socket.orders_seen()):  # both domains' notifications
            assert time.monotonic() < deadline, socket.orders_seen()
            time.sleep(0.1)
        assert any(n["channel"] == "book.ETH_USDC-PERPETUAL.100ms" for n in socket.notifications)
        summary = socket.call("private/get_account_summary", {"currency": "USDC"})["result"]
        assert set(summary["domains"]) == set(DOMAINS)
        bad = socket.call("private/cancel", {"order_id": "5"})
        assert bad["error"]["code"] == 10004
    finally:
        socket.close()


def test_a_lost_reply_is_settled_by_label_and_clients_resume(venue: Venue) -> None:
    key, secret = venue.credentials()
    url = venue.router
    client = trader(url, key, secret)
    price = low_price(client, BTC)
    # a WebSocket client subscribed to its orders across the takeover
    socket = SocketClient(url)
    grant = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
    socket.call("public/auth", grant)
    socket.call("private/subscribe", {"channels": ["user.orders.any.any.raw"]})
    deadline = time.monotonic() + 60
    while True:  # the leader dies before it answers (after a write_outage: not sequenced)
        with pytest.raises(ccxt.BaseError) as lost:
            client.create_order(BTC, "limit", "buy", 0.01, price, {"label": LOST})
        if "write_outage" not in str(lost.value) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "13888" in str(lost.value)
    # the outage: BTC orders are refused with the retryable 10040, ETH orders go on
    retryable, eth_during = 0, 0
    eth_price = low_price(client, ETH)
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "the BTC domain did not come back"
        try:
            order = client.create_order(BTC, "limit", "buy", 0.01, price, {"label": "after"})
        except ccxt.BaseError as error:
            assert "10040" in str(error), error  # never 11094, never a silent loss
            retryable += 1
            if not eth_during:
                eth = place(client, ETH, "limit", "buy", 0.1, eth_price)
                venue.acknowledged[eth["id"]] = ETH
                eth_during += 1
            time.sleep(0.3)
            continue
        venue.acknowledged[order["id"]] = BTC
        break
    assert retryable > 0 and eth_during == 1
    # what the client does after 13888: ask for the label; exactly one order, so no resend
    found = signed(url, key, secret, "private/get_order_state_by_label",
                   {"currency": "USDC", "label": LOST})  # fmt: skip
    assert [o["order_state"] for o in found["result"]] == ["open"]
    assert domain_order_id(found["result"][0]["order_id"])[0] == 0
    # every order the router acknowledged is open on the domains' leaders now
    open_now = {o["id"] for symbol in (BTC, ETH) for o in client.fetch_open_orders(symbol)}
    assert set(venue.acknowledged) <= open_now
    assert "exited with code 137" in venue.text()  # the fault did kill the leader
    # the WebSocket client's subscription followed the BTC domain to its new leader
    try:
        deadline = time.monotonic() + 60
        while True:
            later = place(client, BTC, "limit", "buy", 0.01, price, {"label": "later"})
            venue.acknowledged[later["id"]] = BTC
            if later["id"] in socket.orders_seen():
                break
            assert time.monotonic() < deadline, "no notification from the new BTC leader"
            time.sleep(1.0)
    finally:
        socket.close()
