"""Replica agreement on the operator's engine health in cluster mode: a leader and a
replica (``derivex serve --cluster``) on a real 3-node NATS cluster, the demo agents
trading; ``private/admin_get_engine_health`` of the leader reports the replica's latest
state root equal to the leader's at the same stream seq (``gateway/replica_roots.py``), and
the seq compared moves on as the venue trades. Outside cluster mode it is None (n/a:
``tests/gateway/test_dashboard_api.py``)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from derivex.gateway.keys import KeyStore
from tests.cluster.test_serve_cluster import ServedNode
from tests.gateway.test_admin_control import _rpc, _token

pytestmark = pytest.mark.integration


def _agreement(url: str, token: str) -> Any:
    reply = _rpc(url, "private/admin_get_engine_health", token)
    assert "result" in reply, reply
    return reply["result"]["replica_agreement"]


def _page_shows_agreement(url: str, admin: Any, tmp_path: Path) -> None:
    """The operator page (Debian's chromium, when installed) shows the agreement."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        return  # (tests/ui is skipped alike: scripts/setup.sh installs it)
    sync_api = pytest.importorskip("playwright.sync_api")
    artifacts = Path(os.environ.get("DERIVEX_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url + "/operator")
            page.fill("#client-id", admin.client_id)
            page.fill("#client-secret", admin.client_secret)
            page.click("#login button")
            field = "[data-field='replica_agreement']"
            deadline = time.monotonic() + 20
            shown = ""
            while not shown.startswith("1 agree"):
                assert time.monotonic() < deadline, f"the page shows {shown!r}"
                time.sleep(0.2)
                shown = (page.text_content(field) if page.locator(field).count() else "") or ""
            page.screenshot(path=str(artifacts / "operator-cluster.png"), full_page=True)
        finally:
            browser.close()


def test_the_leader_reports_its_replica_agreeing(nats_cluster, domain, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data, log = tmp_path / "venue", tmp_path / "nodes.log"
    every = ("--root-every", "4")
    leader = ServedNode(data, log, nats_cluster.urls, domain, "leader", "a", *every)
    nodes = [leader]
    try:
        url = leader.banner()
        replica = ServedNode(data, log, nats_cluster.urls, domain, "replica", "r", *every)
        nodes.append(replica)
        admin = KeyStore(data).create(3, ("admin",), name="operator")
        time.sleep(1.5)  # the gateway reloads the key file
        token = _token(url, admin.client_id, admin.client_secret)
        deadline = time.monotonic() + 90
        seen: list[Any] = []
        while len({s["nodes"][0]["seq"] for s in seen}) < 2:
            assert time.monotonic() < deadline, f"no agreement reported: {seen[-3:]}"
            summary = _agreement(url, token)
            assert summary is not None  # cluster mode: never n/a
            if summary["replicas"]:
                assert summary["agree"] is True, summary
                assert [n["node"] for n in summary["nodes"]] == ["r"], summary
                assert all(n["agree"] for n in summary["nodes"]), summary
                seen.append(summary)
            time.sleep(0.5)
        print(f"\nreplica agreement: {seen[0]} ... {seen[-1]}")
        assert replica.process.poll() is None  # it never diverged
        _page_shows_agreement(url, admin, tmp_path)
    finally:
        for node in nodes:
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(10)
