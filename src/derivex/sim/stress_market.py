"""The venue of the stress harness: a BTC perpetual and a BTC options chain on an
:class:`Exchange`, the pricing service that marks the chain, the market makers' quotes and
the order records the crowd sends.

Units: prices in 0.01 USDC ticks, quantities in 0.0001 BTC lots, so one tick x one lot is one
collateral unit (1e-6 USDC) on every instrument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind, OrderType, TimeInForce, command_array
from derivex.exchange import Exchange
from derivex.pricing.risk import perpetual_risk_records
from derivex.pricing.service import OptionSpec, PricingService

START_NS = 1_798_761_600_000_000_000  # 2027-01-01T00:00:00Z
NS_PER_SECOND = 1_000_000_000
USDC = 1_000_000  # collateral units per USDC
PRICE_UNIT = 0.01  # USDC per price tick (perpetual and options)
PERP_TICK = 50
OPTION_TICK = 500
OPTION_MIN_LOTS = 1_000  # 0.1 BTC
OPTION_EXPIRY_DAYS = (1, 7, 28)  # expiries at 08:00 UTC, days after the start day
OPTION_STRIKES = tuple(range(70, 131, 5))  # percent of the start price
MAKER_DEPOSIT_USDC = 1_000_000_000
OPTION_MAKERS = 4  # the first market makers also quote the options chain
PERP_QUOTE_LOTS = 250_000  # 25 BTC, times (1 + maker number)
OPTION_QUOTE_LOTS = 50_000  # 5 BTC, times (1 + maker number)

Row = tuple[int, int, int, int, int]  # account, instrument, side, price_ticks, qty_lots


def round_to(value: NDArray[np.float64] | float, tick: int, up: bool) -> Any:
    """``value`` rounded up or down to a multiple of ``tick`` (int64, array or scalar)."""
    scaled = np.asarray(value, dtype=np.float64) / tick
    return (np.ceil(scaled) if up else np.floor(scaled)).astype(np.int64) * tick


def mass_quote(
    account: int,
    instruments: NDArray[np.int64],
    bid: NDArray[np.int64],
    bid_lots: NDArray[np.int64],
    ask: NDArray[np.int64],
    ask_lots: NDArray[np.int64],
) -> np.ndarray:
    """One MASS_QUOTE header and its legs; a bid at or below zero is left out."""
    records = command_array(1 + len(instruments))
    records["kind"][0] = CommandKind.MASS_QUOTE
    records["account"][0] = account
    records["count"][0] = len(instruments)
    legs = records[1:]
    legs["kind"] = CommandKind.QUOTE_LEG
    legs["instrument"] = instruments
    legs["bid_price_ticks"] = np.where(bid > 0, bid, 0)
    legs["bid_qty_lots"] = np.where(bid > 0, bid_lots, 0)
    legs["ask_price_ticks"] = ask
    legs["ask_qty_lots"] = ask_lots
    return records


def ioc_orders(rows: list[Row], label: int) -> np.ndarray:
    """IOC limit PLACE_ORDER records, one per ``Row``, all with ``label``."""
    records = command_array(len(rows))
    records["label"] = label
    if rows:
        table = np.array(rows, dtype=np.int64)
        records["kind"] = CommandKind.PLACE_ORDER
        records["order_type"] = OrderType.LIMIT
        records["tif"] = TimeInForce.IOC
        records["account"] = table[:, 0]
        records["instrument"] = table[:, 1]
        records["side"] = table[:, 2]
        records["price_ticks"] = table[:, 3]
        records["qty_lots"] = table[:, 4]
    return records


class StressVenue:
    """The exchange (on the caller's clock), its instruments and the pricing service.
    ``options`` are in the order the pricing service marks them."""

    def __init__(self, accounts: int, start_price_usdc: int, clock: Callable[[], int]) -> None:
        self.config = config = EngineConfig(
            initial_accounts=1 << (accounts + 8).bit_length(), initial_positions=1 << 14
        )
        self.exchange = ex = Exchange(config, clock=clock)
        self.perp = ex.add_perpetual(
            "BTC", tick_size_ticks=PERP_TICK, maker_fee_ppm=-100, taker_fee_ppm=500
        )
        self.start_ticks = start_ticks = int(start_price_usdc / PRICE_UNIT)
        specs = []
        for days in OPTION_EXPIRY_DAYS:
            expiry = START_NS + (days * 86_400 + 8 * 3_600) * NS_PER_SECOND
            for percent in OPTION_STRIKES:
                strike = start_ticks * percent // 100
                for kind in ("call", "put"):
                    instrument = ex.add_option(
                        "BTC",
                        expiry,
                        strike,
                        kind,
                        tick_size_ticks=OPTION_TICK,
                        min_trade_lots=OPTION_MIN_LOTS,
                        maker_fee_ppm=200,
                        taker_fee_ppm=300,
                    )
                    specs.append(
                        OptionSpec(instrument, strike, expiry, kind == "call", 1, OPTION_TICK)
                    )
        self.options = tuple(specs)
        self.option_ids = np.array([s.instrument for s in specs], dtype=np.int64)
        self.pricing = PricingService(specs, scenarios=config)
        self.perp_risk = perpetual_risk_records([self.perp], [0], [1])  # Greeks only
        self._quoted = np.concatenate(([self.perp], self.option_ids)).astype(np.int64)

    def maker_quotes(
        self, makers: NDArray[np.int64], index: float, option_marks: NDArray[np.int64], widen: float
    ) -> list[np.ndarray]:
        """One mass quote per market maker. Maker ``k`` quotes the perpetual at the index
        +/- ``(2 + 6k)`` bp x ``widen`` for ``25 (1 + k)`` BTC a side (a ladder of depth
        across makers); the first ``OPTION_MAKERS`` also quote every option at its mark
        +/- ``(4 + 3k)`` % x ``widen`` (at least a tick) for ``5 (1 + k)`` BTC."""
        quotes = []
        for k, maker in enumerate(makers.tolist()):
            half = index * (2 + 6 * k) / 10_000 * widen
            lots = PERP_QUOTE_LOTS * (1 + k)
            perp_bid = int(round_to(index - half, PERP_TICK, up=False))
            perp_ask = int(round_to(index + half, PERP_TICK, up=True))
            if k < OPTION_MAKERS:
                half_option = np.maximum(OPTION_TICK, option_marks * (0.04 + 0.03 * k) * widen)
                bid = np.concatenate(
                    ([perp_bid], round_to(option_marks - half_option, OPTION_TICK, up=False))
                )
                ask = np.concatenate(
                    ([perp_ask], round_to(option_marks + half_option, OPTION_TICK, up=True))
                )
                size = np.full(len(bid), OPTION_QUOTE_LOTS * (1 + k), dtype=np.int64)
                size[0] = lots
                quotes.append(mass_quote(maker, self._quoted, bid, size, ask, size))
            else:
                one = np.ones(1, dtype=np.int64)
                quotes.append(
                    mass_quote(
                        maker,
                        self._quoted[:1],
                        one * perp_bid,
                        one * lots,
                        one * perp_ask,
                        one * lots,
                    )
                )
        return quotes
