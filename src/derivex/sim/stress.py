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
numpy work plus the engine's, and a margin scan of every trader every ``SAMPLE_SECONDS``; the
default 10,000 accounts over 30 minutes of 2-second steps (about 1M commands, 4.5M events)
take seconds once the kernels are compiled and cached.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from derivex.core import query
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    CommandKind,
    EventKind,
    LiquidationStage,
    MarginMode,
    Reason,
    SystemAccount,
    Underlying,
    command_array,
    concat_commands,
)
from derivex.core.risk import margins
from derivex.exchange import Exchange
from derivex.oracle import SimulatedIndexFeed, crash_path
from derivex.sim.stress_crowd import (
    OPTIONS,
    PORTFOLIO,
    Crowd,
    OptionChoices,
    entry_orders,
    noise_orders,
)
from derivex.sim.stress_market import (
    MAKER_DEPOSIT_USDC,
    NS_PER_SECOND,
    OPTION_MAKERS,
    PRICE_UNIT,
    START_NS,
    USDC,
    StressVenue,
    ioc_orders,
)

__all__ = ["START_NS", "StressResult", "StressSpec", "plot_stress", "run_stress"]

STAGES = tuple(LiquidationStage)
ENTRY_LABEL, NOISE_LABEL = 1, 2
SAMPLE_SECONDS = 10.0  # how often the harness scans every trader's margin
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
        if self.minutes <= 0 or self.step_seconds <= 0 or self.step_seconds * 3 > self.minutes * 60:
            raise ValueError("minutes and step_seconds must be positive, with >= 3 steps")
        if not (
            self.crash_start > 0
            and self.crash_start + self.crash_share + self.rebound_share <= 1
            and self.crash_share > 0
            and self.rebound_share > 0
        ):
            raise ValueError("crash_start + crash_share + rebound_share must be in (0, 1]")
        if not 0 < self.crash_drop < 1 or not 0 <= self.rebound <= 1:
            raise ValueError("crash_drop must be in (0, 1) and rebound in [0, 1]")
        if (
            len(self.leverage) != len(self.leverage_weights)
            or min(self.leverage) < 1
            or min(self.leverage_weights) < 0
            or sum(self.leverage_weights) <= 0
        ):
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
    ``fund_absorbed_units`` is what the insurance fund paid for negative balances it took
    over, ``bad_debt_units`` the engine's count of losses nobody covered
    (``docs/liquidation.md``); ``counts["socialised_units"]`` what socialisation charged.
    ``below_maintenance`` (traders whose equity is under maintenance margin) and
    ``negative_equity_units`` (the sum of the negative equities: losses nobody's collateral
    covers yet) are computed by the harness from the engine state every
    ``SAMPLE_SECONDS`` (carried forward in between)."""

    spec: StressSpec
    seconds: NDArray[np.float64]
    index_ticks: NDArray[np.int64]
    mark_ticks: NDArray[np.int64]
    fund_units: NDArray[np.int64]
    fund_equity_units: NDArray[np.int64]
    liquidations: NDArray[np.int64]
    bad_debt_units: NDArray[np.int64]
    fund_absorbed_units: NDArray[np.int64]
    below_maintenance: NDArray[np.int64]
    negative_equity_units: NDArray[np.int64]
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
            "fund_equity_min_units": int(self.fund_equity_units.min()),
            "fund_equity_last_units": int(self.fund_equity_units[-1]),
            "fund_absorbed_units": int(self.fund_absorbed_units[-1]),
            "bad_debt_units": int(self.bad_debt_units[-1]),
            "below_maintenance_max": int(self.below_maintenance.max()),
            "below_maintenance_last": int(self.below_maintenance[-1]),
            "negative_equity_last_units": int(self.negative_equity_units[-1]),
            "index_low_ticks": int(self.index_ticks[1:].min()),
            "index_last_ticks": int(self.index_ticks[-1]),
            "rejects": dict(self.rejects),
        }


class _Tally:
    """Running counts over the events of every batch."""

    def __init__(self, first_trader: int) -> None:
        self.first_trader = first_trader
        self.stages = np.zeros(len(STAGES), dtype=np.int64)
        self.fund_absorbed = 0
        self.socialised = 0
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
            self.stages += np.bincount(stage, minlength=len(STAGES) + 1)[1 : len(STAGES) + 1]
            money = liquidation["b"]
            taken = money[stage == LiquidationStage.INSURANCE_FUND]
            self.fund_absorbed -= int(taken[taken < 0].sum())  # negative balances taken over
            self.socialised += int(money[stage == LiquidationStage.SOCIALISED].sum())
        states = events[kinds == EventKind.ACCOUNT_STATE]
        for account, status in zip(
            states["account"].tolist(), states["status"].tolist(), strict=True
        ):
            if status == 1:
                self.in_liquidation.add(account)
            elif status == 2:
                self.bankrupt.add(account)
        rejected = events[(kinds == EventKind.REJECTED) & (events["account"] >= self.first_trader)]
        for command, reason, label in zip(
            rejected["command"].tolist(),
            rejected["reason"].tolist(),
            rejected["label"].tolist(),
            strict=True,
        ):
            if command == CommandKind.PLACE_ORDER:
                who = ORDER_LABELS.get(label, "order")
                self.rejects[f"{who}:{Reason(reason).name.lower()}"] += 1
        maker_rejects = events[
            (kinds == EventKind.REJECTED) & (events["command"] == CommandKind.MASS_QUOTE)
        ]
        for reason in maker_rejects["reason"].tolist():
            self.rejects[f"quote:{Reason(reason).name.lower()}"] += 1
        self.trader_fills += int(
            np.count_nonzero((kinds == EventKind.FILLED) & (events["account"] >= self.first_trader))
        )


def run_stress(spec: StressSpec) -> StressResult:
    """Run the scenario of ``spec`` through a fresh :class:`Exchange` (see the module
    docstring). Returns the series, totals and final state hash; ``result.exchange`` is the
    venue afterwards (e.g. for ``check_invariants``)."""
    rng = np.random.default_rng(spec.seed)
    clock = [START_NS]
    venue = StressVenue(spec.accounts, spec.start_price_usdc, lambda: clock[0])
    ex = venue.exchange
    steps, step_ns = spec.steps, spec.step_ns
    run_ns = steps * step_ns
    crash_step = int(spec.crash_start * steps)
    path = crash_path(
        int(spec.crash_start * run_ns),
        spec.crash_drop,
        max(int(spec.crash_share * run_ns), 1),
        spec.rebound,
        max(int(spec.rebound_share * run_ns), 1),
    )
    feed = SimulatedIndexFeed(
        Underlying.BTC, venue.start_ticks, START_NS, spec.seed * 1_000_003 + 1, path=path
    )

    # accounts: market makers first, then the traders (ids follow the system accounts)
    makers = np.arange(SYSTEM_ACCOUNTS, SYSTEM_ACCOUNTS + spec.market_makers, dtype=np.int64)
    crowd = Crowd.draw(
        rng,
        spec.accounts - spec.market_makers,
        int(makers[-1]) + 1,
        leverage=spec.leverage,
        leverage_weights=spec.leverage_weights,
        long_share=spec.long_share,
        options_share=spec.options_share,
        portfolio_share=spec.portfolio_share,
        entry_steps=max(int(crash_step * 0.9), 2),
    )
    tally = _Tally(crowd.first_account)
    commands = _open_accounts(ex, spec, makers, crowd, tally)
    fund_before = ex.balance(SystemAccount.INSURANCE_FUND)
    deposited = sum(ex.balances().values())

    time_record = command_array(1)
    time_record["kind"] = CommandKind.TIME
    choices = OptionChoices(venue)
    by_step = np.argsort(crowd.entry_step, kind="stable")
    entry_bounds = np.searchsorted(crowd.entry_step[by_step], np.arange(steps + 2))
    lookback = max(1, round(30 / spec.step_seconds))  # makers widen on the last 30 s move
    sample_every = max(1, round(SAMPLE_SECONDS / spec.step_seconds))
    traders = crowd.accounts()
    portfolio = traders[crowd.kind == PORTFOLIO]
    series = {
        name: np.zeros(steps + 1, dtype=np.int64)
        for name in (
            "index",
            "mark",
            "fund",
            "fund_equity",
            "debt",
            "absorbed",
            "below",
            "negative",
        )
    }
    stage_series = np.zeros((steps + 1, len(STAGES)), dtype=np.int64)
    estimates = np.zeros(steps + 1, dtype=np.float64)

    for step in range(steps + 1):
        now = START_NS + step * step_ns
        clock[0] = now
        index_part = feed.records(now)
        index = estimates[step] = float(np.median(index_part["price_ticks"][1:]))
        priced = venue.pricing.price(now, index)
        widen = 1.0 + 50.0 * abs(math.log(index / estimates[max(step - lookback, 0)]))
        parts = [
            index_part,
            venue.perp_risk,
            priced.records,
            time_record,
            *venue.maker_quotes(makers, index, priced.mark_ticks, widen),
        ]
        entering = by_step[entry_bounds[step] : entry_bounds[step + 1]]
        parts.append(
            ioc_orders(
                entry_orders(crowd, entering, venue, choices, index, priced.mark_ticks), ENTRY_LABEL
            )
        )
        parts.append(
            ioc_orders(
                noise_orders(crowd, rng, spec.noise_orders, venue, index, active=step > crash_step),
                NOISE_LABEL,
            )
        )
        batch = concat_commands(parts)
        commands += len(batch)
        tally.add(ex.submit(batch))

        series["index"][step] = ex.index("BTC").price_ticks
        series["mark"][step] = ex.mark(venue.perp)
        series["fund"][step] = ex.balance(SystemAccount.INSURANCE_FUND)
        # the fund's equity counts the positions it took over at mark (ADL starts when the
        # fund's equity cannot absorb a deficit)
        series["fund_equity"][step] = margins(
            ex.engine.state, np.int64(SystemAccount.INSURANCE_FUND)
        )[0]
        series["debt"][step] = query.bad_debt_units(ex.engine.state)
        series["absorbed"][step] = tally.fund_absorbed
        stage_series[step] = tally.stages
        if step % sample_every == 0 or step == steps:
            series["below"][step], series["negative"][step] = _margin_scan(ex, traders, portfolio)
        else:
            series["below"][step] = series["below"][step - 1]
            series["negative"][step] = series["negative"][step - 1]

    counts = {
        "accounts": spec.accounts,
        "market_makers": spec.market_makers,
        "traders": len(crowd),
        "option_traders": int(np.count_nonzero(crowd.kind == OPTIONS)),
        "portfolio_accounts": len(portfolio),
        "steps": steps,
        "deposited_units": deposited,
        "commands": commands,
        "events": tally.events,
        "trader_fills": tally.trader_fills,
        "liquidated_accounts": len(tally.in_liquidation),
        "bankrupt_accounts": len(tally.bankrupt),
        "socialised_units": tally.socialised,
    }
    return StressResult(
        spec,
        np.arange(steps + 1, dtype=np.float64) * spec.step_seconds,
        series["index"],
        series["mark"],
        series["fund"],
        series["fund_equity"],
        stage_series,
        series["debt"],
        series["absorbed"],
        series["below"],
        series["negative"],
        ex.state_hash(),
        fund_before,
        ex.balance(SystemAccount.INSURANCE_FUND),
        counts,
        dict(sorted(tally.rejects.items())),
        ex,
    )


def _open_accounts(
    ex: Exchange, spec: StressSpec, makers: NDArray[np.int64], crowd: Crowd, tally: _Tally
) -> int:
    """Create and fund the makers and the crowd (portfolio-margin traders in that mode) in
    two batches, and fund the insurance fund. Returns the number of commands."""
    creates = command_array(spec.accounts)
    creates["kind"] = CommandKind.CREATE_ACCOUNT
    creates["margin_mode"][len(makers) :] = np.where(
        crowd.kind == PORTFOLIO, MarginMode.PORTFOLIO, MarginMode.STANDARD
    )
    created = ex.submit(creates)
    ids = created["account"][created["kind"] == EventKind.ACCOUNT_CREATED]
    if not np.array_equal(ids, np.concatenate((makers, crowd.accounts()))):
        raise RuntimeError("accounts were not allocated in order after the system accounts")
    tally.add(created)
    deposits = command_array(spec.accounts + (1 if spec.insurance_fund_usdc else 0))
    deposits["kind"] = CommandKind.DEPOSIT
    deposits["account"][: spec.accounts] = ids
    deposits["amount_units"][: len(makers)] = MAKER_DEPOSIT_USDC * USDC
    deposits["amount_units"][len(makers) : spec.accounts] = crowd.deposit_units
    if spec.insurance_fund_usdc:
        deposits["account"][-1] = SystemAccount.INSURANCE_FUND
        deposits["amount_units"][-1] = spec.insurance_fund_usdc * USDC
    tally.add(ex.submit(deposits))
    return len(creates) + len(deposits)


def _margin_scan(
    ex: Exchange, traders: NDArray[np.int64], portfolio: NDArray[np.int64]
) -> tuple[int, int]:
    """``(traders below maintenance margin, sum of negative equities)`` read from the
    engine state (read-only): standard-mode accounts from their kept margin sums in one
    vector pass, portfolio-mode accounts through the core's own ``margins``. O(traders)."""
    st = ex.engine.state
    equity, maintenance = query.standard_margin_sums(st, traders)
    for k in np.searchsorted(traders, portfolio).tolist():
        equity[k], _, maintenance[k] = margins(st, np.int64(traders[k]))
    below = int(np.count_nonzero(equity < maintenance))
    return below, int(equity[equity < 0].sum())


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
    price.set_title(
        f"derivex stress: {spec.accounts:,} accounts, seed {spec.seed}, "
        f"-{spec.crash_drop:.0%} crash"
    )
    fund.plot(minutes, result.fund_units / USDC, color="tab:green", label="insurance fund balance")
    fund.plot(
        minutes,
        result.fund_equity_units / USDC,
        color="tab:olive",
        linestyle="--",
        label="insurance fund equity (taken-over positions at mark)",
    )
    if result.bad_debt_units[-1]:
        fund.plot(
            minutes, -result.bad_debt_units / USDC, color="tab:red", label="bad debt (negative)"
        )
    fund.set_ylabel("USDC")
    fund.ticklabel_format(axis="y", style="plain", useOffset=False)
    fund.legend(loc="best")
    for k, stage in enumerate(STAGES):
        if result.liquidations[-1, k]:
            liquidations.plot(minutes, result.liquidations[:, k], label=stage.name.lower())
    liquidations.plot(
        minutes,
        result.below_maintenance,
        color="black",
        linestyle="--",
        label="traders below maintenance (now)",
    )
    liquidations.set_ylabel("liquidation events (cumulative)")
    liquidations.set_xlabel("minutes")
    liquidations.legend(loc="upper left")
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, format="png")
    return out
