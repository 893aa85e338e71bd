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
