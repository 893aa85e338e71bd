"""The dashboard in a real browser against a real ``derivex serve`` with the demo agents
trading: the pages load without console errors and nothing leaves loopback; the ladder
follows the book and equals ``public/get_order_book``; a limit order sent from the form is
in ``private/get_open_orders`` and on the ladder, and cancelling it from the page removes
it; the operator page shows the insurance fund's balance and is refused to a trading key;
after the server restarts, the page reconnects and resyncs. Screenshots of both views are
written (see conftest)."""

from __future__ import annotations

import json
import math
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from derivex.gateway.keys import KeyStore
from tests.ui.conftest import Served, Watched, watch_page

pytestmark = pytest.mark.integration
PERP = "BTC_USDC-PERPETUAL"
LEVELS = 12  # rows per side of the page's ladder


def rpc(served: Served, method: str, params: dict[str, Any], token: str | None = None) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(served.url + "/api/v2", body, headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        reply = json.loads(response.read())
    assert "result" in reply, reply
    return reply["result"]


def token(served: Served, client_id: str, secret: str) -> str:
    params = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return str(rpc(served, "public/auth", params)["access_token"])


def ladder(page: Any) -> tuple[int, list[list[float]], list[list[float]]]:
    """The page's book: (change id, bids best first, asks best first)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
        const rows = (id) => [...document.querySelectorAll(`#${id} tr`)].map(
            (tr) => [Number(tr.dataset.price), Number(tr.children[1].textContent)]);
        return [Number(document.getElementById('ladder').dataset.changeId || -1),
                rows('bids'), rows('asks').reverse()];
    }"""
    )


def wait_for(condition: Any, timeout_s: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def open_trader(watched: Watched, served: Served) -> Any:
    page = watched.page
    page.goto(f"{served.url}/?instrument={PERP}")
    page.wait_for_selector("#bids tr", timeout=30_000)
    page.wait_for_selector(".status.open")
    return page


def log_in(page: Any, client_id: str, secret: str) -> None:
    page.fill("#client-id", client_id)
    page.fill("#client-secret", secret)
    page.click("#login button")


def test_ladder_follows_the_book_and_equals_get_order_book(
    checked_page: Watched, served: Served
) -> None:
    page = open_trader(checked_page, served)
    page.wait_for_function("performance.getEntriesByName('first-book').length > 0")
    first_book_ms = page.evaluate("performance.getEntriesByName('first-book')[0].startTime")
    print(f"\npage load to first rendered book: {first_book_ms:.0f} ms")
    first = ladder(page)[0]
    wait_for(lambda: ladder(page)[0] > first, what="a book change from the demo agents")
    # the book moves all the time: compare at a change id both sides saw
    seen: dict[int, tuple[list[list[float]], list[list[float]]]] = {}

    def agreed() -> bool:
        change_id, bids, asks = ladder(page)
        seen[change_id] = (bids, asks)
        book = rpc(served, "public/get_order_book", {"instrument_name": PERP, "depth": LEVELS})
        shown = seen.get(book["change_id"])
        return shown is not None and shown == (book["bids"], book["asks"])

    wait_for(agreed, 30, "the page's ladder to equal public/get_order_book at one change id")
    wait_for(lambda: page.locator("#tape tr").count() > 0, 20, "a trade on the tape")
    assert page.locator("#chart canvas").count() > 0, "no candle chart"


def _page_book(page: Any) -> tuple[int, int]:
    """(change id shown, book notifications applied) of the page's ladder."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => { const d = document.getElementById('ladder').dataset;
                   return [Number(d.changeId || -1), Number(d.updates || 0)]; }"""
    )


