"""A real ``derivex serve`` (demo agents on, a fresh data directory, a free loopback port)
and Debian's chromium driven by the PyPI ``playwright`` package (``executable_path``; a
browser is never downloaded). Each page records its console errors, uncaught exceptions and
every request that is not to the served origin; ``checked_page`` fails the test on any.

Screenshots go to ``$DERIVEX_ARTIFACTS`` if set, else to pytest's temporary directory (the
path is printed)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (scripts/setup.sh)", allow_module_level=True)

DERIVEX = [sys.executable, "-m", "derivex.cli"]
START_TIMEOUT_S = 300  # a cold kernel cache compiles first
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Served:
    """``derivex serve`` in a subprocess; ``restart`` stops it and starts it again on the
    same port and data directory (the journal recovers the venue)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        log = (self.data.parent / "serve.log").open("ab")
        command = [*DERIVEX, "serve", "--data-dir", str(self.data), "--port", str(self.port)]
        command += ["--fsync", "none", "--log-level", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
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
        found = re.search(r"REST\s+(http://127\.0\.0\.1:(\d+))/", text)
        assert found, f"no URL in {text!r}"
        self.url, self.port = found.group(1), int(found.group(2))
        self.client_id = re.search(r"client_id\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        self.secret = re.search(r"client_secret\s+(\S+)", text).group(1)  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("ui") / "venue")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("DERIVEX_ARTIFACTS")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {path}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        profile = tempfile.mkdtemp(prefix="derivex-chromium-")
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Watched:
    """A page and what it did wrong: console errors, exceptions, requests off the origin."""

    page: Any
    origin: str
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], self.outside


def watch_page(browser: Any, served: Served) -> Watched:
    page = browser.new_page()
    watched = Watched(page, served.url)
    ws_origin = served.url.replace("http://", "ws://", 1)

    def on_console(message: Any) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text}")

    def on_request(request: Any) -> None:
        url = request.url
        if not (url.startswith((served.url + "/", ws_origin + "/")) or url.startswith("data:")):
            watched.outside.append(url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"exception: {error}"))
    page.on("request", on_request)
    page.on("websocket", lambda ws: on_request(ws))
    return watched


@pytest.fixture
def checked_page(browser: Any, served: Served) -> Iterator[Watched]:
    """A fresh page; the test fails if it logged an error or left the origin."""
    watched = watch_page(browser, served)
    try:
        yield watched
    finally:
        watched.page.close()
    watched.check()
