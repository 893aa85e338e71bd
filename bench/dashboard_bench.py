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
notifications queued (``derivex_gateway_notifications``). With ``--book-rate N`` (default
25) a driver client places and cancels an order N times a second on the perpetual during
both client phases (the demo agents alone change the book about 3 times a second), and the
page's applied book changes and notifications per second are reported. CPU comes from /proc (user +
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


class BookDriver:
    """Place and cancel a 0.01 BTC bid 1% above the band's low ``rate`` times a second on
    the perpetual (a thread with its own WebSocket) until ``stop``."""

    def __init__(self, url: str, client_id: str, secret: str, rate: float) -> None:
        import threading

        self.url, self.client_id, self.secret, self.rate = url, client_id, secret, rate
        self.done = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> BookDriver:
        if self.rate > 0:
            self.thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def run(self) -> None:
        from websockets.sync.client import connect

        with connect(self.url.replace("http://", "ws://") + "/ws/api/v2") as ws:
            ids = iter(range(1, 1 << 62))

            def call(method: str, **params: Any) -> Any:
                ident = next(ids)
                ws.send(
                    json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
                )
                while True:
                    reply = json.loads(ws.recv(timeout=10))
                    if reply.get("id") == ident:
                        return reply.get("result")

            call(
                "public/auth",
                grant_type="client_credentials",
                client_id=self.client_id,
                client_secret=self.secret,
            )
            low = call("public/ticker", instrument_name=PERP)["min_price"]
            price = round(low * 1.01 * 2) / 2 + 0.5
            start, order = time.monotonic(), None
            while not self.done.is_set():
                if order is None:
                    placed = call("private/buy", instrument_name=PERP, amount=0.01, price=price)
                    order = placed["order"]["order_id"] if placed else None
                else:
                    call("private/cancel", order_id=order)
                    order = None
                self.sent += 1
                time.sleep(max(0.0, start + self.sent / self.rate - time.monotonic()))
            if order is not None:
                call("private/cancel", order_id=order)


def page_book(page: Any) -> tuple[int, int]:
    return page.evaluate(
        "() => { const d = document.getElementById('ladder').dataset;"
        " return [Number(d.changeId || 0), Number(d.updates || 0)]; }"
    )


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
        book_before = page_book(page)
        start = time.monotonic()
        server = measure_server(pid, url, seconds, lambda s: page.wait_for_timeout(s * 1000))
        elapsed = time.monotonic() - start
        book_after = page_book(page)
        result = {
            "first_book_ms": first_book_ms,
            "browser_cpu_per_s": (chromium_cpu(profile) - browser_cpu) / elapsed,
            "frames_per_s": (frames["count"] - count) / elapsed,
            "bytes_per_s": (frames["bytes"] - size) / elapsed,
            "book_changes_per_s": (book_after[0] - book_before[0]) / elapsed,
            "book_notifications_per_s": (book_after[1] - book_before[1]) / elapsed,
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
    parser.add_argument("--book-rate", type=float, default=25.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="derivex-bench-dash-"))
    process, url, client_id, secret = start_server(data / "venue")
    try:
        time.sleep(3)
        results: dict[str, Any] = {
            "load": os.getloadavg(),
            "book_rate": args.book_rate,
            "baseline": measure_server(process.pid, url, args.seconds),
        }
        driver = BookDriver(url, client_id, secret, args.book_rate).start()
        try:
            results["dashboard"] = dashboard(process.pid, url, client_id, secret, args.seconds)
            results["ccxt_pro"] = ccxt_pro(process.pid, url, args.seconds)
        finally:
            driver.stop()
        results["load_after"] = os.getloadavg()
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
