"""Gateway benchmark: order entry over WebSocket and HTTP with N concurrent clients on
loopback, beside a minimal echo server on the same stack (aiohttp) in the same run, and the
stack choice (aiohttp vs uvicorn + starlette echo servers).

    python bench/gateway_bench.py [--seconds 3] [--runs 3] [--clients 1,16] [--depth 1,8]
        [--servers gateway,...] [--transports ws,http] [--baseline-src DIR] [--quick]

Each server runs in its own process; this process is the load generator (one asyncio
loop, uvloop). Closed loop per in-flight slot: a WebSocket client keeps ``--depth``
requests in flight (1: send, wait for the reply, send the next; 8: as a trading client
pipelining orders), each reply sending the next request; the ack latency is each
request's round trip. WebSocket load comes from a raw-protocol client (a few microseconds
a message, so the server is what is measured); HTTP clients (aiohttp) keep one request in
flight and sign every request (``deri-hmac-sha256``) as ccxt does. Orders: ``private/buy``
and ``private/sell`` limit orders on BTC_USDC-PERPETUAL at one price, each client
alternating sides, so half rest and half trade against other orders. WebSocket clients
authenticate once (``public/auth``). The gateway runs without a journal and with
``risk_checks=False`` (matching only), with ``tune_gc`` as ``derivex serve`` does: this
measures the API path, not durability or margin. ``--baseline-src`` serves a second
gateway from another source tree (e.g. ``git archive <commit> src``) in the same run.
Every measurement is bounded in time (``--seconds``) and count (``--max-requests``).
Prints a table and writes bench/results/gateway.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)

INSTRUMENT = "BTC_USDC-PERPETUAL"
ECHO_REPLY = (
    b'{"jsonrpc":"2.0","id":1,"result":{"order":{"order_id":"1"},"trades":[]},'
    b'"usIn":1,"usOut":2,"usDiff":1,"testnet":false}'
)


# ---- servers (each in its own process) ----


def serve_gateway(port: int, keys_dir: str, accounts: int) -> None:
    import uvloop

    from derivex.core.config import EngineConfig
    from derivex.exchange import Exchange
    from derivex.gateway import Gateway, KeyStore, Venue
    from derivex.gateway.listing import list_all, perpetual
    from derivex.gateway.ratelimit import RateLimiter
    from derivex.gateway.telemetry import configure_logging

    configure_logging(level=30)
    exchange = Exchange(EngineConfig(risk_checks=False, gas_refill_per_ms=10**6, gas_max=10**9))
    catalog = list_all(exchange, [perpetual("BTC")])
    store = KeyStore(keys_dir)
    for _ in range(accounts):
        account = exchange.create_account()
        exchange.deposit(account, 10**15)
        store.create(account)
    gateway = Gateway(
        Venue(exchange, catalog), store, limiter=RateLimiter(capacity=1e18, refill_per_s=1e18)
    )

    async def main() -> None:
        url = await gateway.start("127.0.0.1", port)
        try:
            from derivex.gateway.server import tune_interpreter as tune_gc
        except ImportError:  # a baseline tree from before tune_gc
            pass
        else:
            tune_gc()  # as derivex serve does
        print("READY", url, flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def serve_echo_aiohttp(port: int) -> None:
    import uvloop
    from aiohttp import WSMsgType, web

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, decode_text=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                orjson.loads(message.data)  # the gateway parses every frame too
                await ws.send_frame(ECHO_REPLY, WSMsgType.TEXT)
        return ws

    async def rest(request: web.Request) -> web.Response:
        return web.Response(body=ECHO_REPLY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/ws/api/v2", websocket)
    app.router.add_route("*", "/api/v2/{scope}/{name}", rest)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("READY", f"http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def serve_echo_uvicorn(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute

    async def websocket(ws: Any) -> None:
        await ws.accept()
        try:
            while True:
                orjson.loads(await ws.receive_text())
                await ws.send_text(ECHO_REPLY.decode())
        except Exception:  # the client went away
            return

    async def rest(request: Any) -> Response:
        return Response(ECHO_REPLY, media_type="application/json")

    app = Starlette(
        routes=[Route("/api/v2/{scope}/{name}", rest), WebSocketRoute("/ws/api/v2", websocket)]
    )
    print("READY", f"http://127.0.0.1:{port}", flush=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
    )


# ---- load generator ----


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(kind: str, *extra: str, env_path: str | None = None) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    env = dict(os.environ)
    if env_path is not None:  # import derivex from another source tree first
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env_path, env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY"):
            break
        if not line and process.poll() is not None:
            raise RuntimeError(f"{kind} server exited")
    time.sleep(0.5)  # uvicorn prints before it listens
    return process, f"http://127.0.0.1:{port}"


ORDER = {"instrument_name": INSTRUMENT, "amount": "0.01", "price": "60000", "type": "limit"}


class _WsClient(asyncio.Protocol):
    """A lean WebSocket client (raw protocol: handshake, masked text frames out, frames
    parsed from the byte stream in), so the load generator costs a few microseconds per
    message and the server is what is measured. Keeps ``depth`` requests in flight: each
    reply sends the next request (closed loop per slot); replies come in order per
    connection, so a FIFO of send times gives each request's round trip."""

    def __init__(
        self, depth: int, stop_at: float, budget: list[int], samples: list[float], echo: bool
    ) -> None:
        self.depth, self.stop_at, self.budget, self.samples = depth, stop_at, budget, samples
        self.echo = echo
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.first: asyncio.Future[bytes] | None = None
        self.done = asyncio.get_running_loop().create_future()
        self.sent: collections.deque[float] = collections.deque()
        self.k = 0
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(bytes(self.buffer[:200]))
            del self.buffer[: end + 4]
            self.upgraded = True
            self.handshaken.set_result(None)
        buffer, at, replies = self.buffer, 0, 0
        now = time.perf_counter()
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
            if buffer[at] & 0x0F == 1:  # text
                payload = bytes(buffer[at + head : at + head + size])
                if self.first is not None:
                    self.first.set_result(payload)
                    self.first = None
                else:
                    if not self.echo and b'"error"' in payload:
                        raise RuntimeError(payload[:300])
                    self.samples.append(now - self.sent.popleft())
                    replies += 1
            at += head + size
        del buffer[:at]
        if replies:
            self.send_orders(replies)

    def send_orders(self, count: int) -> None:
        budget = self.budget
        if time.perf_counter() >= self.stop_at:
            count = 0
        count = min(count, budget[0])
        budget[0] -= count
        parts = []
        now = time.perf_counter()
        for _ in range(count):
            self.k += 1
            parts.append(_masked(ORDER_FRAMES[self.k & 1] % self.k))
            self.sent.append(now)
        if parts:
            assert self.transport is not None
            self.transport.write(b"".join(parts))
        elif not self.sent and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _masked(payload: bytes) -> bytes:
    """A client text frame with the all-zero mask (valid: RFC 6455 requires the mask bit and
    a key, and a zero key leaves the payload as it is)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, 0x80 | size)) + b"\0\0\0\0" + payload
    return bytes((0x81, 0xFE)) + size.to_bytes(2, "big") + b"\0\0\0\0" + payload


ORDER_FRAMES = [
    orjson.dumps({"jsonrpc": "2.0", "id": 999, "method": method, "params": ORDER}).replace(
        b"999", b"%d"
    )
    for method in ("private/sell", "private/buy")
]


async def _ws_client(
    url: str,
    key: Any,
    stop_at: float,
    budget: list[int],
    samples: list[float],
    echo: bool,
    depth: int,
) -> None:
    loop = asyncio.get_running_loop()
    host, port = url.removeprefix("http://").split(":")
    transport, client = await loop.create_connection(
        lambda: _WsClient(depth, stop_at, budget, samples, echo), host, int(port)
    )
    transport.write(
        (
            f"GET /ws/api/v2 HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await client.handshaken
    if key is not None:
        client.first = loop.create_future()
        transport.write(
            _masked(
                orjson.dumps(
                    {
                        "id": 0,
                        "method": "public/auth",
                        "params": {
                            "grant_type": "client_credentials",
                            "client_id": key["client_id"],
                            "client_secret": key["client_secret"],
                        },
                    }
                )
            )
        )
        await client.first
    client.send_orders(depth)
    try:
        await asyncio.wait_for(client.done, timeout=stop_at - time.perf_counter() + 10)
    finally:
        transport.close()


async def _http_client(
    url: str,
    key: Any,
    stop_at: float,
    budget: list[int],
    samples: list[float],
    echo: bool,
    depth: int,
) -> None:
    import urllib.parse

    import aiohttp

    async with aiohttp.ClientSession() as session:
        k = 0
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            k += 1
            method = "buy" if k % 2 else "sell"
            query = urllib.parse.urlencode(ORDER, quote_via=urllib.parse.quote)
            target = f"/api/v2/private/{method}?{query}"
            headers = {}
            if key is not None:
                ts = str(time.time_ns() // 1_000_000)
                nonce = f"{ts}.{k}"  # unique: a signature is accepted once
                sig = hmac.new(
                    key["client_secret"].encode(),
                    f"{ts}\n{nonce}\nGET\n{target}\n\n".encode(),
                    hashlib.sha256,
                ).hexdigest()
                headers["Authorization"] = (
                    f"deri-hmac-sha256 id={key['client_id']},ts={ts},sig={sig},nonce={nonce}"
                )
            started = time.perf_counter()
            async with session.get(url + target, headers=headers) as response:
                body = await response.read()
            samples.append(time.perf_counter() - started)
            if not echo and response.status != 200:
                raise RuntimeError(body[:300])


def measure(
    url: str,
    transport: str,
    clients: int,
    seconds: float,
    max_requests: int,
    keys: list[Any] | None,
    depth: int = 1,
) -> dict[str, float]:
    import uvloop

    samples: list[float] = []
    budget = [max_requests]

    async def main() -> float:
        stop_at = time.perf_counter() + seconds
        run = _ws_client if transport == "ws" else _http_client
        began = time.perf_counter()
        await asyncio.gather(
            *[
                run(url, keys[i] if keys else None, stop_at, budget, samples, keys is None, depth)
                for i in range(clients)
            ]
        )
        return time.perf_counter() - began

    elapsed = uvloop.run(main())
    ordered = sorted(samples[len(samples) // 20 :])  # first 5%: warm-up
    return {
        "requests_per_s": len(samples) / elapsed,
        "requests": len(samples),
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="1,16")
    parser.add_argument(
        "--depth", default="1,8", help="WebSocket requests in flight per client (HTTP: always 1)"
    )
    parser.add_argument("--servers", default="gateway,echo aiohttp,echo uvicorn+starlette")
    parser.add_argument("--transports", default="ws,http")
    parser.add_argument(
        "--baseline-src",
        help="also serve the gateway from this source tree "
        "(e.g. an older commit's src/, exported with git archive) as "
        "'gateway baseline'",
    )
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keys-dir", help=argparse.SUPPRESS)
    parser.add_argument("--accounts", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "gateway":
        return serve_gateway(args.port, args.keys_dir, args.accounts)
    if args.serve == "echo-aiohttp":
        return serve_echo_aiohttp(args.port)
    if args.serve == "echo-uvicorn":
        return serve_echo_uvicorn(args.port)
    if args.quick:
        args.seconds, args.runs = 0.5, 1
    client_counts = [int(c) for c in args.clients.split(",")]
    depths = [int(d) for d in args.depth.split(",")]
    wanted = args.servers.split(",") + (["gateway baseline"] if args.baseline_src else [])
    transports = args.transports.split(",")
    console = Console()
    results: dict[str, Any] = {
        "machine": machine(),
        "benchmark": "gateway",
        "seconds_per_measurement": args.seconds,
        "runs": args.runs,
        "statistic": "median over runs",
        "workload": "closed loop per in-flight slot (inflight1: one request at a time per "
        "client; inflightN: N requests kept in flight per client, each reply sends "
        "the next); limit buy/sell alternating at one price (half trade); gateway "
        "without journal, risk_checks=False; WebSocket load from a raw-protocol "
        "client (zero mask), HTTP from aiohttp signing every request",
        "results": {},
    }
    import uvicorn  # noqa: F401  (the stack comparison needs the bench extra: fail early)

    keys_dir = tempfile.mkdtemp(prefix="derivex-bench-keys-")
    baseline_keys = keys_dir
    servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
    table = Table(title="gateway: orders/s and ack latency (closed loop, loopback)")
    for column in ("server", "transport", "clients", "in flight", "orders/s", "p50 µs", "p99 µs"):
        table.add_column(column, justify="right")
    try:
        if "gateway" in wanted:
            servers["gateway"] = start(
                "gateway", "--keys-dir", keys_dir, "--accounts", str(max(client_counts))
            )
        if "gateway baseline" in wanted:
            baseline_keys = tempfile.mkdtemp(prefix="derivex-bench-keys-")
            servers["gateway baseline"] = start(
                "gateway",
                "--keys-dir",
                baseline_keys,
                "--accounts",
                str(max(client_counts)),
                env_path=args.baseline_src,
            )
        if "echo aiohttp" in wanted:
            servers["echo aiohttp"] = start("echo-aiohttp")
        if "echo uvicorn+starlette" in wanted:
            servers["echo uvicorn+starlette"] = start("echo-uvicorn")
        for name, (_, url) in servers.items():
            directory = baseline_keys if name == "gateway baseline" else keys_dir
            keys = (
                json.loads((Path(directory) / "keys.json").read_text())
                if name.startswith("gateway")
                else None
            )
            for transport in transports:
                for clients in client_counts:
                    for depth in depths if transport == "ws" else [1]:
                        runs = [
                            measure(
                                url,
                                transport,
                                clients,
                                args.seconds,
                                args.max_requests,
                                keys,
                                depth,
                            )
                            for _ in range(args.runs)
                        ]
                        row = {
                            field: statistics.median(r[field] for r in runs)
                            for field in ("requests_per_s", "p50_us", "p99_us")
                        }
                        row["runs"] = runs
                        label = f"{name} {transport} x{clients} inflight{depth}"
                        results["results"][label] = row
                        table.add_row(
                            name,
                            transport,
                            str(clients),
                            str(depth),
                            f"{row['requests_per_s']:,.0f}",
                            f"{row['p50_us']:,.0f}",
                            f"{row['p99_us']:,.0f}",
                        )
                        console.print(
                            f"{label}: {row['requests_per_s']:,.0f}/s p99 {row['p99_us']:,.0f} us"
                        )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    found = results["results"]
    for label in list(found):
        if not label.startswith("gateway "):
            continue
        echo = found.get("echo aiohttp " + label.split(" ", 1)[1].removeprefix("baseline "))
        if echo is not None:
            gateway = found[label]
            found[label.replace("gateway", "gateway overhead", 1)] = {
                "us_per_order_over_echo": (
                    1e6 / gateway["requests_per_s"] - 1e6 / echo["requests_per_s"]
                ),
                "p50_us_over_echo": gateway["p50_us"] - echo["p50_us"],
            }
    results["machine"]["load_after_measurements"] = list(os.getloadavg())
    if args.baseline_src:
        results["baseline_src"] = args.baseline_src
    finish(results, table, console, "gateway", args.quick)


if __name__ == "__main__":
    main()