def test_ladder_keeps_up_with_ten_book_changes_a_second(
    checked_page: Watched, served: Served
) -> None:
    """A client changes the book 25 times a second for 5 s beside the demo agents; the page
    applies every change (its change id covers >= 10 a second) and ends at the server's
    change id, not behind it."""
    from websockets.sync.client import connect

    page = open_trader(checked_page, served)
    band = rpc(served, "public/ticker", {"instrument_name": PERP})["min_price"]
    price = math.ceil(band * 1.01 / 0.5) * 0.5
    window_s, rate = 5.0, 25
    ws_url = served.url.replace("http://", "ws://") + "/ws/api/v2"
    with connect(ws_url, open_timeout=10) as ws:

        def call(method: str, **params: Any) -> Any:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            while True:
                reply = json.loads(ws.recv(timeout=10))
                if reply.get("id") == 1:
                    assert "result" in reply, reply
                    return reply["result"]

        call(
            "public/auth",
            grant_type="client_credentials",
            client_id=served.client_id,
            client_secret=served.secret,
        )
        first_id, first_updates = _page_book(page)
        started = time.monotonic()
        for k in range(2 * int(window_s * rate / 2)):  # pairs: every order is cancelled
            if k % 2 == 0:
                order = call("private/buy", instrument_name=PERP, amount=0.01, price=price)
                order_id = order["order"]["order_id"]
            else:
                call("private/cancel", order_id=order_id)
            time.sleep(max(0.0, started + (k + 1) / rate - time.monotonic()))
        elapsed = time.monotonic() - started
    server_id = rpc(served, "public/get_order_book", {"instrument_name": PERP, "depth": 1})[
        "change_id"
    ]
    # not behind: within a publication interval the page shows the server's change id
    wait_for(lambda: _page_book(page)[0] >= server_id, 2, "the page to reach the server's book")
    last_updates = _page_book(page)[1]
    changes_per_s = (server_id - first_id) / elapsed
    print(
        f"\nbook changes applied {changes_per_s:.1f}/s over {elapsed:.1f} s in "
        f"{(last_updates - first_updates) / elapsed:.1f} notifications/s"
    )
    assert changes_per_s >= 10
    assert last_updates > first_updates


def test_book_module_applies_changes_and_refuses_a_gap(
    checked_page: Watched, served: Served
) -> None:
    page = open_trader(checked_page, served)
    result = page.evaluate(
        """async () => {
        const { Book } = await import('/ui/book.js');
        const book = new Book(0.5);
        const out = [];
        out.push(book.apply({type: 'change', prev_change_id: 1, change_id: 2, bids: [], asks: []}));
        out.push(book.apply({type: 'snapshot', change_id: 5,
            bids: [['new', 100, 1], ['new', 99.5, 2]], asks: [['new', 101, 3]]}));
        out.push(book.apply({type: 'change', prev_change_id: 5, change_id: 6,
            bids: [['delete', 100, 0], ['change', 99.5, 4]], asks: [['new', 100.5, 1]]}));
        out.push(JSON.stringify([book.levels('bids', 5), book.levels('asks', 5)]));
        out.push(book.apply({type: 'change', prev_change_id: 7, change_id: 8, bids: [], asks: []}));
        out.push(book.changeId);
        return out;
    }"""
    )
    # a change before any snapshot and a change after a gap are refused (the page then
    # resubscribes for a fresh snapshot); the refused gap leaves the book as it was
    assert result == [False, True, True, "[[[99.5,4]],[[100.5,1],[101,3]]]", False, 6]


def test_options_chain_lists_the_expiry_and_picks_an_option(
    checked_page: Watched, served: Served
) -> None:
    page = open_trader(checked_page, served)
    expiry = page.wait_for_selector("#expiry option", state="attached").get_attribute("value")
    base, date = expiry.split()
    options = rpc(served, "public/get_instruments", {"currency": base, "kind": "option"})
    chosen = [o for o in options if f"-{date}-" in o["instrument_name"]]
    strikes = sorted({o["strike"] for o in chosen})
    wait_for(lambda: page.locator("#chain tr").count() == len(strikes), 10, "one row a strike")
    assert [
        float(s)
        for s in page.eval_on_selector_all("#chain tr", "rows => rows.map(r => r.dataset.strike)")
    ] == strikes
    wait_for(lambda: page.locator("#chain td.pick").count() > 0, 10, "chain prices")
    page.locator("#chain tr").nth(0).locator("td.pick").nth(2).click()  # the call's mark
    call = next(o for o in chosen if o["strike"] == strikes[0] and o["option_type"] == "call")
    wait_for(lambda: page.input_value("#instrument") == call["instrument_name"], 5, "picked")
    page.wait_for_selector("#bids tr, #asks tr")


