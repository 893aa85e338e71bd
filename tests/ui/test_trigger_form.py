"""Trigger orders through the trader page against a real ``derivex serve``: a stop market
and a trailing stop sent from the order form are in ``private/get_open_orders`` with their
trigger fields, shown in the open-orders panel as ``untriggered`` with their trigger, and
cancelled from the page (then in ``private/get_trigger_order_history``). A stop limit's
limit price travels too. Screenshot: ``trader-triggers.png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from derivex.gateway.keys import KeyStore
from tests.ui.conftest import Watched
from tests.ui.test_dashboard import PERP, log_in, open_trader, rpc, token, wait_for

pytestmark = pytest.mark.integration


def _send(page: Any, type_name: str, side: str, fields: dict[str, str]) -> str:
    """Fill the form for one order, send it; the new row's order id."""
    before = set(
        page.eval_on_selector_all("#open-orders tr", "rows => rows.map(r => r.dataset.orderId)")
    )
    page.select_option("#order-type", type_name)
    page.check(f"input[name=side][value={side}]")
    for selector, value in fields.items():
        if selector.startswith("select"):
            page.select_option(selector.split(" ", 1)[1], value)
        else:
            page.fill(selector, value)
    page.click("#send-order")

    def new_row() -> str | None:
        ids = page.eval_on_selector_all(
            "#open-orders tr", "rows => rows.map(r => r.dataset.orderId)"
        )
        fresh = [i for i in ids if i not in before]
        return fresh[0] if fresh else None

    order_id = wait_for(new_row, 10, f"the {type_name} in the open-orders panel")
    assert "untriggered" in (page.text_content("#order-result") or "")
    return str(order_id)


def _row(page: Any, order_id: str) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"#open-orders tr[data-order-id='{order_id}'] td", "tds => tds.map(td => td.textContent)"
    )


def test_stop_orders_from_the_form_are_listed_with_their_trigger_and_cancelled(
    checked_page: Watched, served: Any, artifacts: Path
) -> None:
    page = open_trader(checked_page, served)
    log_in(page, served.client_id, served.secret)
    page.wait_for_selector("#summary dd")
    spec = rpc(served, "public/get_instrument", {"instrument_name": PERP})
    ticker = rpc(served, "public/ticker", {"instrument_name": PERP})
    tick, amount = spec["tick_size"], str(spec["min_trade_amount"])
    # far below the mark: a sell stop that does not trigger while the test runs
    stop = math.floor(ticker["mark_price"] * 0.8 / tick) * tick
    page.fill("#order-amount", amount)
    # the trigger fields show for trigger types only
    assert page.is_hidden("#trigger-fields")
    stop_id = _send(
        page,
        "stop_market",
        "sell",
        {"select #trigger-source": "mark_price", "#trigger-price": str(stop)},
    )
    assert page.is_hidden("#order-price")  # a stop market has no limit price
    limit = stop - 10 * tick
    limit_id = _send(
        page,
        "stop_limit",
        "sell",
        {
            "select #trigger-source": "index_price",
            "#trigger-price": str(stop),
            "#order-price": str(limit),
        },
    )
    # wide enough that the mark's moves while the test runs do not fire it
    offset = math.floor(ticker["mark_price"] * 0.05 / tick) * tick
    trail_id = _send(
        page,
        "trailing_stop",
        "sell",
        {"select #trigger-source": "mark_price", "#trigger-offset": str(offset)},
    )
    access = token(served, served.client_id, served.secret)
    orders = {o["order_id"]: o for o in rpc(served, "private/get_open_orders", {}, access)}
    assert set(orders) == {stop_id, limit_id, trail_id}
    fields = ("order_type", "order_state", "trigger", "direction", "amount")
    assert [orders[stop_id][f] for f in fields] == [
        "stop_market",
        "untriggered",
        "mark_price",
        "sell",
        spec["min_trade_amount"],
    ]
    assert orders[stop_id]["trigger_price"] == stop
    assert [orders[limit_id][f] for f in fields[:3]] == ["stop_limit", "untriggered", "index_price"]
    assert (orders[limit_id]["trigger_price"], orders[limit_id]["price"]) == (stop, limit)
    assert [orders[trail_id][f] for f in fields[:3]] == [
        "trailing_stop",
        "untriggered",
        "mark_price",
    ]
    assert orders[trail_id]["trigger_offset"] == offset
    # the panel: type, trigger and state; no edit button on an untriggered order
    shown = _row(page, stop_id)
    assert shown[2] == "stop_market" and shown[7] == "untriggered", shown
    assert shown[6] == f"mark {stop:,.2f}", shown
    assert _row(page, limit_id)[3] == (str(int(limit)) if limit == int(limit) else str(limit))
    assert _row(page, trail_id)[6].startswith(f"mark ±{offset:,.2f} → "), _row(page, trail_id)
    assert page.locator(f"#open-orders tr[data-order-id='{stop_id}'] button.edit").count() == 0
    page.screenshot(path=str(artifacts / "trader-triggers.png"), full_page=True)
    for order_id in (stop_id, limit_id, trail_id):
        page.click(f"#open-orders tr[data-order-id='{order_id}'] button.cancel")
        page.wait_for_selector(f"#open-orders tr[data-order-id='{order_id}']", state="detached")
    assert rpc(served, "private/get_open_orders", {}, access) == []
    history = rpc(served, "private/get_trigger_order_history", {"instrument_name": PERP}, access)
    cancelled = {e["trigger_order_id"]: e for e in history["entries"] if e["request"] == "cancel"}
    assert {stop_id, limit_id, trail_id} <= set(cancelled)
    assert cancelled[stop_id]["order_type"] == "stop_market"
    page.select_option("#order-type", "limit")


