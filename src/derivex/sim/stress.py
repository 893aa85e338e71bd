"""Liquidation stress harness: a crowd of levered accounts through a crash.

:func:`run_stress` builds a venue with a BTC perpetual and a BTC options chain, market
makers quoting deep books on both, and thousands of traders whose leverage is drawn from a
spread (long-biased, so a crash liquidates many; some trade options, some use portfolio
margin). It then drives a scripted crash of the index (``crash_path``: a fall, then a partial
rebound) through the engine step by step and records what the liquidation machinery did.

Each step is one batch through :meth:`Exchange.submit`: the oracle's INDEX command, the
perpetual's Greeks and every option's RISK_ARRAY from :class:`PricingService`, a TIME
command, the market makers' mass quotes refreshed around the new index and marks, then the
traders' orders (entries while positions are being built, random IOC noise after).

Determinism: every random draw comes from generators seeded by ``StressSpec.seed`` (the
harness's ``numpy`` Generator and the index feed's own), time is a manual clock stepped by
``step_seconds`` from a fixed epoch, and no decision reads the engine's output, so the same
spec gives the same command stream and the same state hash.

Cost: O(steps x (options x scenarios + market makers x instruments + orders)) Python and
numpy work plus the engine's; the default 10,000 accounts over 30 minutes of 2-second steps
take a few minutes on two cores.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from derivex.core.config import EngineConfig
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    CommandKind,
    EventKind,
    LiquidationStage,
    MarginMode,
    OrderType,
    Reason,
    Side,
    SystemAccount,
    TimeInForce,
    Underlying,
    command_array,
    concat_commands,
)
from derivex.exchange import Exchange
from derivex.oracle import SimulatedIndexFeed, crash_path
from derivex.pricing.risk import perpetual_risk_records
from derivex.pricing.service import OptionSpec, PricingService

__all__ = ["START_NS", "StressResult", "StressSpec", "plot_stress", "run_stress"]

START_NS = 1_798_761_600_000_000_000  # 2027-01-01T00:00:00Z
NS_PER_SECOND = 1_000_000_000
USDC = 1_000_000  # collateral units per USDC
PRICE_UNIT = 0.01  # USDC per price tick (perpetual and options)
LOT_BTC = 0.0001  # BTC per lot: one tick x one lot = 1 collateral unit
PERP_TICK = 50
OPTION_TICK = 500
OPTION_MIN_LOTS = 1_000  # 0.1 BTC
OPTION_EXPIRY_DAYS = (1, 7, 28)  # expiries at 08:00 UTC, days after the start day
OPTION_STRIKES = tuple(range(70, 131, 5))  # percent of the start price
MAKER_DEPOSIT_USDC = 1_000_000_000
OPTION_MAKERS = 4  # the first market makers also quote the options chain
STAGES = tuple(LiquidationStage)
ENTRY_SLIPPAGE = 0.0025  # opening IOC orders cross the makers' quotes up to this far
ENTRY_LABEL, NOISE_LABEL = 1, 2
ORDER_LABELS = {ENTRY_LABEL: "entry", NOISE_LABEL: "noise"}


@dataclass(frozen=True)
class StressSpec:
    """What to simulate. The schedule is in fractions of ``minutes``: traders open their
    positions before ``crash_start``; the index then falls by ``crash_drop`` over
    ``crash_share`` of the run and recovers ``rebound`` of the fall over ``rebound_share``
    (defaults: 3 minutes of build-up, -30% in 10 minutes, back to -15% 10 minutes later).
    ``leverage`` values are drawn with ``leverage_weights``; ``long_share`` of the
    perpetual traders are long; ``options_share`` of the traders trade options (standard
    margin), ``portfolio_share`` are portfolio-margin accounts holding a perpetual and puts.
    ``accounts`` counts every trading account, market makers included."""

    seed: int = 7
    accounts: int = 10_000
    minutes: float = 30.0
    step_seconds: float = 2.0
    crash_start: float = 0.1
    crash_share: float = 1 / 3
    crash_drop: float = 0.30
    rebound: float = 0.5
    rebound_share: float = 1 / 3
    leverage: tuple[float, ...] = (2, 3, 5, 10, 20, 30, 40, 50)
    leverage_weights: tuple[float, ...] = (0.08, 0.08, 0.14, 0.20, 0.18, 0.12, 0.10, 0.10)
    long_share: float = 0.8
    options_share: float = 0.10
    portfolio_share: float = 0.05
    insurance_fund_usdc: int = 1_000_000
    market_makers: int = 8
    noise_orders: int = 10  # random IOC perpetual orders per step once positions are built
    start_price_usdc: int = 100_000

    def __post_init__(self) -> None:
        if self.accounts < self.market_makers + 1 or self.market_makers < OPTION_MAKERS:
            raise ValueError(f"need at least {OPTION_MAKERS} market makers and one trader")
        if self.minutes <= 0 or self.step_seconds <= 0 \
                or self.step_seconds * 3 > self.minutes * 60:
            raise ValueError("minutes and step_seconds must be positive, with >= 3 steps")
        if not (self.crash_start > 0 and self.crash_start + self.crash_share
                + self.rebound_share <= 1 and self.crash_share > 0 and self.rebound_share > 0):
            raise ValueError("crash_start + crash_share + rebound_share must be in (0, 1]")
        if not 0 < self.crash_drop < 1 or not 0 <= self.rebound <= 1:
            raise ValueError("crash_drop must be in (0, 1) and rebound in [0, 1]")
        if len(self.leverage) != len(self.leverage_weights) or min(self.leverage) < 1 \
                or min(self.leverage_weights) < 0 or sum(self.leverage_weights) <= 0:
            raise ValueError("leverage values >= 1 with as many non-negative weights")
        shares = (self.long_share, self.options_share, self.portfolio_share)
        if min(shares) < 0 or max(shares) > 1 or self.options_share + self.portfolio_share > 1:
            raise ValueError("shares must be in [0, 1] and options + portfolio <= 1")
        if self.insurance_fund_usdc < 0 or self.noise_orders < 0:
            raise ValueError("insurance fund and noise orders must be >= 0")

    @property
    def steps(self) -> int:
        return int(self.minutes * 60 // self.step_seconds)

    @property
    def step_ns(self) -> int:
        return round(self.step_seconds * NS_PER_SECOND)


@dataclass
class StressResult:
    """Per-step series (index ``steps + 1`` entries, step 0 = before any trading) and the
    totals. ``liquidations[:, k]`` counts LIQUIDATION events of stage ``STAGES[k]`` so far;
    ``bad_debt_units`` is the loss left after the insurance fund (SOCIALISED amounts) and
    ``fund_payouts_units`` what the fund paid to take over bankrupt positions."""

    spec: StressSpec
    seconds: NDArray[np.float64]
    index_ticks: NDArray[np.int64]
    mark_ticks: NDArray[np.int64]
    fund_units: NDArray[np.int64]
    liquidations: NDArray[np.int64]
    bad_debt_units: NDArray[np.int64]
    fund_payouts_units: NDArray[np.int64]
    state_hash: str
    fund_before_units: int
    fund_after_units: int
    counts: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    exchange: Exchange | None = field(default=None, repr=False, compare=False)

    def stage_total(self, stage: LiquidationStage) -> int:
        return int(self.liquidations[-1, STAGES.index(stage)])

    @property
    def adl_events(self) -> int:
        return self.stage_total(LiquidationStage.AUTO_DELEVERAGE)

    def summary(self) -> dict[str, Any]:
        """Everything a run reports, as plain values (same spec -> equal summaries)."""
        return {
            "spec": asdict(self.spec),
            "state_hash": self.state_hash,
            "counts": dict(self.counts),
            "liquidations": {stage.name.lower(): self.stage_total(stage) for stage in STAGES},
            "adl_events": self.adl_events,
            "fund_before_units": self.fund_before_units,
            "fund_after_units": self.fund_after_units,
            "fund_min_units": int(self.fund_units.min()),
            "fund_payouts_units": int(self.fund_payouts_units[-1]),
            "bad_debt_units": int(self.bad_debt_units[-1]),
            "index_low_ticks": int(self.index_ticks[1:].min()),
            "index_last_ticks": int(self.index_ticks[-1]),
            "rejects": dict(self.rejects),
        }


@dataclass
class _Population:
    """Traders as columns (index = trader number; account = first_account + index)."""

    first_account: int
    deposit_units: NDArray[np.int64]
    leverage: NDArray[np.float64]
    kind: NDArray[np.int8]  # 0 perpetual, 1 options (standard), 2 portfolio margin
    direction: NDArray[np.int8]  # +1 long, -1 short (perpetual); options: role
    entry_step: NDArray[np.int64]
    pick: NDArray[np.float64]  # uniform draw choosing the option
    fraction: NDArray[np.float64]  # uniform draw sizing option premium / puts


def _draw_population(spec: StressSpec, rng: np.random.Generator, first_account: int,
                     entry_steps: int) -> _Population:
    n = spec.accounts - spec.market_makers
    deposits = np.clip(np.exp(rng.normal(math.log(5_000.0), 1.0, n)), 100.0, 1_000_000.0)
    weights = np.asarray(spec.leverage_weights, dtype=np.float64)
    leverage = rng.choice(np.asarray(spec.leverage, dtype=np.float64), size=n,
                          p=weights / weights.sum())
    roll = rng.random(n)
    kind = np.where(roll < spec.options_share, 1,
                    np.where(roll < spec.options_share + spec.portfolio_share, 2, 0))
    direction = np.where(rng.random(n) < spec.long_share, 1, -1)
    return _Population(first_account, (deposits.round() * USDC).astype(np.int64), leverage,
                       kind.astype(np.int8), direction.astype(np.int8),
                       rng.integers(1, max(entry_steps, 2), n), rng.random(n), rng.random(n))


class _Venue:
    """The exchange, its instruments and the pricing service, with record builders."""

    def __init__(self, spec: StressSpec, clock: list[int]) -> None:
        config = EngineConfig(initial_accounts=1 << (spec.accounts + 8).bit_length(),
                              initial_positions=1 << 14, initial_orders=1 << 12)
        self.config = config
        self.exchange = ex = Exchange(config, clock=lambda: clock[0])
        self.perp = ex.add_perpetual("BTC", tick_size_ticks=PERP_TICK, maker_fee_ppm=-100,
                                     taker_fee_ppm=500)
        start_ticks = int(spec.start_price_usdc / PRICE_UNIT)
        specs = []
        for days in OPTION_EXPIRY_DAYS:
            expiry = START_NS + (days * 86_400 + 8 * 3_600) * NS_PER_SECOND
            for percent in OPTION_STRIKES:
                strike = start_ticks * percent // 100
                for kind in ("call", "put"):
                    instrument = ex.add_option("BTC", expiry, strike, kind,
                                               tick_size_ticks=OPTION_TICK,
                                               min_trade_lots=OPTION_MIN_LOTS,
                                               maker_fee_ppm=200, taker_fee_ppm=300)
                    specs.append(OptionSpec(instrument, strike, expiry, kind == "call", 1,
                                            OPTION_TICK))
        self.options = specs
        self.option_ids = np.array([s.instrument for s in specs], dtype=np.int64)
        self.pricing = PricingService(specs, scenarios=config)
        self.perp_risk = perpetual_risk_records([self.perp], [0], [1])


def _round_to(value: NDArray[np.float64] | float, tick: int, up: bool) -> Any:
    scaled = np.asarray(value, dtype=np.float64) / tick
    return (np.ceil(scaled) if up else np.floor(scaled)).astype(np.int64) * tick


def _mass_quote(account: int, instruments: NDArray[np.int64], bid: NDArray[np.int64],
                bid_lots: NDArray[np.int64], ask: NDArray[np.int64],
                ask_lots: NDArray[np.int64]) -> np.ndarray:
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


def _orders(rows: list[tuple[int, int, int, int, int]], label: int) -> np.ndarray:
    """IOC limit orders from ``(account, instrument, side, price_ticks, qty_lots)``."""
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


def _max_leverage(config: EngineConfig, notional_units: float) -> float:
    """Leverage an opening order can pass the initial-margin check with: the margin
    counts the IOC limit's distance from the mark as a loss, and the taker fee is paid."""
    tiers = notional_units // config.perp_tier_units
    rate = (config.perp_im_ppm + config.perp_tier_im_ppm * tiers) / 1e6
    return 0.95 / (rate + ENTRY_SLIPPAGE + 0.0005)


