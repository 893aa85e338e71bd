"""Compile (or load) derivex's kernels once, one process at a time, before anything runs in
parallel (scripts/setup.sh runs it): the engine and the per-command door; then a short
``derivex serve --workers 2`` with the demo agents trading (the runtime's rings, bus and
book snapshots, the journal, the pricing service, snapshots at its clean stop); then
``derivex verify`` of what it wrote (the journal walk and the state roots). Each step is
bounded; a step that fails is reported and the others still run (the kernels it did
compile stay cached).

    python scripts/warm.py [--serve-seconds 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v2/public/test", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-seconds", type=float, default=8.0)
    parser.add_argument("--start-timeout", type=float, default=900.0)
    args = parser.parse_args()
    started = time.monotonic()

    import numpy  # noqa: F401  (imported before the kernels, as in every process)

    from derivex import Engine
    from derivex.core.records import command_array

    Engine().process(command_array(1))
    print(f"warm: engine {time.monotonic() - started:.0f} s", flush=True)
    from derivex.door import load_binding

    load_binding()  # the per-command door's compiled entry point (Exchange.place etc.)
    print(f"warm: door {time.monotonic() - started:.0f} s", flush=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="derivex-warm-") as tmp:
        data = Path(tmp) / "venue"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                *(str(BIN / "derivex"), "serve", "--workers", "2"),
                *("--port", str(port), "--data-dir", str(data)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + args.start_timeout
            while not _serves(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    print("warm: serve did not come up", file=sys.stderr)
                    failed += 1
                    break
                time.sleep(0.5)
            else:
                time.sleep(args.serve_seconds)  # the agents trade, the pricing runs
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(120)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        print(f"warm: serve {time.monotonic() - started:.0f} s", flush=True)
        if data.exists():
            verified = subprocess.run(
                [str(BIN / "derivex"), "verify", str(data / "journal")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=900,
                env=os.environ,
            )
            failed += verified.returncode != 0
            print(f"warm: verify {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
