"""The venue's market inputs: the ``Market`` feeds the engine an index feed
(``derivex.oracle``, simulated by default; anything with ``records(now_ns)`` plugs in)
sequenced as INDEX commands, and the pricing service (``derivex.pricing.service``)
producing option marks and risk arrays as RISK_ARRAY commands, both submitted through the
``Venue`` like any client's commands, each batch followed by a TIME command (expiry,
funding and liquidation run at the new prices). Until the engine has the risk engine
(``Exchange.set_index``), it keeps the index and marks for display only and sequences
nothing. ``derivex serve`` (``derivex.gateway.serve.build``) calls ``index_step`` and
``pricing_step`` periodically on the server's loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from derivex.core.records import CommandKind, Underlying, command_array, concat_commands
from derivex.gateway.listing import START_PRICES
from derivex.oracle import OPERATOR_SOURCE_ID, IndexFeed, MultiIndexFeed, SimulatedIndexFeed
from derivex.pricing.black import black76_greeks
from derivex.pricing.service import NS_PER_YEAR, OptionSpec, PricingService

if TYPE_CHECKING:
    from derivex.gateway.catalog import InstrumentSpec
    from derivex.gateway.venue import Venue

__all__ = ["Market", "with_time"]


def with_time(records: np.ndarray) -> np.ndarray:
    """``records`` followed by a TIME command: the engine runs what is due at the new
    prices (option expiry, perpetual funding, liquidation of the accounts they put below
    maintenance, the fund's unwinding) right after it takes them, as a venue must; the
    index and marks alone only stage values. Cost: the TIME command's (docs/liquidation.md:
    O(accounts) per scan), once per market step."""
    tick = command_array(1)
    tick["kind"] = CommandKind.TIME
    return concat_commands([records, tick])


def _price_ticks(spec: InstrumentSpec, price: Any) -> int:
    return int(price / spec.price_unit)


class Market:
    """Index prices and option marks for the venue (see the module docstring)."""

    def __init__(
        self,
        venue: Venue,
        feed: IndexFeed,
        pricers: dict[str, PricingService],
        underlyings: dict[int, str],
    ) -> None:
        self.venue = venue
        self.feed = feed
        self.pricers = pricers
        self.underlyings = underlyings  # INDEX underlying code -> base currency
        self.sequenced = hasattr(venue.exchange, "set_index")  # the risk engine is there
        # an operator's index override (sequenced by any process) re-bases the feed here
        venue.input_watchers.append(self.follow_override)

    @classmethod
    def simulated(cls, venue: Venue, seed: int) -> Market:
        now = time.time_ns()
        bases = sorted({spec.base for spec in venue.catalog})
        feeds, underlyings = [], {}
        for offset, base in enumerate(bases):
            start = venue.index_ticks(base) or _price_ticks(
                next(iter(venue.catalog.matching(base))), START_PRICES.get(base, 100)
            )
            code = int(Underlying[base])
            feeds.append(SimulatedIndexFeed(code, float(start), now, seed + offset))
            underlyings[code] = base
        pricers = {}
        for base in bases:
            options = [
                OptionSpec(
                    s.instrument,
                    _price_ticks(s, s.strike),
                    s.expiry_ms * 10**6,
                    s.option_type == "call",
                    s.contract_value_units,
                    s.tick_size_ticks,
                )
                for s in venue.catalog.matching(base, "option")
                if s.base == base
            ]
            if options:
                pricers[base] = PricingService(options, scenarios=venue.exchange.engine.config)
        return cls(venue, MultiIndexFeed(feeds), pricers, underlyings)

    def index_step(self) -> None:
        records = self.feed.records(time.time_ns())
        if self.sequenced:
            self.venue.submit_inputs(with_time(records))
        headers = np.flatnonzero(records["kind"] == CommandKind.INDEX)
        for start, header in zip(headers, [*headers[1:], len(records)], strict=True):
            prices = records["price_ticks"][start + 1 : header]
            code = int(records["index_underlying"][start])
            if len(prices):
                median = int(np.median(prices))
                self.venue.indices[code] = median
                if not self.sequenced:  # display marks until the engine makes its own
                    for spec in self.venue.catalog.matching(self.underlyings[code], "future"):
                        tick = spec.tick_size_ticks
                        self.venue.marks[spec.instrument] = median // tick * tick

    def follow_override(self, commands: np.ndarray) -> None:
        """An INDEX command with the operator's source (``private/admin_set_index``, walked
        here whichever process sequenced it): the simulated feed of its underlying goes on
        from that price instead of pulling the index back. O(len(commands))."""
        headers = np.flatnonzero(commands["kind"] == CommandKind.INDEX)
        for header in headers:
            legs = commands[header + 1 : header + 1 + int(commands["count"][header])]
            for leg in legs:
                if int(leg["source_id"]) == OPERATOR_SOURCE_ID:
                    code, price = int(commands["index_underlying"][header]), int(leg["price_ticks"])
                    feed = self.feed
                    if isinstance(feed, MultiIndexFeed):
                        feed.rebase(code, price)
                    elif isinstance(feed, SimulatedIndexFeed) and feed.underlying == code:
                        feed.rebase(price)

    def pricing_step(self) -> None:
        now = time.time_ns()
        for base, service in self.pricers.items():
            index = self.venue.index_ticks(base)
            if index <= 0:
                continue
            result = service.price(now, float(index))
            if self.sequenced:
                # the venue takes the option views from the sequenced records, as every
                # gateway worker does from this one's batches
                self.venue.submit_inputs(with_time(result.records))
            else:
                self.venue.marks.update(
                    zip(result.instrument.tolist(), result.mark_ticks.tolist(), strict=True)
                )
                self._views(service, result, now, index)

    def _views(self, service: PricingService, result: Any, now: int, index: int) -> None:
        specs = service.options
        strikes = np.array([s.strike_ticks for s in specs], dtype=float)
        years = np.maximum(np.array([s.expiry_ns - now for s in specs]) / NS_PER_YEAR, 1e-9)
        calls = np.array([s.is_call for s in specs])
        unit = float(self.venue.catalog.by_id[specs[0].instrument].price_unit)
        greeks = black76_greeks(index * unit, strikes * unit, years, result.vol, 0.0, calls)
        for k, spec in enumerate(specs):
            self.venue.set_option_view(
                spec.instrument,
                round(float(result.vol[k]) * 100, 2),
                {
                    "delta": round(float(greeks.delta[k]), 5),
                    "gamma": round(float(greeks.gamma[k]), 8),
                    "vega": round(float(greeks.vega[k]) / 100, 5),
                    "theta": round(float(greeks.theta[k]) / 365, 5),
                    "rho": round(float(greeks.rho[k]) / 100, 5),
                },
            )

    def fair(self, spec: InstrumentSpec) -> int:
        mark = self.venue.mark_ticks(spec.instrument)
        if mark or spec.kind == "option":
            return mark
        return self.venue.index_ticks(spec.base)