class _Tally:
    """Running counts over the events of every batch."""

    def __init__(self, first_trader: int) -> None:
        self.first_trader = first_trader
        self.stages = np.zeros(len(STAGES), dtype=np.int64)
        self.fund_payouts = 0
        self.bad_debt = 0
        self.rejects: Counter[str] = Counter()
        self.in_liquidation: set[int] = set()
        self.bankrupt: set[int] = set()
        self.trader_fills = 0
        self.events = 0

    def add(self, events: np.ndarray) -> None:
        self.events += len(events)
        kinds = events["kind"]
        liquidation = events[kinds == EventKind.LIQUIDATION]
        if len(liquidation):
            stage = liquidation["status"]
            self.stages += np.bincount(stage, minlength=len(STAGES) + 1)[1:len(STAGES) + 1]
            money = liquidation["b"]
            self.fund_payouts += int(money[stage == LiquidationStage.INSURANCE_FUND].sum())
            self.bad_debt += int(money[stage == LiquidationStage.SOCIALISED].sum())
        states = events[kinds == EventKind.ACCOUNT_STATE]
        for account, status in zip(states["account"].tolist(), states["status"].tolist(),
                                   strict=True):
            if status == 1:
                self.in_liquidation.add(account)
            elif status == 2:
                self.bankrupt.add(account)
        rejected = events[(kinds == EventKind.REJECTED)
                          & (events["account"] >= self.first_trader)]
        for command, reason, label in zip(rejected["command"].tolist(),
                                          rejected["reason"].tolist(),
                                          rejected["label"].tolist(), strict=True):
            if command == CommandKind.PLACE_ORDER:
                who = ORDER_LABELS.get(label, "order")
                self.rejects[f"{who}:{Reason(reason).name.lower()}"] += 1
        maker_rejects = events[(kinds == EventKind.REJECTED)
                               & (events["command"] == CommandKind.MASS_QUOTE)]
        for reason in maker_rejects["reason"].tolist():
            self.rejects[f"quote:{Reason(reason).name.lower()}"] += 1
        self.trader_fills += int(np.count_nonzero(
            (kinds == EventKind.FILLED) & (events["account"] >= self.first_trader)))


