"""Helpers for the worker-mode tests (``test_workers_*.py``): a real ``derivex serve
--workers N`` on a free loopback port over a data directory prepared with funded accounts
and keys, WebSocket JSON-RPC clients that know which worker they reached, a crossing order
flow, and the engine's truth about every order from a replay of the journal."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from derivex.core.engine import Engine
from derivex.core.records import CommandKind, EventKind
from derivex.gateway.catalog import Catalog, InstrumentSpec
from tests.gateway.conftest import unique_nonce
from tests.gateway.rpc_client import RpcClient

DERIVEX = [sys.executable, "-m", "derivex.cli"]
START_TIMEOUT_S = 420  # a cold kernel cache compiles first
PERPETUAL = "BTC_USDC-PERPETUAL"
DEPOSIT_UNITS = 100_000_000 * 1_000_000  # 100M USDC


@dataclass
class Account:
    account: int
    client_id: str
    secret: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(data: Path, accounts: int) -> tuple[list[Account], Any]:
    """A venue in ``data`` (as ``derivex serve`` makes one, no agents) plus ``accounts``
    funded accounts with trading keys; returns them and the engine config."""
    from derivex.gateway.serve import open_venue

    opened = open_venue(data, demo=False)
    exchange = opened.venue.exchange
    made = []
    for _ in range(accounts):
        account = exchange.create_account()
        exchange.deposit(account, DEPOSIT_UNITS)
        key = opened.keys.create(account, ("read", "trade"), name=f"test{account}")
        made.append(Account(account, key.client_id, key.client_secret))
    config = exchange.engine.config
    assert exchange.journal is not None
    exchange.journal.close()
    return made, config


class Served:
    """``derivex serve --workers N --no-demo`` as a subprocess; ``url`` once the banner is
    printed, ``pids`` (role -> pid) from the supervisor's "runtime serving" record."""

    def __init__(
        self,
        data: Path,
        log: Path,
        workers: int = 2,
        submit_timeout_s: float = 10.0,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.data, self.log, self.port = data, log, free_port()
        self.offset = log.stat().st_size if log.exists() else 0
        self.process = subprocess.Popen(
            [
                *DERIVEX,
                "serve",
                "--workers",
                str(workers),
                "--no-demo",
                "--data-dir",
                str(data),
                "--port",
                str(self.port),
                "--submit-timeout",
                str(submit_timeout_s),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
        )
        assert self.process.stdout is not None
        text = ""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and "ccxt.deribit(" not in text:
            line = self.process.stdout.readline()
            if not line:
                break
            text += line
        found = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", text)
        assert found, f"no URL in {text!r}; log: {log.read_text()[-3000:]}"
        self.url = found.group(1)
        self.ws_url = self.url.replace("http://", "ws://") + "/ws/api/v2"
        # the banner promises a port that accepts: no retry here
        with urllib.request.urlopen(f"{self.url}/api/v2/public/test", timeout=30) as reply:
            assert reply.status == 200
        self.pids: dict[str, int] = self.record("runtime serving")["pids"]

    def records(self, message: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text()[self.offset :].splitlines():
            if f'"{message}"' in line:
                out.append(json.loads(line))
        return out

    def record(self, message: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records(message):
                if all(record.get(k) == v for k, v in match.items()):
                    return record
            time.sleep(0.1)
        raise AssertionError(f"no {message!r} {match} in {self.log.read_text()[-3000:]}")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=180)
        return self.process.returncode, out


class Client:
    """One WebSocket connection speaking JSON-RPC; ``worker``: the worker that accepted it
    (the ``X-Derivex-Worker`` header of the upgrade, ``index.generation``)."""

    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, worker: str
    ) -> None:
        self.ws, self.worker, self.session = ws, worker, session
        self.closed = False
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str) -> Client:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=0)
        # aiohttp keeps the upgrade response (headers) on the socket object only
        worker = ws._response.headers.get("X-Derivex-Worker", "?")
        return cls(session, ws, worker)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                reply = json.loads(message.data)
                waiter = self._waiting.pop(reply.get("id"), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        finally:  # the connection is gone (a killed worker): nobody waits forever
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))
            self._waiting.clear()
            self.closed = True

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The whole reply (``result`` or ``error``)."""
        if self.closed:
            raise ConnectionError("connection closed")
        request_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        await self.ws.send_str(
            json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            )
        )
        reply = await asyncio.wait_for(waiter, timeout)
        assert reply["id"] == request_id
        return reply

    async def auth(self, account: Account) -> None:
        reply = await self.call(
            "public/auth",
            {
                "grant_type": "client_credentials",
                "client_id": account.client_id,
                "client_secret": account.secret,
            },
        )
        assert "result" in reply, reply

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self.session.close()


async def connections_on_every_worker(
    url: str, account: Account, workers: int, attempts: int = 60
) -> list[Client]:
    """One authenticated connection per worker for ``account`` (the kernel picks the
    worker: connect until each has one; extra connections are closed)."""
    found: dict[str, Client] = {}
    for _ in range(attempts):
        client = await Client.connect(url)
        index = client.worker.split(".")[0]
        if index in found:
            await client.close()
            continue
        await client.auth(account)
        found[index] = client
        if len(found) == workers:
            return [found[str(w)] for w in range(workers)]
    raise AssertionError(f"connections reached only workers {sorted(found)}")


@dataclass
class Ack:
    client: Client
    account: int
    order_id: str
    state: str
    filled: float
    label: str = ""


@dataclass
class Flow:
    acks: list[Ack] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    disconnected: int = 0  # requests whose connection went away (no answer, no ack)
    seconds: float = 0.0  # how long the flow took (printed, never asserted)


async def crossing_flow(
    client: Client,
    account: int,
    spec: InstrumentSpec,
    mid: float,
    orders: int,
    seed: int,
    flow: Flow,
    in_flight: int = 16,
) -> None:
    """``orders`` limit orders from one connection, buys and sells within a few ticks of
    ``mid`` (they cross each other's and other connections' orders), ``in_flight`` at a
    time. Acknowledgements go to ``flow.acks``, error replies to ``flow.errors``."""
    rng = random.Random(seed)
    tick = float(spec.tick_size_ticks * spec.price_unit)
    base = round(mid / tick) * tick
    step = spec.amount(spec.min_trade_lots)

    async def one(k: int) -> None:
        side = "buy" if rng.random() < 0.5 else "sell"
        # buys a little above the mid, sells a little below: most cross something
        offset = rng.randint(-2, 4) * (1 if side == "buy" else -1)
        price = round(base + offset * tick, spec.price_decimals)
        label = f"a{account}s{seed}n{k}"
        try:
            reply = await client.call(
                f"private/{side}",
                {
                    "instrument_name": spec.name,
                    "amount": round(step * rng.randint(1, 5), 10),
                    "type": "limit",
                    "price": price,
                    "label": label,
                },
            )
        except (ConnectionError, aiohttp.ClientError):
            flow.disconnected += 1
            return
        if "result" in reply:
            order = reply["result"]["order"]
            assert order["label"] == label, (order, label)  # never another request's reply
            flow.acks.append(
                Ack(
                    client,
                    account,
                    order["order_id"],
                    order["order_state"],
                    order["filled_amount"],
                    label,
                )
            )
        else:
            flow.errors.append(reply["error"])

    pending: set[asyncio.Task[None]] = set()
    for k in range(orders):
        if client.closed:
            break
        if len(pending) >= in_flight:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.ensure_future(one(k)))
    if pending:
        await asyncio.gather(*pending)


def journal_truth(data: Path, config: Any) -> dict[int, tuple[str, int]]:
    """Replay the whole journal in a fresh engine and walk its events: order id ->
    (state, filled lots) for every order placed. Independent of the gateway's walk."""
    from derivex.journal import JournalReader

    engine = Engine(config)
    truth: dict[int, list[Any]] = {}
    accepted, filled = int(EventKind.ACCEPTED), int(EventKind.FILLED)
    closed = (int(EventKind.CANCELLED), int(EventKind.EXPIRED))
    place = int(CommandKind.PLACE_ORDER)
    for batch in JournalReader(data / "journal", 1):
        events = engine.process_into(batch.commands)
        for _, word, _, order_id, _, qty, _, remaining in (
            events.view("<i8").reshape(-1, 8).tolist()
        ):
            kind = word & 0xFF
            if kind == accepted and (word >> 8) & 0xFF == place:
                truth[order_id] = ["open", 0]
            elif kind == filled and order_id in truth:
                truth[order_id][1] += qty
                if remaining == 0:
                    truth[order_id][0] = "filled"
            elif kind in closed and order_id in truth:
                truth[order_id][0] = "cancelled"
    return {order_id: (state, lots) for order_id, (state, lots) in truth.items()}


