"""Worked examples of what TIME commands drive (docs/liquidation.md): funding, option
expiry at the index TWAP, and every liquidation stage, checked by hand.

BTC perpetual, one lot = 0.01 BTC (contract value 100 units of 1e-6 USDC per cent), prices
in cents, standard margin 2% initial / 1% maintenance; the mark follows the index exactly
(``mark_ema_ppm=0``) unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.records import AccountState, EventKind, LiquidationStage, Reason
from derivex.exchange import Exchange

# also run as plain Python by the no-JIT pass of scripts/test.sh (about a minute for all
# of tests/core): the kernels' Python semantics must match the compiled ones
pytestmark = pytest.mark.nojit

NOW = 1_798_761_600_000_000_000  # 2027-01-01 00:00 UTC
MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
USDC = 1_000_000
CV = 100
BASE = EngineConfig(mark_ema_ppm=0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def venue(config: EngineConfig = BASE, fund: int = 10_000 * USDC):
    clock = Clock()
    ex = Exchange(config, clock=clock)
    perp = ex.add_perpetual(
        "BTC", tick_size_ticks=50, contract_value_units=CV, maker_fee_ppm=0, taker_fee_ppm=0
    )
    ex.set_index("BTC", [(0, clock.now, 10_000_000)])
    dealer = ex.create_account()
    ex.deposit(dealer, 10**9 * USDC)
    if fund:
        ex.deposit(1, fund)  # the insurance fund
    return ex, clock, perp, dealer


def index(ex: Exchange, clock: Clock, price: int) -> np.ndarray:
    return ex.set_index("BTC", [(0, clock.now, price)]).events


def stages(events: np.ndarray, account: int) -> list[str]:
    mine = events[(events["kind"] == EventKind.LIQUIDATION) & (events["account"] == account)]
    return [LiquidationStage(int(e["a"])).name for e in mine]


def leveraged_long(ex, perp, dealer, lots=40, funds=1_000 * USDC) -> int:
    trader = ex.create_account()
    ex.deposit(trader, funds)
    assert ex.place(dealer, perp, "sell", lots, 10_000_000).accepted
    assert ex.place(trader, perp, "buy", lots, 10_000_000, time_in_force="ioc").filled_lots == lots
    return trader


def test_continuous_funding_by_hand() -> None:
    config = replace(BASE, mark_ema_ppm=1_000_000)
    ex, clock, perp, dealer = venue(config)
    long_ = leveraged_long(ex, perp, dealer, lots=10, funds=100_000 * USDC)
    # a book 0.1% rich: mid 100,100.00 -> mark = index + 0.1% at the next index update
    ex.place(dealer, perp, "buy", 1, 10_005_000)
    ex.place(dealer, perp, "sell", 1, 10_015_000)
    index(ex, clock, 10_000_000)
    assert ex.mark(perp) == 10_010_000
    clock.now += HOUR
    events = ex.advance_time().events
    # premium 0.1% = 1,000,000 ppb, minus the 0.025% dead band: 750,000 ppb per 8 h
    # long 10 lots: 10 x 10,000,000 x 100 units = 1e10 notional; x 7.5e-4 x 1/8 = 937,500
    funding = events[events["kind"] == EventKind.FUNDING]
    by_account = {int(e["account"]): int(e["a"]) for e in funding}
    assert by_account[long_] == -937_500
    assert by_account[dealer] == 937_500
    assert by_account[1] == 0  # no rounding residue here
    assert all(int(e["price_ticks"]) == 750_000 for e in funding)
    assert ex.funding_rate(perp) == 750_000
    assert ex.funding_history(perp) == [(clock.now, 750_000)]
    ex.check_invariants()
    # a per-instrument cap: 0.05% per period
    assert ex.set_funding_cap(perp, 500_000).accepted
    clock.now += HOUR
    ex.advance_time()
    assert ex.funding_rate(perp) == 500_000
    assert ex.set_funding_cap(perp, -1).reason == Reason.BAD_INSTRUMENT_PARAMS


def test_funding_rounding_residue_goes_to_the_fund() -> None:
    config = replace(BASE, mark_ema_ppm=1_000_000)
    ex, clock, perp, dealer = venue(config)
    a = leveraged_long(ex, perp, dealer, lots=3, funds=100_000 * USDC)
    b = ex.create_account()
    ex.deposit(b, 100_000 * USDC)
    assert ex.place(b, perp, "sell", 3, 10_000_000).accepted
    assert ex.place(a, perp, "buy", 3, 10_000_000, time_in_force="ioc").filled_lots == 3
    ex.place(dealer, perp, "buy", 1, 10_005_000)
    ex.place(dealer, perp, "sell", 1, 10_015_000)
    index(ex, clock, 10_000_000)
    fund_before = ex.balance(1)
    clock.now += 7 * MINUTE
    events = ex.advance_time().events
    funding = events[events["kind"] == EventKind.FUNDING]
    paid = -sum(int(e["a"]) for e in funding if int(e["a"]) < 0)
    received = sum(int(e["a"]) for e in funding if int(e["a"]) > 0 and e["account"] != 1)
    # a (long 6) pays ceil(ceil(6e9 x 7.5e-4) x 7/480) = ceil(4.5e6 x 7 / 480) = 65,625
    assert {int(e["account"]): int(e["a"]) for e in funding}[a] == -65_625
    residue = ex.balance(1) - fund_before
    assert residue == paid - received >= 0
    ex.check_invariants()


def test_interval_funding_bitmex_formula() -> None:
    config = replace(BASE, mark_ema_ppm=1_000_000, funding_mode=1)
    ex, clock, perp, dealer = venue(config)
    long_ = leveraged_long(ex, perp, dealer, lots=10, funds=100_000 * USDC)
    ex.place(dealer, perp, "buy", 1, 10_005_000)
    ex.place(dealer, perp, "sell", 1, 10_015_000)
    index(ex, clock, 10_000_000)  # premium 0.1% from here on
    for _ in range(8):
        clock.now += HOUR
        events = ex.advance_time().events
    # F = P + clamp(I - P, +/-0.05%) = 0.1% + clamp(0.01% - 0.1%) = 0.05% = 500,000 ppb
    funding = events[events["kind"] == EventKind.FUNDING]
    assert {int(e["account"]): int(e["a"]) for e in funding}[long_] == -5_000_000
    assert ex.funding_rate(perp) == 500_000


def test_option_expiry_settles_at_the_30_minute_index_twap() -> None:
    ex, clock, _, dealer = venue()
    expiry = NOW + 8 * HOUR
    call = ex.add_option(
        "BTC", expiry, 10_000_000, "call", contract_value_units=CV, taker_fee_ppm=0
    )
    ex.set_risk(call, 100_000, np.zeros(len(BASE.scenarios), dtype=np.int64))
    buyer = ex.create_account()
    ex.deposit(buyer, 100_000 * USDC)
    assert ex.place(dealer, call, "sell", 3, 100_000).accepted
    assert ex.place(buyer, call, "buy", 3, 100_000, time_in_force="ioc").filled_lots == 3
    resting = ex.place(dealer, call, "sell", 5, 105_000)  # the top of the 5% band
    for minutes_before, price in ((40, 10_000_000), (20, 10_100_000), (10, 10_200_000)):
        clock.now = expiry - minutes_before * MINUTE
        index(ex, clock, price)
    clock.now = expiry
    events = ex.advance_time().events
    # 10 min at 100,000 + 10 min at 101,000 + 10 min at 102,000 -> 101,000.00
    settled = events[events["kind"] == EventKind.SETTLEMENT]
    assert set(settled["price_ticks"].tolist()) == {10_100_000}
    # 1,000 USD per BTC x 0.01 BTC = 10 USDC per lot
    assert {int(e["account"]): int(e["a"]) for e in settled} == {
        buyer: 3 * 10 * USDC,
        dealer: -3 * 10 * USDC,
    }
    cancelled = events[events["kind"] == EventKind.CANCELLED]
    assert cancelled["order_id"].tolist() == [resting.order_id]
    assert cancelled["reason"].tolist() == [Reason.CANCEL_EXPIRED]
    assert ex.positions(buyer) == []
    assert ex.place(buyer, call, "buy", 1, 100_000).reason == Reason.INSTRUMENT_CLOSED
    ex.check_invariants()


def test_liquidation_through_the_book_ends_above_maintenance() -> None:
    ex, clock, perp, dealer = venue()
    trader = leveraged_long(ex, perp, dealer)  # 40 lots = 40,000 USDC; IM 800, MM 400
    assert ex.place(dealer, perp, "buy", 100, 9_830_000).accepted  # bids below
    fund_before = ex.balance(1)
    events = index(ex, clock, 9_840_000)  # -1.6%: equity 360 < MM 393.60
    assert stages(events, trader) == ["STARTED", "ORDERS_CANCELLED", "BOOK", "ENDED"]
    book = events[(events["kind"] == EventKind.LIQUIDATION) & (events["a"] == 3)][0]
    # bankruptcy price: sell 40 lots leaving equity 0: (40 x 98,400 x 100 - 3.6e8) / 4000
    assert int(book["price_ticks"]) == 9_750_000 and int(book["qty_lots"]) == 10  # 25% step
    fee = int(book["b"])
    assert fee == 10 * 9_840_000 * CV * 5_000 // 1_000_000  # 0.5% of the notional closed
    assert ex.balance(1) == fund_before + fee
    summary = ex.account_summary(trader)
    assert summary.state == "normal"
    assert summary.equity_units >= summary.maintenance_margin_units
    assert ex.positions(trader)[0].qty_lots == 30
    ex.check_invariants()


def test_orders_are_refused_while_in_liquidation() -> None:
    config = replace(BASE, liquidation_step_ppm=10_000)  # 1% per round: several rounds
    ex, clock, perp, dealer = venue(config)
    trader = leveraged_long(ex, perp, dealer)
    ex.place(dealer, perp, "buy", 100, 9_830_000)
    events = index(ex, clock, 9_840_000)
    assert stages(events, trader)[-1] == "BOOK"
    assert ex.account_summary(trader).state == "in_liquidation"
    assert ex.place(trader, perp, "sell", 1, 9_900_000).reason == Reason.ACCOUNT_IN_LIQUIDATION
    assert ex.withdraw(trader, 1).reason == Reason.ACCOUNT_IN_LIQUIDATION
    for _ in range(10):
        clock.now += 10**9
        ex.advance_time()
        if ex.account_summary(trader).state == "normal":
            break
    assert ex.account_summary(trader).state == "normal"


def test_gap_past_bankruptcy_insurance_fund_takes_over() -> None:
    ex, clock, perp, dealer = venue()
    trader = leveraged_long(ex, perp, dealer)
    fund_before = ex.balance(1)
    events = index(ex, clock, 9_700_000)  # -3%: loss 1,200 > 1,000 deposited, no bids
    assert stages(events, trader) == [
        "STARTED",
        "ORDERS_CANCELLED",
        "INSURANCE_FUND",
        "INSURANCE_FUND",
        "ENDED",
    ]
    takeover = [e for e in events if e["kind"] == EventKind.LIQUIDATION and e["a"] == 4]
    assert int(takeover[0]["qty_lots"]) == 40 and int(takeover[0]["price_ticks"]) == 9_700_000
    assert int(takeover[1]["b"]) == -200 * USDC  # the deficit the fund covers
    assert ex.balance(trader) == 0
    assert ex.account_summary(trader).state == "bankrupt"
    assert ex.balance(1) == fund_before - 200 * USDC + 0  # plus the position at mark
    assert [(p.instrument, p.qty_lots) for p in ex.positions(1)] == [(perp, 40)]
    ex.check_invariants()
    # the fund unwinds what it took over: one 25% step per TIME through the book, no lower
    # than the mark - 5% band
    assert ex.place(dealer, perp, "buy", 100, 9_650_000).accepted
    clock.now += 10**9
    events = ex.advance_time().events
    assert stages(events, 1) == ["BOOK"]
    unwind = events[(events["kind"] == EventKind.LIQUIDATION) & (events["account"] == 1)][0]
    assert int(unwind["qty_lots"]) == 10 and int(unwind["price_ticks"]) == 9_215_000
    assert [(p.instrument, p.qty_lots) for p in ex.positions(1)] == [(perp, 30)]
    ex.check_invariants()
    ex.deposit(trader, 5 * USDC)
    assert ex.account_summary(trader).state == "normal"


def test_auto_deleveraging_when_the_fund_cannot_cover() -> None:
    ex, clock, perp, dealer = venue(fund=0)
    trader = leveraged_long(ex, perp, dealer)  # the dealer is short 40 at 100,000
    dealer_before = ex.balance(dealer)
    events = index(ex, clock, 9_700_000)
    assert stages(events, trader)[2:] == ["AUTO_DELEVERAGE", "INSURANCE_FUND", "ENDED"]
    adl = [e for e in events if e["kind"] == EventKind.LIQUIDATION and e["a"] == 5]
    # bankruptcy price: (40 x 97,000 x 100 + 2e8) / 4000 = 97,500.00
    assert {
        (int(e["account"]), int(e["price_ticks"]), int(e["qty_lots"]), int(e["b"])) for e in adl
    } == {(trader, 9_750_000, 40, dealer), (dealer, 9_750_000, 40, trader)}
    # the dealer bought back at 97,500 instead of the 97,000 mark: 200 USDC of its profit
    assert ex.balance(dealer) - dealer_before == (10_000_000 - 9_750_000) * CV * 40
    assert ex.balance(trader) == 0 and ex.balance(1) == 0
    assert ex.positions(dealer) == [] and ex.positions(trader) == []
    ex.check_invariants()


def test_socialised_loss_mode() -> None:
    ex, clock, perp, dealer = venue(replace(BASE, adl_mode=1), fund=0)
    leveraged_long(ex, perp, dealer)
    other = ex.create_account()
    ex.deposit(other, 1_000 * USDC)
    total = ex.balance(dealer) + ex.balance(other)
    events = index(ex, clock, 9_700_000)
    social = [e for e in events if e["kind"] == EventKind.LIQUIDATION and e["a"] == 6]
    charged = -sum(int(e["b"]) for e in social)
    assert charged == 200 * USDC
    # pro rata by balance: the small account pays floor(1000e6 x 200e6 / total)
    small = [int(e["b"]) for e in social if e["account"] == other]
    assert small == [-(1_000 * USDC * 200 * USDC // total)]
    assert ex.balance(1) == 0
    assert int(ex.engine.state.counters[21]) == 0  # no bad debt left
    ex.check_invariants()


def test_account_states_show_in_the_summary() -> None:
    assert [s.name for s in AccountState] == ["NORMAL", "IN_LIQUIDATION", "BANKRUPT"]


def test_a_position_closed_flat_through_the_book_is_released() -> None:
    ex, clock, perp, dealer = venue(replace(BASE, liquidation_step_ppm=1_000_000))
    trader = leveraged_long(ex, perp, dealer)
    ex.place(dealer, perp, "buy", 100, 9_830_000)
    events = index(ex, clock, 9_840_000)
    assert stages(events, trader) == ["STARTED", "ORDERS_CANCELLED", "BOOK", "ENDED"]
    assert ex.positions(trader) == []
    ex.check_invariants()  # the flat position slot went back to the pool