def test_limit_order_from_the_form_then_cancel_from_the_page(
    checked_page: Watched, served: Served, artifacts: Path
) -> None:
    page = open_trader(checked_page, served)
    log_in(page, served.client_id, served.secret)
    page.wait_for_selector("#summary dd")
    ticker = rpc(served, "public/ticker", {"instrument_name": PERP})
    spec = rpc(served, "public/get_instrument", {"instrument_name": PERP})
    tick = spec["tick_size"]
    # below the bids yet inside the price band, so it rests
    price = math.ceil(ticker["min_price"] * 1.01 / tick) * tick
    assert price < ticker["best_bid_price"]
    page.check("input[name=side][value=buy]")
    page.fill("#order-price", str(price))
    page.fill("#order-amount", str(spec["min_trade_amount"]))
    page.check("#post-only")
    page.click("#send-order")
    row = page.wait_for_selector("#open-orders tr[data-order-id]", timeout=10_000)
    order_id = row.get_attribute("data-order-id")
    access = token(served, served.client_id, served.secret)
    orders = rpc(served, "private/get_open_orders", {}, access)
    assert [(o["order_id"], o["price"], o["post_only"]) for o in orders] == [
        (order_id, price, True)
    ]
    shown = str(int(price)) if price == int(price) else str(price)  # (as JavaScript prints it)
    own = page.locator(f"#bids tr[data-price='{shown}'] td.own")
    if page.locator("#bids tr").count() < LEVELS or own.count():  # (our level is on screen)
        amount = str(spec["min_trade_amount"])
        wait_for(lambda: own.count() and own.text_content() == amount, 5, "own amount")
    # edit it from the page: a lower price
    page.click(f"#open-orders tr[data-order-id='{order_id}'] button.edit")
    lower = price - 2 * tick
    page.fill("#order-price", str(lower))
    page.click("#send-order")
    wait_for(lambda: "amended" in page.text_content("#order-result"), 10, "the amendment")
    orders = rpc(served, "private/get_open_orders", {}, access)
    assert [(o["order_id"], o["price"]) for o in orders] == [(order_id, lower)]
    wait_for(
        lambda: (
            page.text_content(f"#open-orders tr[data-order-id='{order_id}'] td:nth-child(4)")
            == (str(int(lower)) if lower == int(lower) else str(lower))
        ),
        5,
        "the amended price on the page",
    )
    page.screenshot(path=str(artifacts / "trader.png"), full_page=True)
    page.click(f"#open-orders tr[data-order-id='{order_id}'] button.cancel")
    page.wait_for_selector(f"#open-orders tr[data-order-id='{order_id}']", state="detached")
    assert rpc(served, "private/get_open_orders", {}, access) == []
    wait_for(lambda: own.count() == 0 or own.text_content() == "", 5, "own level cleared")


def test_market_order_fills_and_the_position_equals_the_api(
    checked_page: Watched, served: Served
) -> None:
    page = open_trader(checked_page, served)
    log_in(page, served.client_id, served.secret)
    page.wait_for_selector("#summary dd")
    spec = rpc(served, "public/get_instrument", {"instrument_name": PERP})
    access = token(served, served.client_id, served.secret)
    before = rpc(served, "private/get_position", {"instrument_name": PERP}, access)["size"]
    page.select_option("#order-type", "market")
    page.check("input[name=side][value=buy]")
    page.fill("#order-amount", str(spec["min_trade_amount"]))
    page.uncheck("#post-only")
    # the margin the order would use, shown before it is sent (priced at the mark)
    page.wait_for_selector("#order-margin[data-margin]", timeout=10_000)
    assert "initial margin" in page.text_content("#order-margin")
    page.click("#send-order")
    wait_for(lambda: "filled" in page.text_content("#order-result"), 10, "the order's result")
    assert "refused" not in page.text_content("#order-result")

    def same_position() -> bool:
        position = rpc(served, "private/get_position", {"instrument_name": PERP}, access)
        summary = rpc(served, "private/get_account_summary", {"currency": "USDC"}, access)
        row = page.locator(f"#positions tr[data-instrument='{PERP}'] td")
        if row.count() < 3 or position["size"] == before:
            return False
        shown_size, shown_entry = row.nth(1).text_content(), row.nth(2).text_content()
        shown = {
            name: page.text_content(f"[data-field={name}]")
            for name in ("balance", "initial_margin", "maintenance_margin")
        }
        return (
            float(shown_size) == position["size"]
            and shown_entry == f"{position['average_price']:,.2f}"
            and all(shown[name] == f"{summary[name]:,.2f} USDC" for name in shown)
        )

    wait_for(same_position, 15, "the page's position, balance and margins to equal the API's")
    page.select_option("#order-type", "limit")


