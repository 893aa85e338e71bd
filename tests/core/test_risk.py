"""Worked examples of the risk engine a risk manager would check (docs/risk.md).

Options are marked and given scenario P&Ls by the real pricing service (Black-76 on the
default smile, Deribit-style grid); BTC at 100,000.00 USD, one lot = 0.01 BTC for the
perpetual and the options, prices in cents, collateral in USDC units of 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.config import EngineConfig, deribit_grid
from derivex.core.records import CommandKind, Reason, command_array, concat_commands
from derivex.exchange import Exchange
from derivex.pricing.risk import perpetual_risk_records
from derivex.pricing.service import OptionSpec, PricingService

# also run as plain Python by the no-JIT pass of scripts/test.sh (about a minute for all
# of tests/core): the kernels' Python semantics must match the compiled ones
pytestmark = pytest.mark.nojit

NOW = 1_798_761_600_000_000_000  # 2027-01-01 00:00 UTC
DAY = 86_400 * 10**9
S0 = 10_000_000  # 100,000.00 USD in cents
CV = 100  # 0.01 BTC per lot: 100 units (1e-4 USDC) per cent
USDC = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


class Venue:
    """A BTC perpetual and calls/puts at 7 and 30 days, a deep-pocketed counterparty."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.clock = Clock()
        self.ex = Exchange(self.config, clock=self.clock)
        self.perp = self.ex.add_perpetual(
            "BTC", tick_size_ticks=50, contract_value_units=CV, taker_fee_ppm=0
        )
        self.options: dict[tuple[int, int, str], int] = {}
        self.rows: dict[int, int] = {}  # option instrument -> row of the pricing results
        specs = []
        for days in (7, 30):
            for strike in (90_000, 100_000, 105_000, 110_000, 150_000):
                for kind in ("call", "put"):
                    expiry = NOW + days * DAY
                    instrument = self.ex.add_option(
                        "BTC", expiry, strike * 100, kind, contract_value_units=CV, taker_fee_ppm=0
                    )
                    self.options[(days, strike, kind)] = instrument
                    self.rows[instrument] = len(specs)
                    specs.append(
                        OptionSpec(instrument, strike * 100, expiry, kind == "call", CV, 1)
                    )
        self.pricing = PricingService(specs, scenarios=self.config)
        self.dealer = self.ex.create_account()
        self.ex.deposit(self.dealer, 10**9 * USDC)
        self.move_index(S0)

    def move_index(self, index: int) -> None:
        """An index update and a fresh set of option marks and risk arrays, applied."""
        self.ex.set_index("BTC", [(0, self.clock.now, index)], apply=False)
        tick = command_array(1)
        tick["kind"] = CommandKind.TIME
        perp = perpetual_risk_records([self.perp], [0], [CV])  # Greeks only: delta = 1 lot
        self.ex.submit(concat_commands([perp, self.pricing.records(self.clock.now, index), tick]))

    def account(self, funds: int, mode: str = "portfolio") -> int:
        account = self.ex.create_account(margin_mode=mode)
        self.ex.deposit(account, funds)
        return account

    def trade(self, account: int, instrument: int, side: str, qty: int) -> None:
        """``account`` takes ``qty`` lots from the dealer at the mark."""
        price = self.ex.mark(instrument)
        if instrument == self.perp:
            price = price // 50 * 50
        other = "sell" if side == "buy" else "buy"
        assert self.ex.place(self.dealer, instrument, other, qty, price).accepted
        result = self.ex.place(account, instrument, side, qty, price, time_in_force="ioc")
        assert result.accepted and result.filled_lots == qty, result.reason

    def im(self, account: int) -> int:
        return self.ex.account_summary(account).initial_margin_units


def test_covered_call_needs_less_margin_than_naked_call() -> None:
    v = Venue()
    call = v.options[(30, 110_000, "call")]
    naked, covered = v.account(10**6 * USDC), v.account(10**6 * USDC)
    v.trade(naked, call, "sell", 10)
    v.trade(covered, call, "sell", 10)
    v.trade(covered, v.perp, "buy", 10)
    assert 0 < v.im(covered) < v.im(naked)
    v.ex.check_invariants()


def test_delta_hedged_straddle_needs_less_than_unhedged() -> None:
    """A short 90k straddle after the market rose to 100k: long delta, hedged with the
    perpetual."""
    v = Venue()
    call, put = v.options[(30, 90_000, "call")], v.options[(30, 90_000, "put")]
    plain, hedged = v.account(10**6 * USDC), v.account(10**6 * USDC)
    for account in (plain, hedged):
        v.trade(account, call, "sell", 20)
        v.trade(account, put, "sell", 20)
    delta = v.ex.account_summary(hedged).delta  # collateral units per index tick
    lots = round(-delta / CV)
    assert lots != 0  # an off-the-money straddle carries delta
    v.trade(hedged, v.perp, "buy" if lots > 0 else "sell", abs(lots))
    assert abs(v.ex.account_summary(hedged).delta) < abs(delta)
    assert v.im(hedged) < v.im(plain)


