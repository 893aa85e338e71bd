"""``derivex cluster up``: a local 3-node NATS cluster and a leader + standby venue, started
by one command; the leader serves the API; SIGTERM stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def _processes_under(directory: Path) -> list[int]:
    """Pids whose command line names ``directory`` (servers' configs, nodes' data dirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(directory).encode() in command:
                found.append(int(entry.name))
    return found


def test_cluster_up_serves_and_stops_everything(tmp_path) -> None:
    directory = tmp_path / "cluster"
    process = subprocess.Popen(
        [sys.executable, "-m", "derivex.cli", "cluster", "up", "--directory", str(directory),
         "--lifetime", "240"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None and time.monotonic() < deadline and process.poll() is None:
            found = re.search(r"\[main-1\] +REST +(http://127\.0\.0\.1:\d+)/", "".join(lines))
            url = found.group(1) if found else None
            time.sleep(0.1)
        assert url, "".join(lines)
        assert "nats cluster: nats://127.0.0.1:" in "".join(lines)
        router = None  # the router over the venue's one domain, following its leader
        while router is None and time.monotonic() < deadline:
            found = re.search(r"\[router\] router: (http://127\.0\.0\.1:\d+)", "".join(lines))
            router = found.group(1) if found else None
            time.sleep(0.1)
        assert router, "".join(lines)
        with urllib.request.urlopen(f"{router}/api/v2/public/test", timeout=30) as reply:
            assert reply.status == 200
        with urllib.request.urlopen(f"{url}/api/v2/public/test", timeout=30) as reply:
            assert reply.status == 200
        assert len(_processes_under(directory)) >= 5  # 3 servers (+ wrappers), 2 nodes
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0
        time.sleep(0.5)
        assert "cluster stopped (0 node restarts)" in "".join(lines)
        assert _processes_under(directory) == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pid in _processes_under(directory):  # only what this test started
            os.kill(pid, signal.SIGKILL)


def _get(url: str, token: str | None = None) -> dict:
    import json

    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:  # an RPC error comes with a 400
        return json.loads(error.read())  # type: ignore[no-any-return]


def test_cluster_up_two_domains_moves_collateral_between_them(tmp_path) -> None:
    """Two domains and the relay: the demo account sends 100 USDC from alpha (domain 0) to
    beta (domain 1) on alpha's gateway; beta's gateway shows it credited."""
    directory = tmp_path / "cluster"
    process = subprocess.Popen(
        [sys.executable, "-m", "derivex.cli", "cluster", "up", "--directory", str(directory),
         "--domain", "alpha", "--domain", "beta", "--lifetime", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        venues: dict[str, tuple[str, str, str]] = {}
        deadline = time.monotonic() + 240
        while len(venues) < 2 and time.monotonic() < deadline and process.poll() is None:
            text = "".join(lines)
            for name in ("alpha", "beta"):
                url = re.search(rf"\[{name}-\d\] +REST +(http://127\.0\.0\.1:\d+)/", text)
                ident = re.search(rf"\[{name}-\d\] +client_id +(\S+)", text)
                secret = re.search(rf"\[{name}-\d\] +client_secret +(\S+)", text)
                if url and ident and secret:
                    venues[name] = (url.group(1), ident.group(1), secret.group(1))
            time.sleep(0.2)
        assert len(venues) == 2, "".join(lines)
        tokens = {}
        for name, (url, ident, secret) in venues.items():
            auth = _get(
                f"{url}/api/v2/public/auth?grant_type=client_credentials"
                f"&client_id={ident}&client_secret={secret}"
            )
            tokens[name] = auth["result"]["access_token"]
        alpha, beta = venues["alpha"][0], venues["beta"][0]
        sent = _get(
            f"{alpha}/api/v2/private/submit_transfer_to_domain?domain=1&amount=100",
            tokens["alpha"],
        )
        assert sent["result"]["transfer_id"] == 1, sent
        credited = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            table = _get(f"{beta}/api/v2/private/get_domain_transfers", tokens["beta"])
            credited = table["result"]["credited_in"]
            if credited == 100:
                break
            time.sleep(0.5)
        assert credited == 100, (table, "".join(lines)[-3000:])
        escrow = _get(f"{alpha}/api/v2/private/get_domain_transfers", tokens["alpha"])
        assert escrow["result"]["escrow_out"] == 100
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pid in _processes_under(directory):  # only what this test started
            os.kill(pid, signal.SIGKILL)
