"""Overload benchmark (issue 12, finding 9): ``derivex serve`` (single process and
``--workers 2``) under 1x, 3x and 10x its sustainable order rate over WebSocket, and other
clients' latency while one client never reads.

    python bench/overload_bench.py [--seconds 3] [--modes single,workers2] [--factors 1,3,10]
        [--flooders 6] [--quick]

Per mode, one server (``derivex serve --no-demo``, default engine configuration and
journal, default ``Limits`` except the connections per address, all clients being on
loopback) on a fresh data directory with funded accounts, and in order:

1. **unloaded**: one canceller client alone: it places 4000 resting orders far from the
   market, then cancels them one at a time (closed loop, 1 ms apart); the cancel round
   trips are the baseline;
2. **sustainable**: ``--flooders`` clients, closed loop, 16 orders in flight each (below
   the shedding watermark): the accepted orders/s are the sustainable rate S;
3. **1x / 3x / 10x**: the flooders open loop, paced every 2 ms at factor x S in total
   (half taking: immediate-or-cancel buys through the best ask; half passive: limit buys 2%
   below the index; a ``cancel_all`` every 100 orders), with the canceller running as in
   1. A flooder whose socket buffer holds more than 256 KiB skips its turn (its kernel send
   buffer is 64 KiB, as on a real network path, not the megabytes loopback allows; the offered
   rate it reached is reported). Reported: orders/s offered, sent and accepted, shed
   counts by class (10047 taking, 10040 passive), other errors by code, p50/p99 of
   accepted orders, of the flooders' cancel-alls and of the canceller's cancels, and the
   server's RSS (all its processes);
4. **slow reader**: 4 clients, closed loop, 8 orders in flight, with and without one
   client that pipelines 3000 ``get_order_book`` (depth 10000) requests on a deep book
   and never reads: the others' p50/p99, and how the slow one ended.

Latencies are client round trips (perf_counter), replies matched by order per connection.
The load generator is this process (one uvloop loop), sharing the machine's CPUs with the
server; once the server is up it runs at niceness ``--nice`` (10), standing for clients on
other machines rather than a rival for the server's cores (the canceller and the server keep
0, which needs root to restore; the niceness reached is recorded). The load average at
start and end is recorded. Bounded: each phase runs
``--seconds`` and at most 20 s of draining. Writes bench/results/overload.json. Never part
of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)

INSTRUMENT = "BTC_USDC-PERPETUAL"
# the niceness this script started at: the server and the canceller run at it, the load
# generator ``--nice`` above it (started under ``nice -n -10`` on a shared machine, the
# whole benchmark stands ahead of other work there)
BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0)
BUFFER_CAP = 256 << 10
SEND_BUFFER = 64 << 10  # each client's kernel send buffer (SO_SNDBUF)


# ---- the server ----


def prepare(data: Path, accounts: int) -> list[dict[str, Any]]:
    """A fresh served venue in ``data`` with ``accounts`` funded accounts and their keys."""
    from derivex.gateway import serve as serving

    opened = serving.open_venue(data, demo=False)
    exchange = opened.venue.exchange
    keys = []
    for _ in range(accounts):
        account = exchange.create_account()
        exchange.deposit(account, 10**16)
        key = opened.keys.create(account)
        keys.append({"client_id": key.client_id, "client_secret": key.client_secret})
    serving.take_snapshot(exchange)
    assert exchange.journal is not None
    exchange.journal.close()
    return keys


def start_server(
    data: Path,
    workers: int,
    limits: tuple[str, ...] = (),
    fsync: str = "group",
    worker_nice: int = 0,
) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "derivex.cli",
        "serve",
        "--data-dir",
        str(data),
        "--port",
        str(port),
        "--no-demo",
        "--log-level",
        "warning",
        "--limit",
        "max_connections_per_address=1000",
    ]
    for item in limits:
        command += ["--limit", item]
    command += ["--fsync", fsync]
    if workers:
        command += ["--workers", str(workers)]
        if worker_nice:
            command += ["--worker-nice", str(worker_nice)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{url}/api/v2/public/ticker?instrument_name={INSTRUMENT}", timeout=5
            ) as response:
                ticker = json.loads(response.read())["result"]
            if ticker["index_price"]:
                return process, url
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError("derivex serve exited")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("derivex serve did not come up")


def ticker(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(
        f"{url}/api/v2/public/ticker?instrument_name={INSTRUMENT}", timeout=10
    ) as response:
        return json.loads(response.read())["result"]  # type: ignore[no-any-return]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, MiB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(
                next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return round(total / 1024, 1)


# ---- clients ----


def masked(payload: bytes) -> bytes:
    """A client text frame with the all-zero mask (RFC 6455: the mask bit and a key are
    required; a zero key leaves the payload as it is)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, 0x80 | size)) + b"\0\0\0\0" + payload
    return bytes((0x81, 0xFE)) + size.to_bytes(2, "big") + b"\0\0\0\0" + payload


