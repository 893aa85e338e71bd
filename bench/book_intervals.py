"""Book notifications a second on ``book.X.100ms`` against ``book.X.raw``, on one connection
over the same seconds: ``derivex serve`` with its demo agents, plus a driver placing and
cancelling a bid about 25 times a second (docs/dashboard.md, "Book interval").

    .venv/bin/python bench/book_intervals.py [--seconds 10]

Prints, per channel, notifications a second and the first and last ``change_id`` seen.
Everything binds to 127.0.0.1, port 0; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from websockets.sync.client import connect

PERP = "BTC_USDC-PERPETUAL"


def _call(ws: Any, ident: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params}))
    while True:
        reply = json.loads(ws.recv(timeout=10))
        if reply.get("id") == ident:
            return reply  # type: ignore[no-any-return]


def _auth(ws: Any, client_id: str, secret: str) -> None:
    params = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    assert "result" in _call(ws, 1, "public/auth", params)


def _drive(url: str, credentials: tuple[str, str], stop: threading.Event) -> None:
    with connect(url) as ws:
        _auth(ws, *credentials)
        ident = 100
        while not stop.is_set():
            ident += 2
            order = {"instrument_name": PERP, "amount": 0.0001, "type": "limit"}
            ticker = _call(ws, ident, "public/ticker", {"instrument_name": PERP})["result"]
            order["price"] = round(ticker["min_price"] * 1.01)
            placed = _call(ws, ident + 1, "private/buy", order)["result"]["order"]
            _call(ws, ident + 2, "private/cancel", {"order_id": placed["order_id"]})
            time.sleep(0.04)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    seconds = parser.parse_args().seconds
    data = tempfile.mkdtemp(prefix="derivex-book-") + "/venue"
    command = [sys.executable, "-m", "derivex.cli", "serve", "--data-dir", data, "--port", "0"]
    command += ["--fsync", "none", "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        text = ""
        while "ccxt.deribit(" not in text:
            line = server.stdout.readline()
            assert line, "derivex serve did not start"
            text += line
        found = re.search(r"REST\s+http://(127\.0\.0\.1:\d+)/", text)
        client_id = re.search(r"client_id\s+(\S+)", text)
        secret = re.search(r"client_secret\s+(\S+)", text)
        assert found and client_id and secret, text
        url = f"ws://{found.group(1)}/ws/api/v2"
        credentials = (client_id.group(1), secret.group(1))
        channels = [f"book.{PERP}.100ms", f"book.{PERP}.raw"]
        counts = dict.fromkeys(channels, 0)
        ids: dict[str, list[int]] = {channel: [] for channel in channels}
        stop = threading.Event()
        with connect(url) as ws:
            _auth(ws, *credentials)
            _call(ws, 2, "private/subscribe", {"channels": channels})
            driver = threading.Thread(target=_drive, args=(url, credentials, stop))
            driver.start()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    message = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                channel = message.get("params", {}).get("channel")
                if channel in counts:
                    counts[channel] += 1
                    ids[channel].append(message["params"]["data"]["change_id"])
            stop.set()
            driver.join()
        for channel in channels:
            seen = ids[channel] or [0]
            rate = counts[channel] / seconds
            print(f"{channel}: {rate:.1f} notifications/s, change ids {seen[0]}..{seen[-1]}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


if __name__ == "__main__":
    main()
