"""The venue's market inputs run the engine's clock work: every index (and pricing) batch
the ``Market`` sequences is followed by a TIME command, so an index move liquidates the
accounts it puts below maintenance at once, as a venue must. Before, ``derivex serve``
only staged the new prices: liquidation, funding and option expiry ran only when
something else sent a TIME command (nothing did)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from derivex.core.records import CommandKind, Underlying, index_records
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.venue import Venue
from derivex.market import Market
from tests.core.test_lifecycle import leveraged_long, venue


class ScriptedFeed:
    """An index feed whose one source reports ``price`` (ticks) at the engine's time."""

    def __init__(self, clock, price: int) -> None:
        self.clock, self.price = clock, price

    def records(self, now_ns: int) -> np.ndarray:
        return index_records(int(Underlying.BTC), [(0, self.clock.now, self.price)])


def test_an_index_step_liquidates_what_it_puts_below_maintenance() -> None:
    ex, clock, perp, dealer = venue()
    spec = InstrumentSpec(
        perp, "BTC_USDC-PERPETUAL", "perpetual", "BTC", Decimal("0.01"), Decimal("0.01")
    )
    walked = Venue(ex, Catalog([spec]))
    sequenced: list[np.ndarray] = []
    walked.input_watchers.append(sequenced.append)
    feed = ScriptedFeed(clock, 10_000_000)
    market = Market(walked, feed, {}, {int(Underlying.BTC): "BTC"})
    trader = leveraged_long(ex, perp, dealer)
    assert ex.place(dealer, perp, "buy", 100, 9_830_000).accepted  # a bid to liquidate into
    market.index_step()  # the same price: nothing to do
    assert _lots(ex, trader, perp) == 40
    feed.price = 9_840_000
    market.index_step()
    assert [int(kind) for kind in sequenced[-1]["kind"]] == [
        CommandKind.SET_INDEX,
        CommandKind.INDEX_SOURCE,
        CommandKind.TIME,
    ]
    assert ex.index("BTC").price_ticks == 9_840_000
    # the TIME command ran the liquidation: the first 25% step went through the book
    assert _lots(ex, trader, perp) == 30
    # and the venue walked its events: the liquidation trade is the trader's trade
    trades = walked.trades_of(trader)
    assert [(t.taker_account, t.direction, t.qty_lots) for t in trades] == [(trader, 1, 10)]


def _lots(ex, account: int, instrument: int) -> int:
    return sum(p.qty_lots for p in ex.positions(account) if p.instrument == instrument)