def template(method: str, **params: Any) -> bytes:
    """A request frame's payload with ``%d`` for its id."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": 999_999_999, "method": method, "params": params}
    ).replace(b"999999999", b"%d")


class Stats:
    """Round trips by kind and reply codes, for one phase."""

    def __init__(self) -> None:
        self.rtt: dict[str, list[float]] = collections.defaultdict(list)
        self.codes: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()
        self.worker = ""  # the worker that served the connection (``--workers N``)

    def summary(self, seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": dict(self.sent), "replies": dict(self.codes)}
        if self.worker:
            out["worker"] = self.worker
        for kind, samples in sorted(self.rtt.items()):
            samples.sort()
            out[f"{kind}_ms"] = (
                {
                    "n": len(samples),
                    "p50": round(samples[len(samples) // 2] * 1e3, 2),
                    "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3, 2),
                }
                if samples
                else None
            )
        accepted = self.codes.get("order:ok", 0)
        out["accepted_orders_per_s"] = round(accepted / seconds)
        return out


class Client(asyncio.Protocol):
    """A raw WebSocket client: frames out with their send times in a FIFO per connection,
    replies in (answered in order per connection) matched to them."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.pending: collections.deque[tuple[str, float]] = collections.deque()
        self.on_reply: Any = None  # called with the kind after each reply
        self.k = 0
        self.closed: str = ""
        self.worker = ""  # X-Derivex-Worker of the upgrade reply ("" in single process)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, frames: list[tuple[str, bytes]]) -> None:
        now = time.perf_counter()
        parts = []
        for kind, payload in frames:
            self.k += 1
            parts.append(masked(payload % self.k if b"%d" in payload else payload))
            self.pending.append((kind, now))
            self.stats.sent[kind] += 1
        assert self.transport is not None
        self.transport.write(b"".join(parts))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(bytes(self.buffer[:200]))
            # ``--workers N``: which worker process the kernel gave this connection
            worker = WORKER_HEADER.search(bytes(self.buffer[:end]))
            self.worker = worker.group(1).decode() if worker else ""
            del self.buffer[: end + 4]
            self.upgraded.set_result(None)
        buffer, at, now = self.buffer, 0, time.perf_counter()
        while len(buffer) - at >= 2:
            size, head = buffer[at + 1] & 0x7F, 2
            if size == 126:
                if len(buffer) - at < 4:
                    break
                size, head = int.from_bytes(buffer[at + 2 : at + 4], "big"), 4
            elif size == 127:
                if len(buffer) - at < 10:
                    break
                size, head = int.from_bytes(buffer[at + 2 : at + 10], "big"), 10
            if len(buffer) - at < head + size:
                break
            opcode = buffer[at] & 0x0F
            if opcode == 0x8:
                self.closed = bytes(buffer[at + head + 2 : at + head + size]).decode()
            elif opcode == 0x1 and self.pending:
                payload = bytes(buffer[at + head : at + head + min(size, 400)])
                kind, sent = self.pending.popleft()
                error = payload.find(b'"code":')
                code = (
                    "ok" if error < 0 else payload[error + 7 : payload.find(b",", error)].decode()
                )
                group = "order" if kind in ("taking", "passive") else kind
                self.stats.codes[f"{group}:{code}"] += 1
                if code == "ok":
                    self.stats.rtt[group].append(now - sent)
                if self.on_reply is not None:
                    self.on_reply(kind, payload)
            at += head + size
        del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.closed or "lost"