def test_operator_page_shows_the_insurance_fund_and_refuses_a_trading_key(
    checked_page: Watched, served: Served, artifacts: Path
) -> None:
    keys = KeyStore(served.data)
    admin = keys.create(3, ("admin",), name="operator")
    fund_reader = keys.create(1, ("read",), name="fund")  # the insurance fund's account
    page = checked_page.page
    page.goto(served.url + "/operator")
    page.wait_for_selector(".status.open")
    log_in(page, served.client_id, served.secret)  # the demo key trades: refused
    page.wait_for_selector("#message[data-refused=true]")
    assert "no admin scope" in page.text_content("#message")
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.wait_for_selector(".status.open")
    log_in(page, admin.client_id, admin.client_secret)
    page.wait_for_selector("#fund-balance[data-value]")
    access = token(served, fund_reader.client_id, fund_reader.client_secret)

    def fund_matches() -> bool:
        summary = rpc(served, "private/get_account_summary", {"currency": "USDC"}, access)
        return float(page.get_attribute("#fund-balance", "data-value")) == summary["balance"]

    wait_for(fund_matches, 10, "the page's fund balance to equal the fund account's")
    page.wait_for_selector("#markets tr td")
    assert page.locator("#markets tr").count() == 2  # the demo's two perpetuals
    wait_for(
        lambda: page.text_content("[data-field='commands/s']") not in ("", "\u2013"), 10, "rate"
    )
    page.screenshot(path=str(artifacts / "operator.png"), full_page=True)


def test_page_reconnects_and_resyncs_after_a_restart(
    browser: Any, served: Served, artifacts: Path
) -> None:
    watched = watch_page(browser, served)
    page = open_trader(watched, served)
    log_in(page, served.client_id, served.secret)
    page.wait_for_selector("#summary dd")
    admin = KeyStore(served.data).create(3, ("admin",), name="restart")
    operator = watch_page(browser, served)
    operator.page.goto(served.url + "/operator")
    operator.page.wait_for_selector(".status.open")
    log_in(operator.page, admin.client_id, admin.client_secret)
    operator.page.wait_for_selector("#fund-balance[data-value]")
    served.stop()
    page.wait_for_selector(".status.reconnecting", timeout=10_000)
    assert "reconnecting" in page.text_content("#status")
    assert page.evaluate("document.body.dataset.connection") == "reconnecting"  # dimmed
    operator.page.wait_for_selector(".status.reconnecting", timeout=10_000)
    page.screenshot(path=str(artifacts / "trader-disconnected.png"))
    served.start()
    page.wait_for_selector(".status.open", timeout=30_000)
    # the operator page logs in again and reads the aggregates of the restarted venue
    operator.page.wait_for_selector(".status.open", timeout=30_000)
    before = operator.page.text_content("[data-field='last_seq']")
    wait_for(
        lambda: operator.page.text_content("[data-field='last_seq']") != before, 20, "new figures"
    )
    assert [e for e in operator.errors if e.startswith("exception")] == []
    operator.page.close()
    # a fresh snapshot, then changes again; the session logged in again by itself
    first = wait_for(lambda: ladder(page)[0] if ladder(page)[1] else 0, 20, "a new snapshot")
    wait_for(lambda: ladder(page)[0] > first, 20, "book changes after the restart")
    page.wait_for_selector("#summary dd")
    # the browser's failed connection attempts while the server was down are console
    # errors of its own; the page itself must not throw, nor leave loopback
    assert [e for e in watched.errors if e.startswith("exception")] == []
    assert watched.outside == []
    page.close()
