"""Cluster benchmark (issue 17): the log on a local 3-node NATS cluster (R3, file storage,
``sync_interval: always``) against the single-machine journal, in the same run.

    python bench/cluster_bench.py [--frames 400] [--kills 20] [--orders 200] [--chaos 0]

- **log**: PubAck latency p50/p99 of synchronous one-record appends (``JetStreamLog``);
  commands/s with 256-record frames pipelined ``--window`` deep (raw nats-py
  ``publish_async`` with the fence and Msg-Id headers: one writer knows every next
  stream seq); the same frames appended to the file journal (``fsync="batch"``, one
  ``fdatasync`` each) as the single-machine figure;
- **domains**: the pipelined appends of one domain alone, then of two at once (a writer
  process each);
- **catch-up**: a ``Follower`` from stream seq 0 over those frames (frames/s and
  commands/s, a root every 16 frames), and an in-memory replay of the same commands;
- **failover**: ``--kills`` kill -9 of the leading ``python -m derivex.cluster`` node
  under its synthetic flow: kill -9 to the new leader's first acknowledged batch;
- **e2e**: WebSocket ``private/buy`` round trips (one in flight) against ``derivex
  serve --cluster`` (reply after the PubAck) and plain ``derivex serve`` (group commit);
- **router**: HTTP ``private/buy`` round trips (one in flight, each then cancelled) on
  the BTC domain of ``cluster up --domain btc_usdc --domain eth_usdc``, straight to the
  leader and through the router (``derivex.cluster.router``), alternated;
- **chaos** (``--chaos N``): N rounds of ``tests/cluster/chaos.py`` (long version).

Writes bench/results/cluster.json with the load before and after. Never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from derivex.cluster.__main__ import synthetic_batch  # noqa: E402
from derivex.cluster.jetstream import FIRST_SEQ_HEADER, JetStreamLog  # noqa: E402
from derivex.cluster.log import FileLog  # noqa: E402
from derivex.cluster.node import Follower  # noqa: E402
from derivex.cluster.servers import LocalCluster  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.sequencer import Sequencer  # noqa: E402
from report import RESULTS, finish, machine  # noqa: E402

RECORDS = 256  # per pipelined frame (16 KiB)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1e3 * ordered[len(ordered) // 2], 3),
        "p99_ms": round(1e3 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "samples": len(ordered),
    }


def _frames(count: int) -> list[np.ndarray]:
    frames, seq = [], 1
    for _ in range(count):
        batch = synthetic_batch(seq, RECORDS)
        batch["seq"] = np.arange(seq, seq + RECORDS, dtype=np.uint64)
        batch["ts_ns"] = seq
        frames.append(batch)
        seq += RECORDS
    return frames


def _pipeline(log: JetStreamLog, frames: list[np.ndarray], window: int) -> float:
    """Publish ``frames`` to ``log``'s empty stream ``window`` deep, with the fence and
    Msg-Id headers; the seconds it took."""

    async def pipelined() -> float:
        pending: collections.deque[Any] = collections.deque()
        began = time.perf_counter()
        for position, frame in enumerate(frames, start=1):
            payload = frame.tobytes()
            first = int(frame["seq"][0])
            headers = {
                "Nats-Msg-Id": f"bench:0:{first}:{zlib.crc32(payload):08x}",
                "Nats-Expected-Last-Sequence": str(position - 1),
                FIRST_SEQ_HEADER: str(first),
            }
            pending.append(await log.js.publish_async(log.subject, payload, headers=headers))
            if len(pending) >= window:
                ack = await pending.popleft()
                assert not ack.duplicate
        while pending:
            await pending.popleft()
        return time.perf_counter() - began

    return float(log.loop.call(pipelined(), 600))


def log_figures(urls: list[str], frames: list[np.ndarray], window: int) -> dict[str, Any]:
    with JetStreamLog(urls, "bench_sync") as log:
        latencies = []
        for seq in range(1, 301):
            one = synthetic_batch(seq, 1)
            one["seq"] = seq
            began = time.perf_counter()
            log.append(one, seq - 1)
            latencies.append(time.perf_counter() - began)
    sync = {**_percentiles(latencies[20:]), "appends_per_s": round(len(latencies) / sum(latencies))}

    with JetStreamLog(urls, "bench_pipe") as log:
        elapsed = _pipeline(log, frames, window)
        log.refresh()
        assert log.stream_last == len(frames)
        follower = Follower(log, Engine(), every=16, node="bench")
        began = time.perf_counter()
        while follower.position < len(frames):
            follower.poll(idle=2.0, until=len(frames))
        catch_up = time.perf_counter() - began
        follower.close()
    commands = len(frames) * RECORDS
    with tempfile.TemporaryDirectory() as directory:
        file_log = FileLog(directory)
        began = time.perf_counter()
        for frame in frames:
            file_log.append(frame, int(frame["seq"][0]) - 1)
        file_elapsed = time.perf_counter() - began
        file_log.close()
    sequencer = Sequencer(Engine())
    began = time.perf_counter()
    for frame in frames:
        sequencer.apply(frame)
    replay = time.perf_counter() - began
    return {
        "puback_sync_one_record": sync,
        "pipelined": {
            "window": window,
            "records_per_frame": RECORDS,
            "frames_per_s": round(len(frames) / elapsed),
            "commands_per_s": round(commands / elapsed),
        },
        "file_journal_fsync_batch": {
            "frames_per_s": round(len(frames) / file_elapsed),
            "commands_per_s": round(commands / file_elapsed),
        },
        "replica_catch_up": {
            "frames_per_s": round(len(frames) / catch_up),
            "commands_per_s": round(commands / catch_up),
        },
        "in_memory_replay_commands_per_s": round(commands / replay),
    }


def _pipeline_child(urls: str, domain: str, frames: int, window: int) -> None:
    """One domain's pipelined appends in this process (``--pipe``): prints the seconds."""
    with JetStreamLog(urls.split(","), domain) as log:
        print(_pipeline(log, _frames(frames), window))


