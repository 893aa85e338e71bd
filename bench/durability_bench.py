"""Durability benchmark: WebSocket order entry against a journaled gateway with the default
group commit (``fsync="group"``: acknowledged after the ``fdatasync`` that covers it) and
with acknowledge-before-flush (``fsync="interval"``), in the same run.

    python bench/durability_bench.py [--seconds 3] [--runs 3] [--clients 4] [--depth 8]

Each policy's gateway runs in its own process with a fresh journal in a temporary
directory (``--journal-root``, default the system temp dir: name the disk you care about);
this process is the load generator (``gateway_bench``'s raw WebSocket client, closed loop,
``--depth`` orders in flight per client). Runs alternate between the policies; the median
run of each is reported. Also records a one-thread ``fdatasync`` latency sample of the same
disk and the machine load. Writes bench/results/durability.json. Never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from gateway_bench import _free_port, measure  # noqa: E402
from report import finish, machine  # noqa: E402

POLICIES = ("group", "interval")


def serve(port: int, keys_dir: str, journal_dir: str, fsync: str, accounts: int) -> None:
    import uvloop

    from derivex.core.config import EngineConfig
    from derivex.exchange import Exchange
    from derivex.gateway import Gateway, KeyStore, Venue
    from derivex.gateway.listing import list_all, perpetual
    from derivex.gateway.ratelimit import RateLimiter
    from derivex.gateway.server import tune_interpreter
    from derivex.gateway.telemetry import configure_logging
    from derivex.journal import Journal

    configure_logging(level=30)
    journal = Journal(journal_dir, fsync=fsync)
    exchange = Exchange(
        EngineConfig(risk_checks=False, gas_refill_per_ms=10**6, gas_max=10**9), journal=journal
    )
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
        tune_interpreter()
        print("READY", url, flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def start(fsync: str, root: str, accounts: int) -> tuple[subprocess.Popen[str], str, str]:
    port = _free_port()
    work = tempfile.mkdtemp(prefix=f"durability-{fsync}-", dir=root)
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            fsync,
            "--port",
            str(port),
            "--work",
            work,
            "--accounts",
            str(accounts),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY"):
            break
        if not line and process.poll() is not None:
            raise RuntimeError(f"{fsync} server exited")
    return process, f"http://127.0.0.1:{port}", work


def fdatasync_sample(root: str, count: int = 200) -> dict[str, float]:
    """p50/p99 of a 128-byte append + fdatasync on the journal's disk."""
    samples = []
    with tempfile.NamedTemporaryFile(dir=root) as handle:
        for _ in range(count):
            os.write(handle.fileno(), bytes(128))
            began = time.perf_counter()
            os.fdatasync(handle.fileno())
            samples.append(time.perf_counter() - began)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--journal-root", default=tempfile.gettempdir())
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--accounts", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.work, str(Path(args.work) / "journal"), args.serve, args.accounts)
        return
    record_machine = machine(journal_root=args.journal_root)
    servers = {policy: start(policy, args.journal_root, args.accounts) for policy in POLICIES}
    runs: dict[str, list[dict[str, float]]] = {policy: [] for policy in POLICIES}
    try:
        for _ in range(args.runs):
            for policy, (_, url, work) in servers.items():
                keys = json.loads((Path(work) / "keys.json").read_text())
                runs[policy].append(
                    measure(
                        url,
                        "ws",
                        args.clients,
                        args.seconds,
                        args.max_requests,
                        keys[: args.clients],
                        args.depth,
                    )
                )
    finally:
        for process, _, work in servers.values():
            process.terminate()
            process.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)
    results = {}
    table = Table(
        title=f"WebSocket orders, {args.clients} clients x {args.depth} in flight, "
        f"{args.seconds:g} s, median of {args.runs}"
    )
    for column in ("policy", "orders/s", "p50 us", "p99 us", "runs orders/s"):
        table.add_column(column)
    for policy in POLICIES:
        ordered = sorted(runs[policy], key=lambda run: run["requests_per_s"])
        median = ordered[len(ordered) // 2]
        results[policy] = {
            **median,
            "runs_orders_per_s": [round(r["requests_per_s"]) for r in runs[policy]],
            "p99_us_runs": [round(r["p99_us"]) for r in runs[policy]],
        }
        table.add_row(
            policy,
            f"{median['requests_per_s']:.0f}",
            f"{median['p50_us']:.0f}",
            f"{median['p99_us']:.0f}",
            str(results[policy]["runs_orders_per_s"]),
        )
    record = {
        "benchmark": "durability: WebSocket order entry, group commit vs ack-before-flush",
        "config": {
            "clients": args.clients,
            "depth": args.depth,
            "seconds": args.seconds,
            "runs": args.runs,
            "journal_root": args.journal_root,
            "median_of_runs": True,
        },
        "policies": {
            "group": "acknowledged after the fdatasync covering the batch (default)",
            "interval": "acknowledged when written; fdatasync every 5 ms",
        },
        "results": results,
        "fdatasync_128b": fdatasync_sample(args.journal_root),
        "group_vs_interval_throughput": round(
            results["group"]["requests_per_s"] / results["interval"]["requests_per_s"], 3
        ),
        "machine": record_machine,
    }
    finish(record, table, Console(), "durability", False)


if __name__ == "__main__":
    main()
