"""The operator page with ``derivex serve --workers 2``: whichever gateway worker serves the
page's WebSocket (the kernel picks one per connection), it shows the index sources (the
market feed runs in worker 0; the other workers walk its INDEX commands), and an index
override sequenced by either worker is followed by the feed in worker 0 (the index stays
at the operator's price instead of being pulled back). Screenshot:
``operator-workers.png``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from derivex.gateway.keys import KeyStore
from tests.gateway.test_admin_control import _rpc, _token
from tests.gateway.test_serve_workers import ServedWorkers, _free_port
from tests.ui.conftest import watch_page
from tests.ui.test_dashboard import PERP, log_in, wait_for

pytestmark = pytest.mark.integration
PAGES = 12  # fresh connections tried until both workers served one (1 in 2048 to miss)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedWorkers, Path]]:
    root = tmp_path_factory.mktemp("workers")
    served = ServedWorkers(root / "venue", root / "serve.log", _free_port())
    try:
        yield served, root / "venue"
    finally:
        if served.process.poll() is None:
            served.stop()


def _sources_and_process(browser: Any, served: ServedWorkers, admin: Any) -> tuple[int, int]:
    """A fresh page on /operator: (rows of the index sources table, serving process)."""
    watched = watch_page(browser, served)  # type: ignore[arg-type]
    page = watched.page
    try:
        page.goto(served.url + "/operator")
        page.wait_for_selector(".status.open")
        log_in(page, admin.client_id, admin.client_secret)
        page.wait_for_selector("[data-field='served_by']")
        # the feed reports once a second: a worker shows the sources of its latest walk
        wait_for(
            lambda: page.locator("#sources tr:not(.empty)").count() >= 10,
            10,
            f"index sources on {page.text_content('[data-field=served_by]')}",
        )
        process = int((page.text_content("[data-field='served_by']") or "").split()[-1])
        rows = page.locator("#sources tr:not(.empty)").count()
        if rows:
            page.screenshot(path=str(served.log.parent / "operator-workers.png"), full_page=True)
    finally:
        page.close()
    watched.check()
    return rows, process


def test_every_worker_shows_the_index_sources_and_follows_an_override(
    browser: Any, workers: tuple[ServedWorkers, Path], artifacts: Path
) -> None:
    served, data = workers
    # no wait: every worker re-reads the changed key file at the key's first use
    admin = KeyStore(data).create(3, ("admin",), name="operator")
    processes: dict[int, int] = {}
    for _ in range(PAGES):
        rows, process = _sources_and_process(browser, served, admin)
        processes[process] = rows
        if len(processes) == 2:
            break
    assert len(processes) == 2, f"one worker served all {PAGES} pages: {processes}"
    assert all(rows >= 10 for rows in processes.values()), processes  # BTC and ETH, 5 each
    (served.log.parent / "operator-workers.png").replace(artifacts / "operator-workers.png")
    # an override through whichever worker answers; the feed in worker 0 goes on from it
    access = _token(served.url, admin.client_id, admin.client_secret)
    index = _rpc(served.url, "public/ticker", instrument_name=PERP)["result"]["index_price"]
    target = round(index * 0.9)
    reply = _rpc(served.url, "private/admin_set_index", access, index_name="btc_usdc", price=target)
    assert reply["result"]["price"] == target, reply
    time.sleep(3)  # three feed steps
    after = _rpc(served.url, "public/ticker", instrument_name=PERP)["result"]["index_price"]
    assert abs(after / target - 1) < 0.01, (index, target, after)
