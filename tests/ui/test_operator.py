"""The operator page in a real browser against an in-process gateway whose venue the test
drives: after a scripted crash (an index shock that liquidates leveraged accounts) the
liquidation counts by stage on the page equal the engine's LIQUIDATION events, the fund
equals the fund account's balance and the auto-deleveraging queue is the engine's; the
halt / resume and block / unblock buttons act on the venue (a blocked account's orders are
gone and its next order is refused). Screenshots: ``operator-crash.png``,
``operator-controls.png``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from derivex.core import risk_views
from derivex.core.records import (
    CommandKind,
    EventKind,
    LiquidationStage,
    Reason,
    Underlying,
    command_array,
    concat_commands,
    index_records,
)
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.keys import KeyStore
from derivex.gateway.server import Gateway, GatewayThread
from derivex.gateway.venue import Venue
from tests.core.test_lifecycle import leveraged_long, venue
from tests.ui.conftest import watch_page

pytestmark = pytest.mark.integration
PERP = "BTC_USDC-PERPETUAL"
ACCOUNT_WIDE = {"started", "orders_cancelled", "ended"}


@dataclass
class Driven:
    """An in-process gateway around a venue the test drives (``call`` runs on its loop)."""

    thread: GatewayThread
    venue: Venue
    keys: KeyStore
    clock: Any
    perp: int
    dealer: int
    url: str = ""

    def call(self, function: Any) -> Any:
        return self.thread.call(function)


@pytest.fixture
def driven() -> Iterator[Driven]:
    exchange, clock, perp, dealer = venue()
    spec = InstrumentSpec(perp, PERP, "perpetual", "BTC", Decimal("0.01"), Decimal("0.01"))
    walked = Venue(exchange, Catalog([spec]))
    keys = KeyStore(None)
    thread = GatewayThread(lambda: Gateway(walked, keys))
    thread.start()
    try:
        yield Driven(thread, walked, keys, clock, perp, dealer, thread.url)
    finally:
        thread.stop()


def _operator(browser: Any, driven: Driven) -> Any:
    watched = watch_page(browser, driven)  # type: ignore[arg-type]
    admin = driven.keys.create(3, ("admin",), name="operator")
    page = watched.page
    page.goto(driven.url + "/operator")
    page.wait_for_selector(".status.open")
    page.fill("#client-id", admin.client_id)
    page.fill("#client-secret", admin.client_secret)
    page.click("#login button")
    page.wait_for_selector("#fund-balance[data-value]")
    return watched


def _page_totals(page: Any) -> Counter[tuple[str, str]]:
    rows = page.evaluate(
        """() => [...document.querySelectorAll('#liq-totals tr:not(.empty)')].map(
            (tr) => [...tr.children].map((td) => td.textContent))"""
    )
    return Counter(
        {(name if name != "(account)" else "", stage): int(n) for name, stage, n, _ in rows}
    )


def _wait(condition: Any, timeout_s: float, what: str) -> Any:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_liquidation_counts_after_a_crash_equal_the_engine_events(
    browser: Any, driven: Driven, artifacts: Path
) -> None:
    exchange = driven.venue.exchange
    traders = driven.call(
        lambda: [
            leveraged_long(exchange, driven.perp, driven.dealer, lots=40, funds=funds)
            for funds in (1_000 * 10**6, 900 * 10**6, 5_000 * 10**6)
        ]
    )
    watched = _operator(browser, driven)
    page = watched.page
    # the dealer's bids absorb part of the liquidations through the book; the rest goes to
    # the fund (and past it, to auto-deleveraging)
    assert driven.call(
        lambda: exchange.place(driven.dealer, driven.perp, "buy", 30, 9_830_000)
    ).accepted
    driven.clock.now += 10**9
    # the index falls 3%, then a TIME command applies it and sweeps the liquidations
    tick = command_array(1)
    tick["kind"] = CommandKind.ADVANCE_TIME
    shock = concat_commands(
        [index_records(int(Underlying.BTC), [(0, driven.clock.now, 9_700_000)]), tick]
    )
    events = driven.call(lambda: driven.venue.submit_inputs(shock))
    liquidations = events[events["kind"] == EventKind.LIQUIDATION]
    stages = [LiquidationStage(int(e["a"])).name.lower() for e in liquidations]
    expected = Counter((PERP if s not in ACCOUNT_WIDE else "", s) for s in stages)
    print(f"\nliquidation stages: {sorted(expected.items())}")
    # two of the three are taken over: part through the book, the rest by the fund
    assert expected[("", "started")] == 2 and expected[(PERP, "book")] >= 1, stages
    assert expected[(PERP, "insurance_fund")] >= 1, stages
    assert {int(e["account"]) for e in liquidations} & set(traders)
    _wait(lambda: _page_totals(page) == expected, 10, "the page's counts to equal the events")
    fund = driven.call(lambda: exchange.balance(1)) / 1_000_000
    _wait(
        lambda: float(page.get_attribute("#fund-balance", "data-value")) == fund,
        10,
        "the page's fund to equal the fund account",
    )
    # the deleveraging queue on the page is the engine's ranking
    queue = driven.call(lambda: risk_views.adl_ranking(exchange.engine.state, driven.perp, 5))
    rows = page.evaluate(
        """() => [...document.querySelectorAll('#adl tr:not(.empty)')].map(
            (tr) => [tr.children[1].textContent, Number(tr.children[3].textContent)])"""
    )
    assert rows == [[side, account] for side in ("long", "short") for account, _, _ in queue[side]]
    page.screenshot(path=str(artifacts / "operator-crash.png"), full_page=True)
    watched.page.close()
    watched.check()


def test_controls_halt_and_block_from_the_page(
    browser: Any, driven: Driven, artifacts: Path
) -> None:
    exchange = driven.venue.exchange
    trader = driven.call(
        lambda: leveraged_long(exchange, driven.perp, driven.dealer, lots=1, funds=10**10)
    )
    for price in (9_950_000, 9_960_000):
        assert driven.call(
            lambda p=price: exchange.place(trader, driven.perp, "buy", 1, p)
        ).accepted
    watched = _operator(browser, driven)
    page = watched.page
    # the risk ranking's row of the trader fills the controls' account field
    page.wait_for_selector("#ranking button.pick-account")
    page.evaluate(
        """(id) => [...document.querySelectorAll('#ranking tr')]
            .find((tr) => tr.children[0].textContent === id).querySelector('button').click()""",
        str(trader),
    )
    assert page.input_value("#control-account") == str(trader)
    page.click("#block")
    page.wait_for_selector("#control-result[data-ok=true]")
    assert page.text_content("#control-result") == f"account {trader} blocked, 2 orders cancelled"
    assert driven.call(lambda: exchange.open_orders(trader)) == []
    refused = driven.call(lambda: exchange.place(trader, driven.perp, "buy", 1, 9_950_000))
    assert refused.reason == Reason.ACCOUNT_BLOCKED
    _wait(
        lambda: str(trader) in (page.text_content("[data-field='blocked_accounts']") or ""),
        10,
        "the blocked account in the overview",
    )
    page.fill("#control-instrument", PERP)
    page.click("#halt")
    _wait(lambda: page.text_content("#control-result") == f"{PERP} halted", 10, "halted")
    _wait(lambda: PERP in (page.text_content("[data-field='not_trading']") or ""), 10, "halt shown")
    page.screenshot(path=str(artifacts / "operator-controls.png"), full_page=True)
    page.click("#halt")  # twice: refused with the engine's reason, nothing changes
    _wait(lambda: "refused" in page.text_content("#control-result"), 10, "the refusal")
    page.click("#resume")
    _wait(lambda: page.text_content("#control-result") == f"{PERP} active", 10, "resumed")
    page.click("#unblock")
    _wait(lambda: "unblocked" in page.text_content("#control-result"), 10, "unblocked")
    assert driven.call(lambda: exchange.place(trader, driven.perp, "buy", 1, 9_950_000)).accepted
    watched.page.close()
    watched.check()
