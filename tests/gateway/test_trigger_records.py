"""The gateway's records of trigger orders without a server: a venue built over an engine
that already holds trigger orders (a recovery, a late gateway worker) lists them, and
``private/edit`` of an untriggered trigger order amends it in the engine (AMEND_TRIGGER:
same id, new quantity and trigger price or offset), with clear errors for parameters of
another order type."""

from __future__ import annotations

import pytest

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.gateway import Venue
from derivex.gateway.errors import RpcError
from derivex.gateway.listing import list_all, perpetual
from derivex.gateway.methods import Context
from derivex.gateway.private_api import edit

pytestmark = pytest.mark.nojit


def test_a_rebuilt_venue_lists_the_engines_trigger_orders() -> None:
    exchange = Exchange(EngineConfig(risk_checks=False))
    catalog = list_all(exchange, [perpetual("BTC")])
    perp = catalog.by_name["BTC_USDC-PERPETUAL"].instrument
    a, b = exchange.create_account(), exchange.create_account()
    for account in (a, b):
        exchange.deposit(account, 10**12)
    exchange.place(a, perp, "sell", 10, 10_000_000)
    exchange.place(b, perp, "buy", 10, 10_000_000)
    placed = exchange.place_trigger(
        b, perp, "sell", 10, "trailing", trigger_offset_ticks=100_000, reduce_only=True
    )
    stop = exchange.place_trigger(b, perp, "sell", 5, "stop", 9_000_000, source="mark")
    venue = Venue(exchange, catalog)  # as after a restart: built from the engine state
    records = venue.open_orders(b)
    assert [r.order_type for r in records] == ["trailing_stop", "stop_market"]
    trailing, mark_stop = records
    assert trailing.order_id == int(placed.events["order_id"][0])
    assert trailing.state == "untriggered" and trailing.reduce_only
    assert trailing.trigger == "last_price" and trailing.trigger_offset_ticks == 100_000
    assert (
        trailing.trigger_price_ticks == 9_900_000 and trailing.trigger_reference_ticks == 10_000_000
    )
    assert mark_stop.order_id == int(stop.events["order_id"][0])
    assert mark_stop.trigger == "mark_price" and mark_stop.trigger_price_ticks == 9_000_000

    class Session:
        account = b

    ctx = Context(venue, None, Session(), None, None, "http")  # type: ignore[arg-type]
    spec = catalog.by_id[perp]
    # editing an untriggered trigger order (one AMEND_TRIGGER): same id, new terms
    stop_id = str(mark_stop.order_id)
    reply = edit(ctx, {"order_id": stop_id, "amount": spec.amount(7), "trigger_price": 8_900})
    assert reply["order"]["order_id"] == stop_id and reply["order"]["trigger_price"] == 8_900
    edited = venue.order(b, mark_stop.order_id)
    assert (edited.amount_lots, edited.trigger_price_ticks) == (7, spec.to_ticks(8_900))
    assert edited.state == "untriggered"
    live = {row["trigger_id"]: row for row in exchange.trigger_orders(b)}
    row = live[mark_stop.order_id]
    assert (row["qty_lots"], row["trigger_price_ticks"]) == (7, spec.to_ticks(8_900))
    # a trailing stop's offset; what is not given stays
    edit(
        ctx,
        {"order_id": str(trailing.order_id), "amount": spec.amount(10), "trigger_offset": 2_000},
    )
    edited = venue.order(b, trailing.order_id)
    assert edited.trigger_offset_ticks == spec.to_ticks(2_000)
    assert edited.trigger_price_ticks == 10_000_000 - spec.to_ticks(2_000)
    for params, name in (
        ({"order_id": stop_id, "amount": spec.amount(7), "price": 100}, "price"),
        ({"order_id": stop_id, "amount": spec.amount(7), "trigger_offset": 1}, "trigger_offset"),
        (
            {"order_id": str(trailing.order_id), "amount": spec.amount(1), "trigger_price": 1},
            "trigger_price",
        ),
    ):
        with pytest.raises(RpcError) as refused:
            edit(ctx, params)
        assert (refused.value.code, refused.value.data["param"]) == (-32602, name)
    # the engine's own checks: a quantity beyond the order cap is refused, nothing changes
    with pytest.raises(RpcError):
        edit(ctx, {"order_id": stop_id, "amount": spec.amount(10**15)})
    assert venue.order(b, mark_stop.order_id).amount_lots == 7
    record, _ = venue.place(b, catalog.by_id[perp], "buy", 1, 9_000_000)
    assert record.order_type == "limit" and record.trigger == ""
