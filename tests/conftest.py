"""Shared fixtures: a manual clock and a small venue."""

from __future__ import annotations

import pytest

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange

START_NS = 1_798_761_600_000_000_000


class ManualClock:
    """The sequencer's clock under test control: advances only when told to."""

    def __init__(self, start_ns: int = START_NS) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, milliseconds: int) -> None:
        self.now_ns += milliseconds * 1_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def venue(clock: ManualClock):
    """Exchange with a BTC perpetual (tick 50, maker -1bp, taker 5bp), a BTC call (tick 5,
    lot step 10, maker 2bp, taker 3bp) and three funded accounts."""
    ex = Exchange(EngineConfig(risk_checks=False), clock=clock)
    perp = ex.add_perpetual("BTC", tick_size_ticks=50, maker_fee_ppm=-100, taker_fee_ppm=500)
    call = ex.add_option(
        "BTC",
        START_NS + 8 * 3_600_000_000_000,
        10_000_000,
        "call",
        tick_size_ticks=5,
        min_trade_lots=10,
        maker_fee_ppm=200,
        taker_fee_ppm=300,
    )
    accounts = [ex.create_account() for _ in range(3)]
    for account in accounts:
        ex.deposit(account, 10**12)
    return ex, perp, call, accounts