def perpetual_spec(data: Path) -> InstrumentSpec:
    catalog = Catalog.load(data / "instruments.json")
    return next(spec for spec in catalog if spec.name == PERPETUAL)


def engine_order_id(order_id: str) -> int:
    """Deribit order ids are the engine's, as text."""
    return int(order_id.rsplit("-", 1)[-1])


class PerpetualVenue:
    """A ``--workers N`` venue with ``accounts`` funded accounts, and its BTC perpetual's
    spec, tick and lot (the module fixture of the worker-mode API tests)."""

    def __init__(self, root: Path, accounts: int, workers: int = 2) -> None:
        self.data, self.log = root / "venue", root / "serve.log"
        self.accounts, _ = prepare(self.data, accounts)
        self.served = Served(self.data, self.log, workers)
        self.spec = perpetual_spec(self.data)
        self.tick = float(self.spec.tick_size_ticks * self.spec.price_unit)
        self.lot = self.spec.amount(self.spec.min_trade_lots)


def ccxt_config(served: Served, account: Account | None = None, **extra: Any) -> dict[str, Any]:
    """A ccxt ``deribit`` configuration for ``served`` (REST and WebSocket URLs, no rate
    limit, unique nonces), with ``account``'s key and ``extra`` options."""
    config: dict[str, Any] = {
        "urls": {"api": {"rest": served.url, "ws": served.ws_url}},
        "enableRateLimit": False,
        "timeout": 20_000,
        "nonce": unique_nonce,
        **extra,
    }
    if account is not None:
        config.update(apiKey=account.client_id, secret=account.secret)
    return config


async def connect_on_worker(ws_url: str, worker: int, client_id: str, secret: str) -> RpcClient:
    """An authenticated connection that the kernel gave to ``worker`` (connections are
    placed by the kernel: connect until one lands there, 80 tries at most)."""
    for _ in range(80):
        client = await RpcClient.connect(ws_url)
        if client.worker.split(".")[0] == str(worker):
            await client.auth(client_id, secret)
            return client
        await client.close()
    raise AssertionError(f"no connection reached worker {worker}")