def domains_figures(urls: list[str], frames: int, window: int) -> dict[str, Any]:
    """Pipelined appends of one domain alone, then of two domains at once (one writer
    process each, as two leaders would be): commands/s in all."""
    rates = {}
    for count in (1, 2):
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--pipe",
                    f"bench_dom{count}_{i}",
                    "--urls",
                    ",".join(urls),
                    "--frames",
                    str(frames),
                    "--window",
                    str(window),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(count)
        ]
        seconds = [float(child.communicate(timeout=600)[0].split()[-1]) for child in children]
        # each child times its own appends (after its imports): the slowest bounds the pair
        rates[f"{count}_domain" + ("s" if count > 1 else "")] = round(
            count * frames * RECORDS / max(seconds)
        )
    return {"commands_per_s": rates, "frames_per_domain": frames, "window": window}


def _node(directory: Path, urls: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
    acks, output = directory / f"{name}.acks", directory / f"{name}.log"
    command = [
        sys.executable, "-m", "derivex.cluster", "--urls", ",".join(urls), "--domain",
        "bench_failover", "--node", name, "--acks", str(acks), "--status",
        str(directory / f"{name}.status"), "--ttl", "2", "--rate", "40", "--lifetime", "900",
    ]  # fmt: skip
    with open(output, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    return process, acks


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.02)


def failover_figures(urls: list[str], kills: int, directory: Path) -> dict[str, Any]:
    nodes = {name: _node(directory, urls, f"{name}0") for name in ("a", "b")}
    generation = collections.Counter[str]()
    leader = "a"
    times = []
    try:
        _wait(lambda: _lines(nodes["a"][1]) >= 5, 120, "first leader")
        for _ in range(kills):
            standby = "b" if leader == "a" else "a"
            log = directory / f"{standby}{generation[standby]}.log"
            _wait(lambda log=log: "standby from" in log.read_text(), 120, "standby ready")
            before = _lines(nodes[standby][1])
            os.killpg(nodes[leader][0].pid, signal.SIGKILL)
            killed = time.monotonic()
            nodes[leader][0].wait(10)
            acks = nodes[standby][1]
            _wait(lambda b=before, a=acks: _lines(a) > b, 120, "takeover")
            times.append(time.monotonic() - killed)
            generation[leader] += 1
            nodes[leader] = _node(directory, urls, f"{leader}{generation[leader]}")
            leader = standby
    finally:
        for process, _ in nodes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
    return {
        "kills": len(times),
        "lease_ttl_s": 2,
        "median_s": round(statistics.median(times), 2),
        "max_s": round(max(times), 2),
        "min_s": round(min(times), 2),
        "all_s": [round(t, 2) for t in times],
    }


async def _ws_orders(url: str, key: str, secret: str, orders: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/ws/api/v2")
        request_id = 0

        async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
            nonlocal request_id
            request_id += 1
            await ws.send_json(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            )
            while True:
                reply = await ws.receive_json()
                if reply.get("id") == request_id:
                    return reply

        auth = {"grant_type": "client_credentials", "client_id": key, "client_secret": secret}
        assert "result" in await call("public/auth", auth)
        name = "BTC_USDC-PERPETUAL"
        deadline = time.monotonic() + 60
        while True:
            ticker = (await call("public/ticker", {"instrument_name": name}))["result"]
            if ticker.get("min_price") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        price = round(ticker["min_price"] * 1.02 * 2) / 2
        samples = []
        for _ in range(orders):
            began = time.perf_counter()
            reply = await call(
                "private/buy",
                {"instrument_name": name, "amount": 0.01, "type": "limit", "price": price},
            )
            samples.append(time.perf_counter() - began)
            assert "result" in reply, reply
        await ws.close()
        return samples


def _serve(extra: list[str], data: Path, log: Path) -> tuple[subprocess.Popen[str], str, str, str]:
    command = [sys.executable, "-m", "derivex.cli", "serve", "--data-dir", str(data), "--port", "0",
               "--log-format", "console", *extra]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True, start_new_session=True
    )
    assert process.stdout is not None
    text = ""
    while "ccxt.deribit(" not in text:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
        text += line
    url = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", text).group(1)  # type: ignore[union-attr]
    key = re.search(r"client_id\s+(\S+)", text).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret\s+(\S+)", text).group(1)  # type: ignore[union-attr]
    return process, url, key, secret


def e2e_figures(urls: list[str], orders: int, directory: Path) -> dict[str, Any]:
    results = {}
    for label, extra in (
        ("cluster_r3", ["--cluster", ",".join(urls), "--domain", "bench_e2e", "--role", "leader"]),
        ("single_machine_group_commit", []),
    ):
        process, url, key, secret = _serve(extra, directory / label, directory / f"{label}.log")
        try:
            samples = asyncio.run(_ws_orders(url, key, secret, orders))
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
        results[label] = _percentiles(samples[10:])
    return results


def _signed_get(url: str, key: str, secret: str, method: str, params: dict[str, Any]) -> Any:
    import hashlib
    import hmac
    import secrets
    import urllib.error
    import urllib.parse
    import urllib.request

    target = f"/api/v2/{method}?{urllib.parse.urlencode(params)}"
    ts, nonce = str(time.time_ns() // 1_000_000), secrets.token_hex(8)
    signature = hmac.new(
        secret.encode(), f"{ts}\n{nonce}\nGET\n{target}\n\n".encode(), hashlib.sha256
    ).hexdigest()
    header = f"deri-hmac-sha256 id={key},ts={ts},sig={signature},nonce={nonce}"
    request = urllib.request.Request(url + target, headers={"Authorization": header})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def router_figures(orders: int, directory: Path) -> dict[str, Any]:
    """HTTP ``private/buy`` round trips (one in flight, each followed by its cancel) on
    the BTC domain of a two-domain ``cluster up``: straight to the leader and through the
    router, alternated so both see the same load."""
    command = [sys.executable, "-m", "derivex.cli", "cluster", "up", "--directory",
               str(directory / "router_venue"), "--domain", "btc_usdc", "--domain", "eth_usdc",
               "--lifetime", "600"]  # fmt: skip
    output = directory / "router_venue.out"
    process = subprocess.Popen(
        command, stdout=output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        pattern = (
            r"\[btc_usdc-1\] +REST +(http://\S+?)/.*?client_id\s+(\S+).*?client_secret\s+(\S+)"
        )
        _wait(lambda: re.search(pattern, output.read_text(), re.S), 300, "the BTC leader")
        _wait(lambda: "[router] router:" in output.read_text(), 60, "the router")
        text = output.read_text()
        leader, key, secret = re.search(pattern, text, re.S).groups()  # type: ignore[union-attr]
        router = re.search(r"\[router\] router: (\S+)", text).group(1)  # type: ignore[union-attr]
        name = "BTC_USDC-PERPETUAL"
        floor = 0.0
        deadline = time.monotonic() + 120
        while not floor and time.monotonic() < deadline:
            ticker = _signed_get(leader, key, secret, "public/ticker", {"instrument_name": name})
            floor = ticker.get("result", {}).get("min_price") or 0.0
            time.sleep(0.3)
        price = round(floor * 1.03 * 2) / 2  # the perpetual's 0.5 tick
        samples: dict[str, list[float]] = {"direct_to_leader": [], "through_router": []}
        for number in range(2 * orders):
            label, url = ("direct_to_leader", leader) if number % 2 else ("through_router", router)
            params = {"instrument_name": name, "amount": "0.01", "type": "limit",
                      "price": str(price)}  # fmt: skip
            started = time.perf_counter()
            placed = _signed_get(url, key, secret, "private/buy", params)
            samples[label].append(time.perf_counter() - started)
            order_id = placed["result"]["order"]["order_id"]
            _signed_get(url, key, secret, "private/cancel", {"order_id": order_id})
        return {label: _percentiles(values[5:]) for label, values in samples.items()}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def chaos_figures(cluster: LocalCluster, rounds: int, directory: Path) -> dict[str, Any]:
    from tests.cluster.chaos import Chaos

    directory.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(cluster, "bench_chaos", directory)
    try:
        chaos.wait_acks(10)
        for number in range(rounds):
            kind = ("leader", "replica", "nats")[number % 3]
            if kind == "leader":
                chaos.kill_leader()
            elif kind == "replica":
                chaos.kill_replica()
            else:
                chaos.kill_server(number)
            chaos.wait_acks(10)
        chaos.finish()
    finally:
        chaos.kill_all()
    outcome = chaos.outcome
    return {
        "rounds": rounds,
        "kills": dict(outcome.kills),
        "acknowledged": len(outcome.acked),
        "errors": dict(outcome.errors),
        "self_exits": {str(k): v for k, v in outcome.exits.items()},
        "failovers_s": [round(s, 2) for s in outcome.failovers_s],
        "checks": "stream gap-free, every acknowledged order once, leader = replica = replay",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--chaos", type=int, default=0)
    parser.add_argument(
        "--only",
        choices=["log", "domains", "failover", "e2e", "router", "chaos"],
        action="append",
    )
    parser.add_argument("--pipe", help=argparse.SUPPRESS)  # a child of the domains figure
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipe:
        _pipeline_child(args.urls, args.pipe, args.frames, args.window)
        return
    console = Console()
    results: dict[str, Any] = {"machine": machine(), "nats": "3 x nats-server 2.15.1, loopback"}
    only = set(
        args.only
        or ["log", "domains", "failover", "e2e", "router"] + (["chaos"] if args.chaos else [])
    )
    previous = RESULTS / "cluster.json"
    if args.only and previous.exists():  # a partial run updates its sections only
        kept = json.loads(previous.read_text())
        results = {**kept, "machine": results["machine"], "nats": results["nats"]}
    loads = results.setdefault("load_at_section_start", {})
    with (
        tempfile.TemporaryDirectory() as work,
        LocalCluster(Path(work) / "nats", nodes=3, lifetime_s=1800) as cluster,
    ):
        cluster.check_durability()
        if "log" in only:
            loads["log"] = os.getloadavg()
            results["log"] = log_figures(cluster.urls, _frames(args.frames), args.window)
        if "domains" in only:
            loads["domains"] = os.getloadavg()
            results["domains"] = domains_figures(cluster.urls, args.frames, args.window)
        if "failover" in only:
            loads["failover"] = os.getloadavg()
            results["failover"] = failover_figures(cluster.urls, args.kills, Path(work))
        if "e2e" in only:
            loads["e2e_ws_order_ack"] = os.getloadavg()
            results["e2e_ws_order_ack"] = e2e_figures(cluster.urls, args.orders, Path(work))
        if "router" in only:
            loads["router_http_order_ack"] = os.getloadavg()
            results["router_http_order_ack"] = router_figures(args.orders, Path(work))
        if "chaos" in only:
            loads["chaos"] = os.getloadavg()
            results["chaos"] = chaos_figures(cluster, args.chaos, Path(work) / "chaos")
    table = Table("figure", "value")
    for section, values in results.items():
        if section not in ("machine", "load_at_section_start"):
            table.add_row(section, str(values))
    finish(results, table, console, "cluster", quick=False)


if __name__ == "__main__":
    main()