async def connect(url: str, stats: Stats, key: dict[str, Any] | None) -> Client:
    loop = asyncio.get_running_loop()
    host, port = url.removeprefix("http://").split(":")
    _, client = await loop.create_connection(lambda: Client(stats), host, int(port))
    assert client.transport is not None
    # a client's own kernel send buffer, as on a real network path: on loopback Linux grows
    # it to megabytes, where an open-loop flooder's orders would wait seconds unseen by
    # the server (the flooder skips its turn once this and its 256 KiB buffer are full)
    sock = client.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    client.transport.write(
        (
            f"GET /ws/api/v2 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await client.upgraded
    if key is not None:
        done = next_reply(client, loop)
        client.send([("auth", template("public/auth", grant_type="client_credentials", **key))])
        await asyncio.wait_for(done, 30)
        client.on_reply = None
    return client


async def drain(clients: list[Client], limit_s: float = 20.0) -> None:
    deadline = time.perf_counter() + limit_s
    while any(c.pending and not c.closed for c in clients) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)


class Orders:
    """Order frames around the current market: taking (IOC through the ask) and passive
    (2% below the index), and the canceller's far resting order."""

    def __init__(self, market: dict[str, Any]) -> None:
        index = float(market["index_price"])

        def price(value: float) -> float:
            return round(value * 2) / 2  # the perpetual's tick: 0.5

        self.taking = template(
            "private/buy",
            instrument_name=INSTRUMENT,
            amount=0.001,
            type="limit",
            price=price(index * 1.01),
            time_in_force="immediate_or_cancel",
        )
        self.passive = template(
            "private/buy",
            instrument_name=INSTRUMENT,
            amount=0.001,
            type="limit",
            price=price(index * 0.98),
        )
        self.far = template(
            "private/buy",
            instrument_name=INSTRUMENT,
            amount=0.001,
            type="limit",
            price=price(index * 0.97),
            label="far",
        )
        self.cancel_all = template("private/cancel_all")


def canceller_process(
    url: str, key: dict[str, Any], orders: Orders, seconds: float, results: Any, nice: int
) -> None:
    """``canceller`` in a process of its own (its round trips do not wait for the load
    generator's loop): puts "ready" on ``results`` once its orders rest, then its stats'
    summary."""
    import uvloop

    # back to the server's priority (the load generator that spawned it runs niced, and
    # this process, spawned from it, would take that as its base)
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    stats = Stats()
    uvloop.run(canceller(url, key, orders, stats, seconds, lambda: results.put("ready")))
    results.put({**stats.summary(seconds), "nice": os.getpriority(os.PRIO_PROCESS, 0)})


async def canceller(
    url: str, key: dict[str, Any], orders: Orders, stats: Stats, seconds: float, ready: Any
) -> None:
    """Place ``RESTING`` far resting orders (before any load), call ``ready``, then cancel
    them one at a time, closed loop, a millisecond apart, for ``seconds``: the cancel
    round trips. (Not place-then-cancel: under overload the new orders are shed.)"""
    client = await connect(url, Stats(), key)
    loop = asyncio.get_running_loop()
    ids: list[str] = []
    while len(ids) < RESTING:
        replies: list[bytes] = []
        finished: asyncio.Future[None] = loop.create_future()

        def collect(
            kind: str,
            payload: bytes,
            replies: list[bytes] = replies,
            finished: asyncio.Future[None] = finished,
        ) -> None:
            replies.append(payload)
            if len(replies) == 500 and not finished.done():
                finished.set_result(None)

        client.on_reply = collect
        client.send([("place", orders.far) for _ in range(500)])
        await asyncio.wait_for(finished, 60)
        ids += [m.group(1).decode() for m in map(ORDER_ID.search, replies) if m]
    client.stats = stats
    ready()
    stop_at = time.perf_counter() + seconds
    for order_id in ids:
        if time.perf_counter() >= stop_at or client.closed:
            break
        client.send([("cancel", template("private/cancel", order_id=order_id))])
        await asyncio.wait_for(next_reply(client, loop), 30)
        await asyncio.sleep(0.001)
    stats.worker = client.worker
    client.stats = Stats()
    client.send([("cancel_all", orders.cancel_all)])
    await asyncio.wait_for(next_reply(client, loop), 30)
    assert client.transport is not None
    client.transport.close()


RESTING = 4000
WORKER_HEADER = re.compile(rb"(?i)\r\nX-Derivex-Worker: *([0-9.]+)")


def next_reply(client: Client, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bytes]:
    """A future of the client's next reply payload (its first 400 bytes)."""
    future: asyncio.Future[bytes] = loop.create_future()

    def received(kind: str, payload: bytes) -> None:
        if not future.done():
            future.set_result(payload)

    client.on_reply = received
    return future


ORDER_ID = re.compile(rb'"order_id":"(\d+)"')


async def closed_loop(clients: list[Client], frames: Any, depth: int, stop_at: float) -> None:
    for client in clients:

        def refill(kind: str, payload: bytes, client: Client = client) -> None:
            if time.perf_counter() < stop_at:
                client.send([frames()])

        client.on_reply = refill
        client.send([frames() for _ in range(depth)])
    await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
    await drain(clients)
    for client in clients:
        client.on_reply = None


async def open_loop(
    clients: list[Client], frames: Any, rate: float, until: asyncio.Future[Any]
) -> tuple[float, float]:
    """Send at ``rate`` orders/s in total, every 2 ms (a client whose socket buffer holds
    more than ``BUFFER_CAP`` skips its turn), until ``until`` is done; returns the rate
    actually sent and the seconds until every reply came back."""
    per_client = rate / len(clients)
    start = time.perf_counter()
    due = [0] * len(clients)  # orders due to each client so far (sent or skipped)
    sent = 0
    while not until.done():
        now = time.perf_counter()
        for k, client in enumerate(clients):
            count = int(per_client * (now - start)) - due[k]
            if count <= 0 or client.closed or client.transport is None:
                continue
            due[k] += count
            if client.transport.get_write_buffer_size() > BUFFER_CAP:
                client.stats.sent["skipped"] += count
                continue
            client.send([frames() for _ in range(count)])
            sent += count
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - start
    await drain(clients)  # served orders/s: over the sending and the draining
    return sent / elapsed, time.perf_counter() - start


def flood_frames(orders: Orders) -> Any:
    counter = [0]

    def frames() -> tuple[str, bytes]:
        counter[0] += 1
        k = counter[0]
        if k % 100 == 0:
            return "cancel_all", orders.cancel_all
        return ("taking", orders.taking) if k & 1 else ("passive", orders.passive)

    return frames


async def run_mode(
    url: str,
    pid: int,
    keys: list[dict[str, Any]],
    seconds: float,
    factors: list[float],
    flooders: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {"rss_mb_start": rss_mb(pid)}
    orders = Orders(ticker(url))
    cancel_key, slow_keys, flood_keys = keys[0], keys[1:5], keys[5 : 5 + flooders]

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()

    def start_canceller() -> Any:
        process = context.Process(
            target=canceller_process, args=(url, cancel_key, orders, seconds, queue, BASE_NICE)
        )
        process.start()
        return process

    loop = asyncio.get_running_loop()
    process = start_canceller()
    assert await loop.run_in_executor(None, queue.get) == "ready"
    result["unloaded"] = await loop.run_in_executor(None, queue.get)
    process.join()

    stats = Stats()
    clients = [await connect(url, stats, key) for key in flood_keys]
    await closed_loop(clients, flood_frames(orders), 16, time.perf_counter() + seconds)
    result["sustainable"] = stats.summary(seconds)
    result["sustainable"]["rss_mb"] = rss_mb(pid)
    sustainable = max(1000.0, float(result["sustainable"]["accepted_orders_per_s"]))
    for client in clients:
        client.send([("cancel_all", orders.cancel_all)])
    await drain(clients)

    for factor in factors:
        stats = Stats()
        for client in clients:
            client.stats = stats
        process = start_canceller()
        assert await loop.run_in_executor(None, queue.get) == "ready"
        # the flood runs until the canceller is done (its whole run is under load)
        done = loop.run_in_executor(None, queue.get)
        sent_rate, elapsed = await open_loop(
            clients, flood_frames(orders), factor * sustainable, done
        )
        cancels = await done
        process.join()
        phase = stats.summary(elapsed)
        phase.update(
            offered_orders_per_s=round(factor * sustainable),
            sent_per_s=round(sent_rate),
            rss_mb=rss_mb(pid),
            canceller=cancels,
        )
        phase["workers"] = {
            "canceller": cancels.get("worker", ""),
            "flooders": dict(collections.Counter(client.worker for client in clients)),
        }
        phase["shed"] = {
            "taking_10047": stats.codes.get("order:10047", 0),
            "passive_10040": stats.codes.get("order:10040", 0),
            "cancels": sum(
                v
                for k, v in stats.codes.items()
                if k.startswith("cancel") and k.split(":")[1] in ("10047", "10040")
            )
            + sum(
                v
                for k, v in cancels["replies"].items()
                if k.startswith("cancel") and k.split(":")[1] in ("10047", "10040")
            ),
        }
        result[f"x{factor:g}"] = phase
        for client in clients:
            client.stats = Stats()
            client.send([("cancel_all", orders.cancel_all)])
        await drain(clients)
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    result["slow_reader"] = await slow_reader(url, pid, slow_keys, orders, seconds)
    return result


async def slow_reader(
    url: str, pid: int, keys: list[dict[str, Any]], orders: Orders, seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # a deep book: get_order_book at depth 10000 is then tens of kilobytes
    deep = Stats()
    maker = await connect(url, deep, keys[0])
    index = float(ticker(url)["index_price"])
    maker.send(
        [
            (
                "passive",
                template(
                    "private/buy",
                    instrument_name=INSTRUMENT,
                    amount=0.001,
                    type="limit",
                    price=round(index * 0.97) - k * 0.5,
                ),
            )
            for k in range(2000)
        ]
    )
    await drain([maker])
    for label, slow in (("without", False), ("with", True)):
        stats = Stats()
        clients = [await connect(url, stats, key) for key in keys[1:]]
        slow_client = None
        if slow:
            slow_client = await connect(url, Stats(), None)
            assert slow_client.transport is not None
            slow_client.transport.pause_reading()  # never reads
            slow_client.send(
                [
                    (
                        "book",
                        template("public/get_order_book", instrument_name=INSTRUMENT, depth=10_000),
                    )
                    for _ in range(3000)
                ]
            )
        await closed_loop(clients, flood_frames(orders), 8, time.perf_counter() + seconds)
        out[label] = stats.summary(seconds)
        out[label]["rss_mb"] = rss_mb(pid)
        if slow_client is not None:
            assert slow_client.transport is not None
            slow_client.transport.resume_reading()
            await drain([slow_client], 10)
            out[label]["slow_client"] = {
                "requests": 3000,
                "replies_read": dict(slow_client.stats.codes),
                "closed": slow_client.closed,
            }
            slow_client.transport.close()
        for client in clients:
            assert client.transport is not None
            client.transport.close()
    maker.send([("cancel_all", orders.cancel_all)])
    await drain([maker])
    assert maker.transport is not None
    maker.transport.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--modes", default="single,workers2")
    parser.add_argument("--factors", default="1,3,10")
    parser.add_argument("--flooders", type=int, default=6)
    parser.add_argument(
        "--fsync", default="group", help="the server's journal policy (derivex serve --fsync)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness of the load generator once the server runs (the canceller and the "
        "server keep 0): it stands for clients on other machines, not a rival of the server "
        "for this machine's cores",
    )
    parser.add_argument(
        "--worker-nice", type=int, default=0, help="derivex serve --worker-nice (workers modes)"
    )
    parser.add_argument("--quick", action="store_true", help="1 s phases, 1x and 10x")
    parser.add_argument(
        "--limit", action="append", default=[], help="NAME=VALUE passed to the server (repeatable)"
    )
    parser.add_argument(
        "--name", default="overload", help="results/<name>.json (a run with --limit: name it apart)"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.factors = 1.0, "1,10"
    import uvloop

    factors = [float(f) for f in args.factors.split(",")]
    results: dict[str, Any] = {
        "machine": machine(
            seconds=args.seconds,
            flooders=args.flooders,
            generator_nice=args.nice,
            base_nice=BASE_NICE,
            fsync=args.fsync,
            worker_nice=args.worker_nice,
        ),
        "modes": {},
    }
    for mode in args.modes.split(","):
        workers = 2 if mode == "workers2" else 0
        with tempfile.TemporaryDirectory(prefix="derivex-overload-") as tmp:
            keys = prepare(Path(tmp), 5 + args.flooders)
            process, url = start_server(
                Path(tmp), workers, tuple(args.limit), args.fsync, args.worker_nice
            )
            os.setpriority(os.PRIO_PROCESS, 0, BASE_NICE + args.nice)
            results["machine"][f"generator_nice_{mode}"] = os.getpriority(os.PRIO_PROCESS, 0)
            try:
                results["modes"][mode] = uvloop.run(
                    run_mode(url, process.pid, keys, args.seconds, factors, args.flooders)
                )
            finally:
                # the next mode's server starts at the usual priority (needs root to lower)
                with contextlib.suppress(PermissionError):
                    os.setpriority(os.PRIO_PROCESS, 0, BASE_NICE)
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
    table = Table(title="overload: derivex serve under open-loop order floods")
    for column in (
        "mode",
        "phase",
        "offered/s",
        "sent/s",
        "accepted/s",
        "shed taking",
        "shed passive",
        "order p50/p99 ms",
        "cancel p50/p99 ms",
        "RSS MiB",
    ):
        table.add_column(column)
    for mode, data in results["modes"].items():
        for phase in ("unloaded", "sustainable", *[f"x{f:g}" for f in factors]):
            row = data[phase]
            order, cancel = row.get("order_ms"), (row.get("canceller") or row).get("cancel_ms")
            table.add_row(
                mode,
                phase,
                str(row.get("offered_orders_per_s", "")),
                str(row.get("sent_per_s", "")),
                str(row["accepted_orders_per_s"]),
                str(row.get("shed", {}).get("taking_10047", "")),
                str(row.get("shed", {}).get("passive_10040", "")),
                f"{order['p50']}/{order['p99']}" if order else "",
                f"{cancel['p50']}/{cancel['p99']}" if cancel else "",
                str(row.get("rss_mb", data["rss_mb_start"])),
            )
        for label in ("without", "with"):
            row = data["slow_reader"][label]
            order = row.get("order_ms")
            table.add_row(
                mode,
                f"slow reader {label}",
                "",
                "",
                str(row["accepted_orders_per_s"]),
                "",
                "",
                f"{order['p50']}/{order['p99']}" if order else "",
                "",
                str(row["rss_mb"]),
            )
    results["machine"]["server_limits"] = args.limit
    finish(results, table, Console(), args.name, args.quick)


if __name__ == "__main__":
    main()
