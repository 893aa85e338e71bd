"""Gateway benchmark: order entry over WebSocket and HTTP with N concurrent clients on
loopback, beside a minimal echo server on the same stack (aiohttp) in the same run, and the
stack choice (aiohttp vs uvicorn + starlette echo servers).

    python bench/gateway_bench.py [--seconds 3] [--runs 3] [--clients 1,16] [--quick]

Each server runs in its own process; this process is the load generator (one asyncio
loop, uvloop). A client sends one request and waits for its reply before the next
(closed loop); the ack latency is that round trip. Orders: ``private/buy`` and
``private/sell`` limit orders on BTC_USDC-PERPETUAL at one price, each client alternating
sides, so half rest and half trade against other clients. WebSocket clients authenticate
once (``public/auth``); HTTP clients sign every request (``deri-hmac-sha256``) as ccxt does.
The gateway runs without a journal and with ``risk_checks=False`` (matching only): this
measures the API path, not durability or margin. Every measurement is bounded in time
(``--seconds``) and count (``--max-requests``). Prints a table and writes
bench/results/gateway.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
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
ECHO_REPLY = (b'{"jsonrpc":"2.0","id":1,"result":{"order":{"order_id":"1"},"trades":[]},'
              b'"usIn":1,"usOut":2,"usDiff":1,"testnet":false}')


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
    exchange = Exchange(EngineConfig(risk_checks=False, gas_refill_per_ms=10**6,
                                     gas_max=10**9))
    catalog = list_all(exchange, [perpetual("BTC")])
    store = KeyStore(keys_dir)
    for _ in range(accounts):
        account = exchange.create_account()
        exchange.deposit(account, 10**15)
        store.create(account)
    gateway = Gateway(Venue(exchange, catalog), store,
                      limiter=RateLimiter(capacity=1e18, refill_per_s=1e18))

    async def main() -> None:
        url = await gateway.start("127.0.0.1", port)
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

    app = Starlette(routes=[Route("/api/v2/{scope}/{name}", rest),
                            WebSocketRoute("/ws/api/v2", websocket)])
    print("READY", f"http://127.0.0.1:{port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", loop="uvloop",
                http="httptools", ws="websockets-sansio")


# ---- load generator ----

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(kind: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                                *extra], stdout=subprocess.PIPE, text=True)
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


async def _ws_client(url: str, key: Any, stop_at: float, budget: list[int],
                     samples: list[float], echo: bool) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(
            url.replace("http", "ws", 1) + "/ws/api/v2", compress=0) as ws:
        if key is not None:
            await ws.send_str(json.dumps({"id": 0, "method": "public/auth", "params": {
                "grant_type": "client_credentials", "client_id": key["client_id"],
                "client_secret": key["client_secret"]}}))
            await ws.receive()
        k = 0
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            k += 1
            method = "private/buy" if k % 2 else "private/sell"
            frame = orjson.dumps({"jsonrpc": "2.0", "id": k, "method": method,
                                  "params": ORDER}).decode()
            started = time.perf_counter()
            await ws.send_str(frame)
            reply = await ws.receive()
            samples.append(time.perf_counter() - started)
            if not echo and '"error"' in reply.data:
                raise RuntimeError(reply.data[:300])


async def _http_client(url: str, key: Any, stop_at: float, budget: list[int],
                       samples: list[float], echo: bool) -> None:
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
                sig = hmac.new(key["client_secret"].encode(),
                               f"{ts}\n{ts}\nGET\n{target}\n\n".encode(),
                               hashlib.sha256).hexdigest()
                headers["Authorization"] = (f"deri-hmac-sha256 id={key['client_id']},ts={ts},"
                                            f"sig={sig},nonce={ts}")
            started = time.perf_counter()
            async with session.get(url + target, headers=headers) as response:
                body = await response.read()
            samples.append(time.perf_counter() - started)
            if not echo and response.status != 200:
                raise RuntimeError(body[:300])


def measure(url: str, transport: str, clients: int, seconds: float, max_requests: int,
            keys: list[Any] | None) -> dict[str, float]:
    import uvloop

    samples: list[float] = []
    budget = [max_requests]

    async def main() -> float:
        stop_at = time.perf_counter() + seconds
        run = _ws_client if transport == "ws" else _http_client
        began = time.perf_counter()
        await asyncio.gather(*[run(url, keys[i] if keys else None, stop_at, budget, samples,
                                   keys is None) for i in range(clients)])
        return time.perf_counter() - began

    elapsed = uvloop.run(main())
    ordered = sorted(samples[len(samples) // 20:])  # first 5%: warm-up
    return {"requests_per_s": len(samples) / elapsed, "requests": len(samples),
            "p50_us": ordered[len(ordered) // 2] * 1e6,
            "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="1,16")
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
    console = Console()
    results: dict[str, Any] = {
        "machine": machine(), "benchmark": "gateway", "seconds_per_measurement": args.seconds,
        "runs": args.runs, "statistic": "median over runs",
        "workload": "closed loop; limit buy/sell alternating at one price (half trade); "
                    "gateway without journal, risk_checks=False; HTTP signs every request",
        "results": {}}
    import uvicorn  # noqa: F401  (the stack comparison needs the bench extra: fail early)

    keys_dir = tempfile.mkdtemp(prefix="derivex-bench-keys-")
    servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
    table = Table(title="gateway: orders/s and ack latency (closed loop, loopback)")
    for column in ("server", "transport", "clients", "orders/s", "p50 µs", "p99 µs"):
        table.add_column(column, justify="right")
    try:
        servers["gateway"] = start("gateway", "--keys-dir", keys_dir, "--accounts",
                                   str(max(client_counts)))
        servers["echo aiohttp"] = start("echo-aiohttp")
        servers["echo uvicorn+starlette"] = start("echo-uvicorn")
        keys = json.loads((Path(keys_dir) / "keys.json").read_text())
        for name, (_, url) in servers.items():
            for transport in ("ws", "http"):
                for clients in client_counts:
                    runs = [measure(url, transport, clients, args.seconds, args.max_requests,
                                    keys if name == "gateway" else None)
                            for _ in range(args.runs)]
                    row = {field: statistics.median(r[field] for r in runs)
                           for field in ("requests_per_s", "p50_us", "p99_us")}
                    row["runs"] = runs
                    results["results"][f"{name} {transport} x{clients}"] = row
                    table.add_row(name, transport, str(clients),
                                  f"{row['requests_per_s']:,.0f}", f"{row['p50_us']:,.0f}",
                                  f"{row['p99_us']:,.0f}")
                    console.print(f"{name} {transport} x{clients}: "
                                  f"{row['requests_per_s']:,.0f}/s")
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    for transport in ("ws", "http"):
        for clients in client_counts:
            gateway = results["results"][f"gateway {transport} x{clients}"]
            echo = results["results"][f"echo aiohttp {transport} x{clients}"]
            overhead = 1e6 / gateway["requests_per_s"] - 1e6 / echo["requests_per_s"]
            results["results"][f"gateway overhead {transport} x{clients}"] = {
                "us_per_order_over_echo": overhead,
                "p50_us_over_echo": gateway["p50_us"] - echo["p50_us"]}
    finish(results, table, console, "gateway", args.quick)


if __name__ == "__main__":
    main()
