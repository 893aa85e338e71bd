"""The operator's crash drill against a real ``derivex serve`` process: the demo account
levers up on the BTC perpetual, the operator sets the BTC index to half from the page's
"Set index" control (``private/admin_set_index``: an INDEX command with the operator's
source and a TIME command, journaled like any other), the demo account is liquidated, and
the page's liquidation counts by instrument and stage equal the LIQUIDATION events of the
journal replayed through the engine after the server stopped. A trading key cannot set the
index (13021). The page shows the index sources of the process that serves it, near the
crash price after the override (the simulated feed goes on from there). Screenshot:
``operator-crash-serve.png``."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from derivex.core.records import EventKind
from derivex.export import stream_journal
from derivex.gateway.catalog import Catalog
from derivex.gateway.keys import KeyStore
from derivex.gateway.oversight import ACCOUNT_STAGES, STAGES
from tests.ui.conftest import Served, Watched
from tests.ui.test_dashboard import PERP, log_in, rpc, token, wait_for
from tests.ui.test_operator import _page_totals

pytestmark = pytest.mark.integration
LEVERAGE = 2.2  # position notional / equity: a halving of the index leaves no equity


def _call(served: Served, method: str, params: dict[str, Any], access: str) -> dict[str, Any]:
    """The whole JSON-RPC reply (``result`` or ``error``)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {access}"}
    request = urllib.request.Request(served.url + "/api/v2", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:  # JSON-RPC errors may come with a 4xx status
        return json.loads(error.read())  # type: ignore[no-any-return]


def _lever_up(served: Served, access: str) -> float:
    """Market buys of the demo account until its long is LEVERAGE x its equity (the makers
    quote again every half second); returns the position's size."""
    equity = rpc(served, "private/get_account_summary", {"currency": "USDC"}, access)["equity"]
    index = rpc(served, "public/ticker", {"instrument_name": PERP})["index_price"]
    target = LEVERAGE * equity / index
    deadline = time.monotonic() + 60
    size = 0.0
    while size < target:
        assert time.monotonic() < deadline, f"levered only to {size} of {target}"
        amount = round(min(5.0, target - size + 0.001), 3)
        reply = _call(
            served,
            "private/buy",
            {"instrument_name": PERP, "amount": amount, "type": "market"},
            access,
        )
        assert "result" in reply or reply["error"]["code"] in (10009, 11044, 10041), reply
        size = rpc(served, "private/get_position", {"instrument_name": PERP}, access)["size"]
        time.sleep(0.2)
    return float(size)


def _journal_counts(data: Path) -> Counter[tuple[str, str]]:
    """LIQUIDATION events of the journal replayed through the engine, per (instrument name
    or "" for the account-wide stages, stage name): what the page counts."""
    names = {spec.instrument: spec.name for spec in Catalog.load(data / "instruments.json")}
    counts: Counter[tuple[str, str]] = Counter()

    def on_batch(commands: Any, events: Any) -> None:
        for event in events[events["kind"] == EventKind.LIQUIDATION]:
            stage = int(event["a"])
            name = "" if stage in ACCOUNT_STAGES else names[int(event["instrument"])]
            counts[(name, STAGES[stage])] += 1

    stream_journal(data / "journal", on_batch)
    return counts


def test_crash_from_the_operator_page_liquidates_and_the_counts_equal_the_journal(
    checked_page: Watched, served: Served, artifacts: Path
) -> None:
    keys = KeyStore(served.data)
    admin = keys.create(3, ("admin",), name="operator")
    demo = token(served, served.client_id, served.secret)
    index_before = rpc(served, "public/ticker", {"instrument_name": PERP})["index_price"]
    # a trading key cannot reach the override
    refused = _call(served, "private/admin_set_index", {"index_name": "btc_usdc", "price": 1}, demo)
    assert refused.get("error", {}).get("code") == 13021, refused
    page = checked_page.page
    page.goto(served.url + "/operator")
    page.wait_for_selector(".status.open")
    log_in(page, admin.client_id, admin.client_secret)
    page.wait_for_selector("#fund-balance[data-value]")
    # the index sources of the market feed this process runs
    wait_for(lambda: page.locator("#sources tr:not(.empty)").count() >= 5, 10, "index sources")
    size = _lever_up(served, demo)
    crash = round(index_before / 2)
    page.select_option("#control-index", "btc_usdc")
    page.fill("#control-index-price", str(crash))
    page.click("#set-index")
    page.wait_for_selector("#control-result[data-ok]")
    assert page.get_attribute("#control-result", "data-ok") == "true", page.text_content(
        "#control-result"
    )
    reported = int(page.get_attribute("#control-result", "data-liquidations") or 0)
    assert reported > 0, page.text_content("#control-result")
    ticker = rpc(served, "public/ticker", {"instrument_name": PERP})
    assert ticker["index_price"] < index_before * 0.6, ticker  # the feed went on from there
    position = rpc(served, "private/get_position", {"instrument_name": PERP}, demo)["size"]
    assert position < size, (position, size)  # liquidated (part or all)
    wait_for(lambda: sum(_page_totals(page).values()) >= reported, 10, "the page's counts")

    # the BTC index sources the page shows are the operator's override or the feed's, which
    # goes on from it (not back to the price before)
    def btc_sources_near_the_crash() -> bool:
        prices = page.evaluate(
            """() => [...document.querySelectorAll('#sources tr')]
                .filter((tr) => tr.children[0].textContent === 'BTC_USDC')
                .map((tr) => Number(tr.children[2].textContent.replaceAll(',', '')))"""
        )
        return bool(prices) and all(abs(price / crash - 1) < 0.02 for price in prices)

    wait_for(btc_sources_near_the_crash, 10, "BTC index sources near the crash price")
    shown = _page_totals(page)
    print(f"\nlong {size} BTC, index {index_before} -> {crash}: {sorted(shown.items())}")
    assert shown[("", "started")] >= 1 and shown[("", "ended")] >= 1, shown
    page.screenshot(path=str(artifacts / "operator-crash-serve.png"), full_page=True)
    page.close()  # (before the server goes: a page reconnecting logs console errors)
    served.stop()
    assert shown == _journal_counts(served.data)
