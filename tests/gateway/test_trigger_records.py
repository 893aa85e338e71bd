"""The gateway's records of trigger orders without a server: a venue built over an engine
that already holds trigger orders (a recovery, a late gateway worker) lists them, and
editing an untriggered trigger order is refused with a clear error, not forwarded."""

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
    with pytest.raises(RpcError) as refused:
        edit(ctx, {"order_id": str(mark_stop.order_id), "amount": 1, "price": 100})
    assert refused.value.code == 10033
    record, _ = venue.place(b, catalog.by_id[perp], "buy", 1, 9_000_000)
    assert record.order_type == "limit" and record.trigger == ""