def test_calendar_spread_needs_less_than_the_short_leg_alone() -> None:
    v = Venue()
    near, far = v.options[(7, 100_000, "call")], v.options[(30, 100_000, "call")]
    short, spread = v.account(10**6 * USDC), v.account(10**6 * USDC)
    v.trade(short, near, "sell", 10)
    v.trade(spread, near, "sell", 10)
    v.trade(spread, far, "buy", 10)
    assert v.im(spread) < v.im(short)


def test_far_out_of_the_money_short_options_are_held_by_the_extended_scenarios() -> None:
    with_extended = Venue(EngineConfig(scenarios=deribit_grid()))
    without = Venue(EngineConfig(scenarios=deribit_grid(extended_moves_ppm=())))
    ims = []
    for v in (with_extended, without):
        account = v.account(10**6 * USDC)
        v.trade(account, v.options[(30, 150_000, "call")], "sell", 10)
        ims.append(v.im(account))
    # +/-16% barely touches a 150k call; +50%..+500% (at 35%) does
    assert ims[0] > 2 * ims[1] > 0


def test_pre_trade_check_rejects_exactly_at_the_boundary() -> None:
    for mode in ("standard", "portfolio"):
        v = Venue()
        mark = v.ex.mark(v.perp)
        probe = v.account(10**6 * USDC, mode)
        assert v.ex.place(probe, v.perp, "buy", 10, mark // 50 * 50).accepted
        need_10 = v.im(probe)  # initial margin of 10 lots bid at the mark
        account = v.account(need_10, mode)
        price = mark // 50 * 50
        rejected = v.ex.place(account, v.perp, "buy", 11, price)
        assert not rejected.accepted and rejected.reason == Reason.INSUFFICIENT_MARGIN
        assert v.ex.place(account, v.perp, "buy", 10, price).accepted
        summary = v.ex.account_summary(account)
        assert summary.initial_margin_units == summary.equity_units == need_10
        assert summary.available_funds_units == 0
        # a withdrawal that would leave equity below initial margin is rejected
        assert v.ex.withdraw(account, 1).reason == Reason.INSUFFICIENT_MARGIN
        assert v.ex.cancel_all(account).accepted
        assert v.ex.withdraw(account, need_10).accepted


def test_standard_margin_formulas() -> None:
    v = Venue(EngineConfig(perp_tier_units=5_000 * USDC, perp_tier_im_ppm=5_000))
    account = v.account(10**6 * USDC, "standard")
    v.trade(account, v.perp, "buy", 3)  # 3 x 1,000 USDC notional: no tier crossed
    mark = v.ex.mark(v.perp)
    notional = 3 * mark * CV
    assert v.im(account) == -(-notional * 20_000 // 1_000_000)
    assert v.ex.account_summary(account).maintenance_margin_units == -(-notional // 100)
    v.trade(account, v.perp, "buy", 4)  # 7,000 USDC: one full tier -> 2.5%
    assert v.im(account) == -(-7 * mark * CV * 25_000 // 1_000_000)
    call = v.options[(30, 110_000, "call")]
    seller = v.account(10**6 * USDC, "standard")
    v.trade(seller, call, "sell", 1)
    otm = 110_000_00 - S0
    option_mark = v.ex.mark(call)
    per_lot = max(S0 * CV * 15 // 100 - otm * CV, S0 * CV // 10) + option_mark * CV
    assert v.im(seller) == per_lot
    buyer = v.account(10**6 * USDC, "standard")
    v.trade(buyer, call, "buy", 2)
    assert v.im(buyer) == 2 * option_mark * CV  # a long option's value is not collateral


def test_index_sources_stale_outliers_and_the_stale_rule() -> None:
    v = Venue()
    now = v.clock.now
    stale = now - 31_000_000_000
    # stale source dropped; the outlier clamped to median +0.5%; equal-weight mean
    result = v.ex.set_index(
        "BTC",
        [(0, now, 100_000_00), (1, now, 100_020_00), (2, now, 120_000_00), (3, stale, 50_000_00)],
    )
    assert result.accepted
    median = 100_020_00
    clamped = median + median * 5_000 // 1_000_000
    assert v.ex.index("BTC").price_ticks == (100_000_00 + 100_020_00 + clamped) // 3
    assert v.ex.index("BTC").sources == 3
    trader = v.account(10**6 * USDC)
    v.trade(trader, v.perp, "buy", 2)
    # no valid source: the index is stale; only risk-reducing orders and cancels pass
    v.ex.set_index("BTC", [(0, stale, 100_000_00)])
    assert v.ex.index("BTC").status == "stale"
    mark = v.ex.mark(v.perp) // 50 * 50
    assert v.ex.place(trader, v.perp, "buy", 1, mark).reason == Reason.INDEX_STALE
    assert v.ex.withdraw(trader, 1).reason == Reason.INDEX_STALE
    assert v.ex.place(trader, v.perp, "sell", 1, mark + 50_000, reduce_only=True).accepted
    assert v.ex.cancel_all(trader).accepted
    v.ex.set_index("BTC", [(0, v.clock.now, 100_000_00)])
    assert v.ex.index("BTC").status == "valid"
    assert v.ex.place(trader, v.perp, "buy", 1, mark).accepted


def test_perpetual_mark_is_index_plus_a_smoothed_clamped_basis() -> None:
    v = Venue(EngineConfig(mark_ema_ppm=500_000, mark_basis_clamp_ppm=10_000))
    mm = v.account(10**6 * USDC)
    # a book 0.5% rich: mid = 100,500.00
    assert v.ex.place(mm, v.perp, "buy", 1, 100_450_00).accepted
    assert v.ex.place(mm, v.perp, "sell", 1, 100_550_00).accepted
    v.ex.set_index("BTC", [(0, v.clock.now, S0)])
    assert v.ex.mark(v.perp) == S0 + 50_000 // 2  # half of the basis after one update
    v.ex.set_index("BTC", [(0, v.clock.now, S0)])
    assert v.ex.mark(v.perp) == S0 + 25_000 + 25_000 // 2
    # a 5% rich book is clamped to 1% of the index
    v.ex.cancel_all(mm)
    v.ex.place(mm, v.perp, "buy", 1, 105_000_00)
    v.ex.place(mm, v.perp, "sell", 1, 105_100_00)
    for _ in range(40):
        v.ex.set_index("BTC", [(0, v.clock.now, S0)])
    assert v.ex.mark(v.perp) == S0 + S0 // 100 - 1  # converging on the 1% clamp from below


def test_mark_update_remargins_accounts_and_margin_mode_is_fixed_while_open() -> None:
    v = Venue()
    account = v.account(10**6 * USDC)
    put = v.options[(30, 100_000, "put")]
    v.trade(account, put, "sell", 10)
    before = v.ex.account_summary(account)
    for index in (S0 * 90 // 100, S0 * 120 // 100):
        v.move_index(index)  # every holder is re-margined from the new risk arrays
        after = v.ex.account_summary(account)
        # by hand: worst scenario loss of -10 lots, plus the short-option minimum
        values = v.pricing.price(v.clock.now, index).values[v.rows[put]]
        worst = max(0, max(10 * int(x) for x in values))
        addon = 10 * -(-index * CV * 10_000 // 1_000_000)
        assert after.initial_margin_units == worst + addon
        assert after.maintenance_margin_units == -(-(worst + addon) * 800_000 // 1_000_000)
        assert after.initial_margin_units != before.initial_margin_units
        v.ex.check_invariants()
    assert v.ex.set_margin_mode(account, "standard").reason == Reason.MARGIN_MODE_OPEN
    fresh = v.account(1)
    assert v.ex.set_margin_mode(fresh, "standard").accepted
    assert v.ex.account_summary(fresh).margin_mode == "standard"


def test_orders_need_a_mark_and_bad_market_data_is_rejected() -> None:
    config = EngineConfig()
    ex = Exchange(config, clock=lambda: NOW)
    perp = ex.add_perpetual("BTC")
    trader = ex.create_account()
    ex.deposit(trader, 10**6)
    assert ex.place(trader, perp, "buy", 1, 100).reason == Reason.NO_MARK
    assert ex.set_index("BTC", [(0, NOW, 0)]).reason == Reason.BAD_INDEX
    assert ex.set_index("BTC", [(0, NOW, 5), (0, NOW, 6)]).reason == Reason.BAD_INDEX
    values = np.zeros(len(config.scenarios), dtype=np.int64)
    assert ex.set_risk(perp, 100, values).reason == Reason.BAD_RISK_ARRAY  # core's own
    assert ex.set_risk(7, 100, values).reason == Reason.UNKNOWN_INSTRUMENT
    assert ex.set_risk(perp, 0, [], greeks=(10**9, 0, 0, 0, 0)).accepted  # Greeks only
    ex.check_invariants()
