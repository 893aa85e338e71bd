"""Dashboard benchmark: page load to first rendered book, the browser's CPU per second at
the demo's update rate, and the server-side cost of one dashboard client compared with one
ccxt.pro client in the same run.

    python bench/dashboard_bench.py [--seconds 10]

Starts ``derivex serve`` (demo agents on, a fresh data directory, ``--fsync none``) and
measures, each for ``--seconds``: the server process's CPU with no client (baseline); with
one trader page in Debian's chromium (driven by playwright, logged in with the demo key,
BTC perpetual and the first options expiry on screen): the server's CPU, chromium's CPU
(every process of its profile), and the WebSocket frames and bytes the page received; with
one ccxt.pro client watching the same perpetual's book and trades: the server's CPU and the
notifications queued (``derivex_gateway_notifications``). CPU comes from /proc (user +
system time), so it includes the demo agents' and the oracle's work in the server: compare
against the baseline of the same run. Prints a table and writes
bench/results/dashboard.json. Never part of the test run; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
PERP = "BTC_USDC-PERPETUAL"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def chromium_cpu(profile: str) -> float:
    """CPU seconds of every live process whose command line names ``profile``."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            if profile.encode() in command:
                total += cpu_seconds(int(entry))
        except OSError:
            continue
    return total


def notifications(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^derivex_gateway_notifications_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def start_server(data: Path) -> tuple[subprocess.Popen[str], str, str, str]:
    command = [sys.executable, "-m", "derivex.cli", "serve", "--data-dir", str(data)]
    command += ["--port", "0", "--fsync", "none", "--log-level", "warning"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    text = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "ccxt.deribit(" not in text:
        text += process.stdout.readline()
    url = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", text).group(1)  # type: ignore[union-attr]
    client_id = re.search(r"client_id\s+(\S+)", text).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret\s+(\S+)", text).group(1)  # type: ignore[union-attr]
    return process, url, client_id, secret


def measure_server(pid: int, url: str, seconds: float, wait: Any = time.sleep) -> dict[str, float]:
    """``wait(seconds)``: how to spend the time (a browser's events are only delivered
    while playwright waits)."""
    cpu, sent, start = cpu_seconds(pid), notifications(url), time.monotonic()
    wait(seconds)
    elapsed = time.monotonic() - start
    return {
        "server_cpu_per_s": (cpu_seconds(pid) - cpu) / elapsed,
        "notifications_per_s": (notifications(url) - sent) / elapsed,
    }


def dashboard(pid: int, url: str, client_id: str, secret: str, seconds: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    frames = {"count": 0, "bytes": 0}

    def on_socket(ws: Any) -> None:
        def received(payload: Any) -> None:
            frames["count"] += 1
            frames["bytes"] += len(payload)

        ws.on("framereceived", received)

    profile = tempfile.mkdtemp(prefix="derivex-bench-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            headless=True,
            args=["--disable-gpu", "--no-first-run", "--disable-background-networking"],
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.on("websocket", on_socket)
        page.goto(f"{url}/?instrument={PERP}")
        page.wait_for_function("performance.getEntriesByName('first-book').length > 0")
        first_book_ms = page.evaluate("performance.getEntriesByName('first-book')[0].startTime")
        page.fill("#client-id", client_id)
        page.fill("#client-secret", secret)
        page.click("#login button")
        page.wait_for_selector("#summary dd")
        page.wait_for_selector("#chain td.pick")
        page.wait_for_timeout(2000)  # settle
        browser_cpu, count, size = chromium_cpu(profile), frames["count"], frames["bytes"]
        start = time.monotonic()
        server = measure_server(pid, url, seconds, lambda s: page.wait_for_timeout(s * 1000))
        elapsed = time.monotonic() - start
        result = {
            "first_book_ms": first_book_ms,
            "browser_cpu_per_s": (chromium_cpu(profile) - browser_cpu) / elapsed,
            "frames_per_s": (frames["count"] - count) / elapsed,
            "bytes_per_s": (frames["bytes"] - size) / elapsed,
            **server,
        }
        context.close()
    shutil.rmtree(profile, ignore_errors=True)
    return result


def ccxt_pro(pid: int, url: str, seconds: float) -> dict[str, Any]:
    import ccxt.pro

    async def run() -> dict[str, Any]:
        ws_url = url.replace("http://", "ws://") + "/ws/api/v2"
        client = ccxt.pro.deribit({"urls": {"api": {"rest": url, "ws": ws_url}}})
        await client.load_markets()
        symbol = client.markets_by_id[PERP][0]["symbol"]
        updates = 0
        stop = time.monotonic() + seconds + 2

        async def watch(function: Any) -> None:
            nonlocal updates
            while time.monotonic() < stop:
                await function(symbol)
                updates += 1

        tasks = [
            asyncio.ensure_future(watch(f)) for f in (client.watch_order_book, client.watch_trades)
        ]
        await asyncio.sleep(2)  # settle
        before = updates
        server = await asyncio.to_thread(measure_server, pid, url, seconds)
        result = {"client_updates_per_s": (updates - before) / seconds, **server}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        return result

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="derivex-bench-dash-"))
    process, url, client_id, secret = start_server(data / "venue")
    try:
        time.sleep(3)
        results = {
            "load": os.getloadavg(),
            "baseline": measure_server(process.pid, url, args.seconds),
            "dashboard": dashboard(process.pid, url, client_id, secret, args.seconds),
            "ccxt_pro": ccxt_pro(process.pid, url, args.seconds),
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    for name in ("baseline", "dashboard", "ccxt_pro"):
        row = results[name]
        print(f"{name:10s} " + "  ".join(f"{k}={v:.3g}" for k, v in row.items()))
    print(f"load average {results['load']}")
    out = Path(__file__).parent / "results" / "dashboard.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
