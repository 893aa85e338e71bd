"""``derivex serve --workers 2`` as a user runs it: the multi-process venue (engine, journal
writer, market data and two Deribit gateway workers sharing one port over shared-memory
rings) answers real ccxt clients; keys stay separate; a killed gateway worker is restarted
without stopping the engine and catches up; SIGTERM stops everything cleanly (status 0,
no shared-memory segment left) with every worker's replica equal to the engine's state;
a restart resumes the venue from the journal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ccxt

from tests.gateway.conftest import unique_nonce

DERIVEX = [sys.executable, "-m", "derivex.cli"]
START_TIMEOUT_S = 420  # a cold kernel cache compiles first
PERPETUAL = "BTC/USDC:USDC"


class ServedWorkers:
    def __init__(self, data: Path, log: Path, port: int) -> None:
        self.log, self.port = log, port
        self.offset = log.stat().st_size if log.exists() else 0  # this run's records only
        self.process = subprocess.Popen(
            [*DERIVEX, "serve", "--workers", "2", "--data-dir", str(data), "--port", str(port)],
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
        self.client_id = re.search(r"client_id\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        self.secret = re.search(r"client_secret\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        self.serving(0, 0)
        self.serving(1, 0)

    def serving(self, worker: int, generation: int) -> dict:
        """The log record of worker ``worker`` generation ``generation`` serving."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.log.read_text()[self.offset :].splitlines():
                if '"gateway worker serving"' not in line:
                    continue
                record = json.loads(line)
                if record["worker"] == worker and record["generation"] == generation:
                    return record
            time.sleep(0.2)
        raise AssertionError(
            f"worker {worker}.{generation} never served: {self.log.read_text()[-3000:]}"
        )

    def client(self, key: str | None = None, secret: str | None = None) -> ccxt.deribit:
        client = ccxt.deribit(
            {
                "apiKey": key or self.client_id,
                "secret": secret or self.secret,
                "urls": {"api": {"rest": self.url}},
                "enableRateLimit": False,
                "nonce": unique_nonce,
            }
        )
        client.load_markets()
        return client

    def stop(self) -> tuple[int, dict]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        summary = re.search(r"derivex stopped: (\{.*\})", out)
        assert summary, out
        return self.process.returncode, json.loads(summary.group(1))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _new_key(data: Path, account: int) -> tuple[str, str]:
    """``derivex keys create`` while the venue runs (the workers reload the key file)."""
    made = subprocess.run(
        [*DERIVEX, "keys", "create", "--data-dir", str(data), "--account", str(account)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    found = re.search(r"client_id\s+(\S+).*?client_secret\s+(\S+)", made.stdout, re.S)
    assert found, made.stdout
    return found.group(1), found.group(2)


def _segments(port: int) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if name.startswith(f"dx.derivex-{port}.")]


def test_multi_process_serve_trades_restarts_a_worker_and_resumes(tmp_path: Path) -> None:
    data, log, port = tmp_path / "venue", tmp_path / "serve.log", _free_port()
    served = ServedWorkers(data, log, port)
    try:
        alice = served.client()
        markets = alice.load_markets()
        assert PERPETUAL in markets and any(m["option"] for m in markets.values())
        # the dashboard from whichever worker takes each new connection: the same files
        pages = set()
        for _ in range(6):
            for path in ("/", "/operator", "/ui/trader.js"):
                with urllib.request.urlopen(served.url + path, timeout=10) as response:
                    assert response.status == 200
                    pages.add((path, response.read()))
        assert len(pages) == 3
        # far below the demo makers' quotes (around the ~60,000 index), yet inside the price
        # band (1% over the ticker's min_price; a buy below min_price is refused): it rests
        deadline = time.monotonic() + 10
        while not (band_low := alice.fetch_ticker(PERPETUAL)["info"]["min_price"]):
            assert time.monotonic() < deadline, "the perpetual never got a mark"
            time.sleep(0.05)
        low = float(alice.price_to_precision(PERPETUAL, band_low * 1.01))
        resting = alice.create_order(PERPETUAL, "limit", "buy", 0.01, low)
        assert resting["status"] == "open"
        # several fresh connections: SO_REUSEPORT spreads them over both workers, and
        # each answers from its own replica (a worker applies others' frames every ms)
        for _ in range(6):
            fresh = served.client()
            deadline = time.monotonic() + 5
            while [o["id"] for o in fresh.fetch_open_orders(PERPETUAL)] != [resting["id"]]:
                assert time.monotonic() < deadline, "a worker never saw the order"
                time.sleep(0.01)
        assert [low, 0.01] in alice.fetch_order_book(PERPETUAL, 100)["bids"]

        # the demo makers quote (worker 0 runs the agents): a second key, on the noise
        # trader's account, sells into their bids through whichever worker it reaches
        noise = json.loads((data / "serve.json").read_text())["noise_account"]
        bob = served.client(*_new_key(data, noise))
        assert resting["id"] not in [o["id"] for o in bob.fetch_open_orders(PERPETUAL)]
        assert alice.fetch_order_book(PERPETUAL)["bids"][0][0] > low  # the makers' bid
        sold = bob.create_order(PERPETUAL, "market", "sell", 0.01)
        assert sold["status"] == "closed" and sold["filled"] == 0.01
        mine = [t for t in bob.fetch_my_trades(PERPETUAL) if t["order"] == sold["id"]]
        assert mine and all(t["side"] == "sell" for t in mine)
        assert all(t["order"] != sold["id"] for t in alice.fetch_my_trades(PERPETUAL))

        # a crashed gateway worker is restarted; the engine goes on
        victim = served.serving(1, 0)["pid"]
        os.kill(victim, signal.SIGKILL)
        reborn = served.serving(1, 1)
        assert reborn["pid"] != victim
        second = alice.create_order(PERPETUAL, "limit", "buy", 0.02, low)
        for _ in range(6):
            fresh = served.client()
            deadline = time.monotonic() + 5
            while second["id"] not in [o["id"] for o in fresh.fetch_open_orders(PERPETUAL)]:
                assert time.monotonic() < deadline, "a worker never saw the second order"
                time.sleep(0.01)
    finally:
        status, summary = served.stop()
    assert status == 0 and summary["failure"] is None, summary
    assert summary["restarts"] and summary["restarts"][1] == 1, summary
    engine_hash = summary["engine"]["state_hash"]
    finals = [w for w in summary["workers"] if w["state_hash"] is not None]
    assert {(w["index"], w["generation"]) for w in finals} >= {(0, 0), (1, 1)}
    assert all(w["state_hash"] == engine_hash and w["frames_verified"] > 0 for w in finals)
    assert _segments(port) == []
    assert '"gateway worker stopping"' in log.read_text()

    # the journal has it all: a restart resumes the venue (the open orders are there)
    served = ServedWorkers(data, log, port)
    try:
        alice = served.client()
        assert sorted(o["id"] for o in alice.fetch_open_orders(PERPETUAL)) == sorted(
            [resting["id"], second["id"]]
        )
    finally:
        status, summary = served.stop()
    assert status == 0 and summary["failure"] is None, summary
    assert summary["engine"]["seq"] > 0
    assert _segments(port) == []