def run_stress(spec: StressSpec) -> StressResult:
    """Run the scenario of ``spec`` through a fresh :class:`Exchange` (see the module
    docstring). Returns the series, totals and final state hash; ``result.exchange`` is the
    venue afterwards (e.g. for ``check_invariants``)."""
    rng = np.random.default_rng(spec.seed)
    clock = [START_NS]
    venue = _Venue(spec, clock)
    ex, config, pricing = venue.exchange, venue.config, venue.pricing
    step_ns, steps = spec.step_ns, spec.steps
    run_ns = steps * step_ns
    crash_steps = int(spec.crash_start * steps)
    path = crash_path(int(spec.crash_start * run_ns), spec.crash_drop,
                      max(int(spec.crash_share * run_ns), 1), spec.rebound,
                      max(int(spec.rebound_share * run_ns), 1))
    start_ticks = int(spec.start_price_usdc / PRICE_UNIT)
    feed = SimulatedIndexFeed(Underlying.BTC, start_ticks, START_NS, spec.seed * 1_000_003 + 1,
                              path=path)

    # accounts: market makers first, then the traders (portfolio-margin ones flagged)
    first_maker = SYSTEM_ACCOUNTS  # ids are allocated in order after the system accounts
    first_trader = first_maker + spec.market_makers
    population = _draw_population(spec, rng, first_trader, max(int(crash_steps * 0.9), 2))
    creates = command_array(spec.accounts)
    creates["kind"] = CommandKind.CREATE_ACCOUNT
    creates["margin_mode"][spec.market_makers:] = np.where(
        population.kind == 2, MarginMode.PORTFOLIO, MarginMode.STANDARD)
    deposits = command_array(spec.accounts + 1)
    deposits["kind"] = CommandKind.DEPOSIT
    deposits["account"][:-1] = np.arange(first_maker, first_maker + spec.accounts)
    deposits["amount_units"][:spec.market_makers] = MAKER_DEPOSIT_USDC * USDC
    deposits["amount_units"][spec.market_makers:-1] = population.deposit_units
    deposits["account"][-1] = SystemAccount.INSURANCE_FUND
    deposits["amount_units"][-1] = spec.insurance_fund_usdc * USDC
    created = ex.submit(creates)
    if int(created["account"][created["kind"] == EventKind.ACCOUNT_CREATED][0]) != first_maker:
        raise RuntimeError("accounts were not allocated from the first user id")
    tally = _Tally(first_trader)
    tally.add(created)
    if not spec.insurance_fund_usdc:
        deposits = deposits[:-1]
    tally.add(ex.submit(deposits))
    fund_before = ex.balance(SystemAccount.INSURANCE_FUND)
    commands = len(creates) + len(deposits)

    time_record = command_array(1)
    time_record["kind"] = CommandKind.TIME
    chain = venue.options
    strikes_pct = np.array([s.strike_ticks * 100 // start_ticks for s in chain])
    calls = np.array([s.is_call for s in chain])
    later = np.array([s.expiry_ns > START_NS + 2 * 86_400 * NS_PER_SECOND for s in chain])
    choices = {  # option lists traders pick from, by role
        "put": np.flatnonzero(~calls & later & (strikes_pct >= 80) & (strikes_pct <= 100)),
        "call": np.flatnonzero(calls & later & (strikes_pct >= 100) & (strikes_pct <= 120)),
        "short_put": np.flatnonzero(~calls & (strikes_pct >= 80) & (strikes_pct <= 95)),
    }
    by_step = np.argsort(population.entry_step, kind="stable")
    entry_bounds = np.searchsorted(population.entry_step[by_step], np.arange(steps + 2))
    lookback = max(1, int(30 / spec.step_seconds))
    maker_ids = np.arange(first_maker, first_trader, dtype=np.int64)
    quote_instruments = np.concatenate(([venue.perp], venue.option_ids))

    seconds = np.arange(steps + 1, dtype=np.float64) * spec.step_seconds
    index_series = np.zeros(steps + 1, dtype=np.int64)
    mark_series = np.zeros(steps + 1, dtype=np.int64)
    fund_series = np.zeros(steps + 1, dtype=np.int64)
    stage_series = np.zeros((steps + 1, len(STAGES)), dtype=np.int64)
    debt_series = np.zeros(steps + 1, dtype=np.int64)
    payout_series = np.zeros(steps + 1, dtype=np.int64)
    estimates = np.zeros(steps + 1, dtype=np.float64)

    for step in range(steps + 1):
        now = START_NS + step * step_ns
        clock[0] = now
        index_part = feed.records(now)
        index = float(np.median(index_part["price_ticks"][1:]))
        estimates[step] = index
        priced = pricing.price(now, index)
        marks = priced.mark_ticks
        parts = [index_part, venue.perp_risk, priced.records, time_record]

        move = abs(math.log(index / estimates[max(step - lookback, 0)]))
        widen = 1.0 + 50.0 * move
        for k, maker in enumerate(maker_ids.tolist()):
            half = index * (2 + 6 * k) / 10_000 * widen
            lots = 250_000 * (1 + k)
            perp_bid = int(_round_to(index - half, PERP_TICK, up=False))
            perp_ask = int(_round_to(index + half, PERP_TICK, up=True))
            if k < OPTION_MAKERS:
                half_opt = np.maximum(OPTION_TICK, marks * (0.04 + 0.03 * k) * widen)
                bid = np.concatenate(([perp_bid], _round_to(marks - half_opt, OPTION_TICK,
                                                            up=False)))
                ask = np.concatenate(([perp_ask], _round_to(marks + half_opt, OPTION_TICK,
                                                            up=True)))
                size = np.full(len(bid), 50_000 * (1 + k), dtype=np.int64)
                size[0] = lots
                parts.append(_mass_quote(maker, quote_instruments, bid, size, ask, size))
            else:
                one = np.ones(1, dtype=np.int64)
                parts.append(_mass_quote(maker, quote_instruments[:1], one * perp_bid,
                                         one * lots, one * perp_ask, one * lots))

        entry_rows = _entries(population, by_step[entry_bounds[step]:entry_bounds[step + 1]],
                        venue, config, index, marks, choices)
        noise = rng.integers(0, len(population.deposit_units), spec.noise_orders)
        noise_side = rng.random(spec.noise_orders) < 0.5
        noise_size = 1.0 + 2.0 * rng.random(spec.noise_orders)
        rows: list[tuple[int, int, int, int, int]] = []
        if step > crash_steps:
            for trader, sell, size in zip(noise.tolist(), noise_side.tolist(),
                                          noise_size.tolist(), strict=True):
                limit = index * (0.995 if sell else 1.005)
                lots = int(population.deposit_units[trader] * size / index)
                if lots > 0:
                    rows.append((first_trader + trader, venue.perp, int(sell),
                                 int(_round_to(limit, PERP_TICK, up=not sell)), lots))
        parts.append(_orders(entry_rows, ENTRY_LABEL))
        parts.append(_orders(rows, NOISE_LABEL))
        batch = concat_commands(parts)
        commands += len(batch)
        tally.add(ex.submit(batch))

        index_series[step] = ex.index("BTC").price_ticks
        mark_series[step] = ex.mark(venue.perp)
        fund_series[step] = ex.balance(SystemAccount.INSURANCE_FUND)
        stage_series[step] = tally.stages
        debt_series[step] = tally.bad_debt
        payout_series[step] = tally.fund_payouts

    counts = {
        "accounts": spec.accounts,
        "market_makers": spec.market_makers,
        "traders": len(population.deposit_units),
        "option_traders": int(np.count_nonzero(population.kind == 1)),
        "portfolio_accounts": int(np.count_nonzero(population.kind == 2)),
        "steps": steps,
        "deposited_units": int(deposits["amount_units"].sum()),
        "commands": commands,
        "events": tally.events,
        "trader_fills": tally.trader_fills,
        "liquidated_accounts": len(tally.in_liquidation),
        "bankrupt_accounts": len(tally.bankrupt),
    }
    result = StressResult(spec, seconds, index_series, mark_series, fund_series, stage_series,
                          debt_series, payout_series, ex.state_hash(), fund_before,
                          ex.balance(SystemAccount.INSURANCE_FUND), counts,
                          dict(sorted(tally.rejects.items())), ex)
    return result


def _entries(population: _Population, traders: NDArray[np.int64], venue: _Venue,
             config: EngineConfig, index: float, marks: NDArray[np.int64],
             choices: dict[str, NDArray[np.intp]]) -> list[tuple[int, int, int, int, int]]:
    """The opening orders of ``traders`` (IOC limits that cross the makers' quotes)."""
    rows: list[tuple[int, int, int, int, int]] = []
    buy_limit = int(_round_to(index * (1 + ENTRY_SLIPPAGE), PERP_TICK, up=True))
    sell_limit = int(_round_to(index * (1 - ENTRY_SLIPPAGE), PERP_TICK, up=False))

    def option(role: str, pick: float) -> int:
        candidates = choices[role]
        return int(candidates[min(int(pick * len(candidates)), len(candidates) - 1)])

    def option_lots(units: float, price: int) -> int:
        return max(OPTION_MIN_LOTS, int(units / price) // OPTION_MIN_LOTS * OPTION_MIN_LOTS)

    for trader in traders.tolist():
        account = population.first_account + trader
        deposit = float(population.deposit_units[trader])
        leverage = float(population.leverage[trader])
        kind, direction = int(population.kind[trader]), int(population.direction[trader])
        pick, fraction = float(population.pick[trader]), float(population.fraction[trader])
        if kind == 0:
            leverage = min(leverage, _max_leverage(config, leverage * deposit))
            lots = int(leverage * deposit / index)
            if lots > 0:
                long = direction > 0
                rows.append((account, venue.perp, Side.BUY if long else Side.SELL,
                             buy_limit if long else sell_limit, lots))
        elif kind == 1 and direction > 0:  # premium buyers: puts or calls
            k = option("put" if pick < 0.5 else "call", (pick % 0.5) * 2)
            limit = int(_round_to(marks[k] * 1.5 + OPTION_TICK, OPTION_TICK, up=True))
            lots = option_lots(deposit * (0.2 + 0.6 * fraction), limit)
            rows.append((account, int(venue.option_ids[k]), Side.BUY, limit, lots))
        elif kind == 1:  # put writers, sized on the underlying notional
            k = option("short_put", pick)
            limit = max(OPTION_TICK, int(_round_to(marks[k] * 0.5, OPTION_TICK, up=False)))
            lots = option_lots(min(leverage, 5.0) * deposit, int(index))
            rows.append((account, int(venue.option_ids[k]), Side.SELL, limit, lots))
        else:  # portfolio margin: a long perpetual with written or bought puts
            lots = int(min(leverage, 4.0) * deposit / index)
            if lots <= 0:
                continue
            rows.append((account, venue.perp, Side.BUY, buy_limit, lots))
            k = option("short_put", pick)
            put_lots = max(OPTION_MIN_LOTS, lots // 2 // OPTION_MIN_LOTS * OPTION_MIN_LOTS)
            if fraction < 0.5:
                limit = max(OPTION_TICK, int(_round_to(marks[k] * 0.5, OPTION_TICK, up=False)))
                rows.append((account, int(venue.option_ids[k]), Side.SELL, limit, put_lots))
            else:
                limit = int(_round_to(marks[k] * 1.5 + OPTION_TICK, OPTION_TICK, up=True))
                rows.append((account, int(venue.option_ids[k]), Side.BUY, limit, put_lots))
    return rows


def plot_stress(result: StressResult, path: str | Path) -> Path:
    """Write a PNG of the run: index and perpetual mark, insurance fund balance, and the
    cumulative liquidation events by stage, against minutes. Uses matplotlib's Agg canvas
    (no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    minutes = result.seconds / 60.0
    figure = Figure(figsize=(10, 9), dpi=100)
    FigureCanvasAgg(figure)
    price, fund, liquidations = figure.subplots(3, 1, sharex=True)
    price.plot(minutes, result.index_ticks * PRICE_UNIT, label="index")
    price.plot(minutes, result.mark_ticks * PRICE_UNIT, label="perpetual mark", alpha=0.8)
    price.set_ylabel("USDC")
    price.legend(loc="upper right")
    spec = result.spec
    price.set_title(f"derivex stress: {spec.accounts:,} accounts, seed {spec.seed}, "
                    f"-{spec.crash_drop:.0%} crash")
    fund.plot(minutes, result.fund_units / USDC, color="tab:green", label="insurance fund")
    if result.bad_debt_units[-1]:
        fund.plot(minutes, -result.bad_debt_units / USDC, color="tab:red",
                  label="socialised loss (negative)")
    fund.set_ylabel("USDC")
    fund.legend(loc="upper right")
    for k, stage in enumerate(STAGES):
        if result.liquidations[-1, k]:
            liquidations.plot(minutes, result.liquidations[:, k], label=stage.name.lower())
    liquidations.set_ylabel("liquidation events (cumulative)")
    liquidations.set_xlabel("minutes")
    if result.liquidations[-1].any():
        liquidations.legend(loc="upper left")
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, format="png")
    return out