def test_a_fired_stop_limit_rests_and_shows_as_triggered(
    checked_page: Watched, served: Any
) -> None:
    """A buy stop limit on the index fires when the operator raises the index 2%
    (``private/admin_set_index``); the order it places rests below the book and the panel
    shows it as ``triggered`` with its trigger, in place of the stop."""
    page = open_trader(checked_page, served)
    log_in(page, served.client_id, served.secret)
    page.wait_for_selector("#summary dd")
    spec = rpc(served, "public/get_instrument", {"instrument_name": PERP})
    index = rpc(served, "public/ticker", {"instrument_name": PERP})["index_price"]
    tick = spec["tick_size"]
    trigger = math.ceil(index * 1.01 / tick) * tick
    # under the makers' bids before and after the move, inside the band around the new mark
    limit = math.floor(index * 0.985 / tick) * tick
    page.fill("#order-amount", str(spec["min_trade_amount"]))
    page.uncheck("#post-only")
    fields = {"select #trigger-source": "index_price", "#trigger-price": str(trigger)}
    stop_id = _send(page, "stop_limit", "buy", {**fields, "#order-price": str(limit)})
    admin = KeyStore(served.data).create(3, ("admin",), name="operator")
    operator = token(served, admin.client_id, admin.client_secret)
    moved = rpc(
        served,
        "private/admin_set_index",
        {"index_name": "btc_usdc", "price": round(index * 1.02)},
        operator,
    )
    assert moved["price"] == round(index * 1.02)
    access = token(served, served.client_id, served.secret)

    def placed() -> Any:
        orders = rpc(served, "private/get_open_orders", {}, access)
        return next((o for o in orders if o.get("trigger_order_id") == stop_id), None)

    order = wait_for(placed, 10, "the order the stop placed")
    assert (order["order_state"], order["triggered"], order["price"]) == ("open", True, limit)
    row = f"#open-orders tr[data-order-id='{order['order_id']}']"
    page.wait_for_selector(row, timeout=10_000)
    page.wait_for_selector(f"#open-orders tr[data-order-id='{stop_id}']", state="detached")
    shown = _row(page, order["order_id"])
    assert (shown[2], shown[7]) == ("limit", "triggered"), shown
    assert shown[6] == f"index {trigger:,.2f}", shown
    page.click(f"{row} button.cancel")
    page.wait_for_selector(row, state="detached")
    assert rpc(served, "private/get_open_orders", {}, access) == []
