"""``derivex serve`` as a user runs it: a subprocess on a free port with a fresh data
directory; ccxt trades with the printed demo key against books the demo agents keep alive;
``derivex keys create`` adds a key the running server accepts; metrics are exposed; logs
never carry a secret; a restart recovers the venue from its journal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import ccxt
import pytest

from derivex.gateway.serve import open_venue
from tests.gateway.conftest import unique_nonce

DERIVEX = [sys.executable, "-m", "derivex.cli"]
START_TIMEOUT_S = 300  # a cold kernel cache compiles first


class Served:
    def __init__(self, data: Path, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [*DERIVEX, "serve", "--data-dir", str(data), "--port", "0", "--log-level", "debug"],
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
        )
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "ccxt.deribit(" in line:
                break
        text = "".join(lines)
        found = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", text)
        assert found, f"no URL in {text!r}; log: {log.read_text()[-2000:]}"
        self.url = found.group(1)
        self.client_id = re.search(r"client_id\s+(\S+)", text).group(1)
        self.secret = re.search(r"client_secret\s+(\S+)", text).group(1)
        self.account = int(re.search(r"account (\d+)", text).group(1))

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

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def _wait_for(condition, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


def test_serve_demo_trade_keys_metrics_and_restart(data: Path) -> None:
    log = data / "serve.log"
    served = Served(data / "venue", log)
    try:
        client = served.client()
        perp = "BTC/USDC:USDC"
        assert any(m["option"] for m in client.markets.values())
        assert client.markets["ETH/USDC:USDC"]["swap"]
        book = _wait_for(
            lambda: (lambda b: b if b["bids"] and b["asks"] else None)(
                client.fetch_order_book(perp)
            )
        )
        assert book, "demo agents never filled the BTC book"
        assert book["bids"][0][0] < book["asks"][0][0]
        trades = _wait_for(lambda: client.fetch_trades(perp))
        assert trades, "the noise trader never traded"
        ticker = client.fetch_ticker(perp)
        assert ticker["markPrice"] > 0 and ticker["indexPrice"] > 0
        option = next(s for s, m in client.markets.items() if m["option"])
        assert _wait_for(lambda: client.fetch_ticker(option)["markPrice"])
        # well under the bids, yet inside the price band (1% over min_price, so a drift of
        # the mark cannot push it out; a buy below min_price is refused, 10005)
        band_low = ticker["info"]["min_price"]
        assert 0 < band_low < book["bids"][0][0]
        low = float(client.price_to_precision(perp, band_low * 1.01))
        order = client.create_order(perp, "limit", "buy", 0.01, low)
        assert order["status"] == "open"
        assert client.fetch_balance()["USDC"]["total"] == pytest.approx(1_000_000.0)

        created = subprocess.run(
            [
                *DERIVEX,
                "keys",
                "create",
                "--account",
                str(served.account),
                "--scope",
                "read",
                "--data-dir",
                str(data / "venue"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        reader_id = re.search(r"client_id\s+(\S+)", created.stdout).group(1)
        reader_secret = re.search(r"client_secret\s+(\S+)", created.stdout).group(1)
        reader = served.client(reader_id, reader_secret)
        assert [o["id"] for o in reader.fetch_open_orders(perp)] == [order["id"]]
        with pytest.raises(ccxt.PermissionDenied):
            reader.create_order(perp, "limit", "buy", 0.01, low)
        with pytest.raises(ccxt.AuthenticationError):
            served.client(reader_id, "wrong-secret").fetch_balance()

        with urllib.request.urlopen(served.url + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert (
            'derivex_gateway_requests_total{method="private/buy",outcome="ok",'
            'transport="http"} 1.0' in metrics
        )
        assert "derivex_trades_total" in metrics and "derivex_gateway_websockets" in metrics
    finally:
        assert served.stop() == 0
    text = log.read_text()
    assert '"event": "gateway listening"' in text and "snapshot written" in text
    for secret in (served.secret, reader_secret):
        assert secret not in text
    assert "sig=" not in text

    again = Served(data / "venue", log)
    try:
        assert again.client_id == served.client_id  # the demo key survives
        client = again.client()
        (still,) = [o for o in client.fetch_open_orders(perp) if o["id"] == order["id"]]
        assert still["price"] == low and still["amount"] == 0.01
        assert client.cancel_order(order["id"], perp)["status"] == "canceled"
    finally:
        assert again.stop() == 0
    assert "recovered to seq" in log.read_text()
    assert served.secret not in log.read_text()


def test_keys_cli_validates(tmp_path: Path) -> None:
    """``derivex keys`` refuses a bad scope, a directory with no venue and an account the
    venue does not have (exit 2 and the reason; ``output`` is stdout and stderr with any
    click), makes a key for one it has, and lists keys without their secrets. The typer app
    runs in this process (CliRunner): five interpreters importing derivex were most of this
    test's time; ``derivex serve``, which the other tests here start, runs the same entry
    point as a real process."""
    from typer.testing import CliRunner

    from derivex.cli import app

    def keys(*args: str) -> Any:
        return CliRunner().invoke(app, ["keys", *args, "--data-dir", str(tmp_path)])

    # (no such scope; admin exists: the operator dashboard's)
    bad = keys("create", "--account", "5", "--scope", "withdraw")
    assert bad.exit_code == 2 and "scopes" in bad.output
    nowhere = keys("create", "--account", "5")
    assert nowhere.exit_code == 2 and "no venue" in nowhere.output  # no account exists
    opened = open_venue(tmp_path, demo=False)  # accounts 0-2 system, 3 the demo account
    assert opened.venue.exchange.journal is not None
    opened.venue.exchange.journal.close()
    missing = keys("create", "--account", "5")
    assert missing.exit_code == 2 and "account 5 does not exist" in missing.output
    good = keys("create", "--account", "3", "--scope", "trade")
    assert good.exit_code == 0, good.output
    listed = keys("list")
    assert listed.exit_code == 0, listed.output
    secret = re.search(r"client_secret\s+(\S+)", good.stdout).group(1)  # type: ignore[union-attr]
    assert "account 3" in listed.stdout and secret not in listed.stdout
    assert "account 5" not in listed.stdout
    assert oct(os.stat(tmp_path / "keys.json").st_mode & 0o777) == "0o600"
